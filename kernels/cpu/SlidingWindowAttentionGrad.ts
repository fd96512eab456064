import type {KernelConfig, KernelFunc} from '@tensorflow/tfjs-core';
import {SlidingWindowAttentionGrad} from '../../src/kernel_names.js';
import {attentionGradCpu} from './attention_grad_cpu.js';

export const slidingWindowAttentionGradConfig: KernelConfig = {
  kernelName: SlidingWindowAttentionGrad,
  backendName: 'cpu',
  kernelFunc: attentionGradCpu as unknown as KernelFunc,
};
