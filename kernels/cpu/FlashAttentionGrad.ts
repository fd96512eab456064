import type {KernelConfig, KernelFunc} from '@tensorflow/tfjs-core';
import {FlashAttentionGrad} from '../../src/kernel_names.js';
import {attentionGradCpu} from './attention_grad_cpu.js';

export const flashAttentionGradConfig: KernelConfig = {
  kernelName: FlashAttentionGrad,
  backendName: 'cpu',
  kernelFunc: attentionGradCpu as unknown as KernelFunc,
};
