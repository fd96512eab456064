import type {MathBackendCPU} from '@tensorflow/tfjs-backend-cpu';
import type {KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';
import {UpdateKVCache} from '../../src/kernel_names.js';

/**
 * Copies the cache and overwrites, per batch, the n rows starting at clamp(positions[b], 0, capacity − n) with the
 * update (each row's kvHeads·headDim values are contiguous in both tensors: one subarray copy per row block).
 */
export function updateKVCacheCpu(
    {inputs, backend}: {inputs: Record<'cache' | 'update' | 'positions', TensorInfo>, backend: MathBackendCPU}):
    TensorInfo {
  const {cache, update, positions} = inputs;
  const [batch, capacity, kvHeads, headDim] = cache.shape;
  const n = update.shape[1];
  const rowSize = kvHeads * headDim;
  const out = (backend.data.get(cache.dataId).values as Float32Array).slice();
  const updateValues = backend.data.get(update.dataId).values as Float32Array;
  const positionValues = backend.data.get(positions.dataId).values as Int32Array;
  for (let b = 0; b < batch; b++) {
    const start = Math.min(Math.max(positionValues[b], 0), capacity - n);
    out.set(updateValues.subarray(b * n * rowSize, (b + 1) * n * rowSize), (b * capacity + start) * rowSize);
  }
  return backend.makeTensorInfo(cache.shape, cache.dtype, out);
}

export const updateKVCacheConfig: KernelConfig = {
  kernelName: UpdateKVCache,
  backendName: 'cpu',
  kernelFunc: updateKVCacheCpu as unknown as KernelFunc,
};
