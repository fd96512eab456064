import type {KernelConfig, KernelFunc} from '@tensorflow/tfjs-core';
import {SlidingWindowAttention} from '../../src/kernel_names.js';
import {attentionCpu} from './attention_cpu.js';

export const slidingWindowAttentionConfig: KernelConfig = {
  kernelName: SlidingWindowAttention,
  backendName: 'cpu',
  kernelFunc: attentionCpu as unknown as KernelFunc,
};
