import * as tf from '@tensorflow/tfjs-core';
import type {KernelConfig, KernelFunc} from '@tensorflow/tfjs-core';
import {kvCacheRows} from '../../src/gradients/UpdateKVCache_grad.js';
import {UpdateKVCache} from '../../src/kernel_names.js';

/**
 * UpdateKVCache from tfjs ops, for backends without a dedicated kernel: every cache row gathers update row
 * (row − p_b) clamped into [0, n), and a position mask picks it where 0 ≤ row − p_b < n (one gather, one select).
 */
const updateKVCacheComposite: KernelFunc = ({inputs}) => {
  const {cache, update, positions} = inputs as unknown as Record<'cache' | 'update' | 'positions', tf.Tensor4D>;
  const [, capacity] = cache.shape;
  const n = update.shape[1];
  return tf.tidy(() => {
    const {offset, written} = kvCacheRows(positions, capacity, n);
    const received = tf.gather(update, tf.cast(tf.clipByValue(offset, 0, n - 1), 'int32'), 1, 1);  // [batch, capacity, kvHeads, dim]
    return tf.where(written, received, cache);
  });
};

export const updateKVCacheConfig: Omit<KernelConfig, 'backendName'> = {
  kernelName: UpdateKVCache,
  kernelFunc: updateKVCacheComposite,
};
