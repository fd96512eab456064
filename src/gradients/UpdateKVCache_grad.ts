/**
 * The gradient of UpdateKVCache (out = cache with rows p_b … p_b + n − 1 replaced by update[b]): d cache = dy with the
 * written rows zeroed, d update = the written rows of dy, positions (int32) get zeros. Also the row arithmetic the
 * composite kernel shares (kernels/composite/UpdateKVCache.ts), written once here.
 */
import * as tf from '@tensorflow/tfjs-core';
import {UpdateKVCache} from '../kernel_names.js';

/**
 * For a cache of `capacity` rows receiving `n` rows at int32 `positions` [batch] (clamped to [0, capacity − n], the
 * kernels' rule): `start` [batch, 1] the clamped positions, `offset` [batch, capacity] = row − start (the update row
 * a cache row receives when 0 ≤ offset < n), and `written` [batch, capacity, 1, 1] (bool).
 */
export function kvCacheRows(positions: tf.Tensor, capacity: number, n: number):
    {start: tf.Tensor2D, offset: tf.Tensor2D, written: tf.Tensor4D} {
  return tf.tidy(() => {
    // Every operand int32 (no implicit casts): clipByValue keeps int32 on every backend only after an explicit cast.
    const batch = positions.shape[0]!;
    const start = tf.reshape(tf.cast(tf.clipByValue(positions, 0, capacity - n), 'int32'), [batch, 1]) as tf.Tensor2D;
    const offset = tf.sub(tf.reshape(tf.range(0, capacity, 1, 'int32'), [1, capacity]), start) as tf.Tensor2D;
    const written = tf.reshape(
        tf.logicalAnd(tf.greaterEqual(offset, tf.scalar(0, 'int32')), tf.less(offset, tf.scalar(n, 'int32'))),
        [batch, capacity, 1, 1]) as tf.Tensor4D;
    return {start, offset, written};
  });
}

export const updateKVCacheGradConfig: tf.GradConfig = {
  kernelName: UpdateKVCache,
  inputsToSave: ['update', 'positions'],
  gradFunc: (dy: tf.Tensor | tf.Tensor[], saved: tf.Tensor[]) => {
    const dOut = dy as tf.Tensor4D;
    const [update, positions] = saved;
    const [batch, capacity] = dOut.shape;
    const n = update.shape[1]!;
    return {
      cache: () => tf.tidy(() => tf.where(kvCacheRows(positions, capacity, n).written, tf.zerosLike(dOut), dOut)),
      update: () => tf.tidy(() => {
        const {start} = kvCacheRows(positions, capacity, n);
        const rows = tf.add(start, tf.reshape(tf.range(0, n, 1, 'int32'), [1, n]));  // [batch, n]
        return tf.gather(dOut, rows, 1, 1);
      }),
      positions: () => tf.zeros([batch], 'float32'),
    };
  },
};
