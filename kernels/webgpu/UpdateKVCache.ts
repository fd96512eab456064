import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import * as tf from '@tensorflow/tfjs-core';
import type {KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';
import {UpdateKVCache} from '../../src/kernel_names.js';
import {createOutput, getLimits, runProgram} from './program_runner.js';
import {UPDATE_KV_CACHE_WORKGROUP, UpdateKVCacheProgram} from './update_kv_cache_webgpu.js';

const programs = new Map<number, UpdateKVCacheProgram>();

export function updateKVCacheWebGPU(
    {inputs, backend}: {inputs: Record<'cache' | 'update' | 'positions', TensorInfo>, backend: WebGPUBackend}):
    TensorInfo {
  const {cache, update, positions} = inputs;
  const [, capacity, kvHeads, headDim] = cache.shape;
  const n = update.shape[1];
  const width = (kvHeads * headDim) % 4 === 0 ? 4 : 1;
  const size = tf.util.sizeFromShape(cache.shape) / width;
  const workgroups = Math.ceil(size / UPDATE_KV_CACHE_WORKGROUP);
  const workgroupsX = Math.min(workgroups, getLimits(backend).maxComputeWorkgroupsPerDimension);
  const workgroupsY = Math.ceil(workgroups / Math.max(workgroupsX, 1));
  let program = programs.get(width);
  if (program == null) programs.set(width, program = new UpdateKVCacheProgram(width));
  const result = createOutput(backend, cache.shape, cache.dtype);
  runProgram(backend, program, {
    outputs: [result], inputs: [cache, update, positions],
    uniforms: [size, capacity, n, kvHeads * headDim / width, workgroupsX],
    dispatch: [workgroupsX, workgroupsY, 1],
  });
  return result;
}

export const updateKVCacheConfig: KernelConfig = {
  kernelName: UpdateKVCache,
  backendName: 'webgpu',
  kernelFunc: updateKVCacheWebGPU as unknown as KernelFunc,
};
