import type {KernelConfig} from '@tensorflow/tfjs-core';
import {FlashAttentionGrad} from '../../src/kernel_names.js';
import {webgpuAttentionBackward} from './attention_grad_executor_webgpu.js';

/** FlashAttentionGrad on webgpu: the FlashAttention-2 backward passes of attention_grad_webgpu.ts. */
export const flashAttentionGradConfig: KernelConfig = {
  kernelName: FlashAttentionGrad,
  backendName: 'webgpu',
  kernelFunc: webgpuAttentionBackward,
};
