import type {KernelConfig} from '@tensorflow/tfjs-core';
import {SparseAttentionGrad} from '../../src/kernel_names.js';
import {webgpuAttentionBackward} from './attention_grad_executor_webgpu.js';

/** SparseAttentionGrad on webgpu: the FlashAttention-2 backward passes of attention_grad_webgpu.ts. */
export const sparseAttentionGradConfig: KernelConfig = {
  kernelName: SparseAttentionGrad,
  backendName: 'webgpu',
  kernelFunc: webgpuAttentionBackward,
};
