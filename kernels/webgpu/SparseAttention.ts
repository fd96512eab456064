import type {KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {SparseAttention, planOf} from '../../src/kernel_names.js';
import {runAttentionForward} from './attention_webgpu.js';

export const sparseAttention: KernelFunc = ({inputs, backend, attrs}) => {
  const {q, k, v, keyLengths} = inputs as Record<'q' | 'k' | 'v' | 'keyLengths', TensorInfo>;
  return runAttentionForward(backend as WebGPUBackend, planOf(attrs), q, k, v, keyLengths);
};

export const sparseAttentionConfig: KernelConfig = {
  kernelName: SparseAttention,
  backendName: 'webgpu',
  kernelFunc: sparseAttention,
};
