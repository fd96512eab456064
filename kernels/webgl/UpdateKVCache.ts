import type {MathBackendWebGL} from '@tensorflow/tfjs-backend-webgl';
import type {KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';
import {UpdateKVCache} from '../../src/kernel_names.js';
import {UpdateKVCacheProgram} from './update_kv_cache_gpu.js';

export function updateKVCacheWebGL(
    {inputs, backend}: {inputs: Record<'cache' | 'update' | 'positions', TensorInfo>, backend: MathBackendWebGL}):
    TensorInfo {
  const {cache, update, positions} = inputs;
  const program = new UpdateKVCacheProgram(cache.shape, update.shape[1]);
  return backend.runWebGLProgram(program, [cache, update, positions], cache.dtype);
}

export const updateKVCacheConfig: KernelConfig = {
  kernelName: UpdateKVCache,
  backendName: 'webgl',
  kernelFunc: updateKVCacheWebGL as unknown as KernelFunc,
};
