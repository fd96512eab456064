/**
 * A tfjs WebGPU backend on a device that has what the tensor-core forward needs (shader-f16, subgroups and
 * chromium-experimental-subgroup-matrix where the adapter offers them: tfjs's own 'webgpu' backend requests none),
 * with the library's kernels (attention_forward.ts takes the tensor-core path, attention_forward_tc.ts, where it
 * applies). Used by test/webgpu_tc.test.ts and bench/device/tc_check.ts.
 */
import * as tf from '@tensorflow/tfjs-core';
import {rememberAdapterInfo} from '../kernels/webgpu/device_capabilities.js';

/** Features the tensor-core path may use, in the order Dawn wants them enabled. */
export const TENSOR_CORE_FEATURES = ['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix'];

/**
 * Registers backend `name` on a device of `adapter` requested with the tensor-core features it offers (plus
 * timestamp-query) and tfjs's limits, copies the 'webgpu' kernels to it (tfjs's and this library's: the library's
 * webgpu kernels must be registered first). Returns the device.
 */
export async function registerTensorCoreBackend(name: string, adapter: GPUAdapter): Promise<GPUDevice> {
  const {WebGPUBackend} = await import('@tensorflow/tfjs-backend-webgpu');
  const requiredFeatures = [...TENSOR_CORE_FEATURES, 'timestamp-query']
      .filter((f) => adapter.features.has(f)) as GPUFeatureName[];
  const l = adapter.limits;
  const device = await adapter.requestDevice({
    requiredFeatures,
    requiredLimits: {
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
    },
  });
  rememberAdapterInfo(device, adapter.info);
  tf.registerBackend(name, async () => new WebGPUBackend(device, adapter.info));
  tf.copyRegisteredKernels('webgpu', name);
  return device;
}
