import type {KernelConfig, KernelFunc} from '@tensorflow/tfjs-core';
import {FlashAttention} from '../../src/kernel_names.js';
import {attentionCpu} from './attention_cpu.js';

export const flashAttentionConfig: KernelConfig = {
  kernelName: FlashAttention,
  backendName: 'cpu',
  kernelFunc: attentionCpu as unknown as KernelFunc,
};
