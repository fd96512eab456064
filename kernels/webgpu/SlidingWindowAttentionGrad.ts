import type {KernelConfig} from '@tensorflow/tfjs-core';
import {SlidingWindowAttentionGrad} from '../../src/kernel_names.js';
import {webgpuAttentionBackward} from './attention_grad_executor_webgpu.js';

/** SlidingWindowAttentionGrad on webgpu: the FlashAttention-2 backward passes of attention_grad_webgpu.ts. */
export const slidingWindowAttentionGradConfig: KernelConfig = {
  kernelName: SlidingWindowAttentionGrad,
  backendName: 'webgpu',
  kernelFunc: webgpuAttentionBackward,
};
