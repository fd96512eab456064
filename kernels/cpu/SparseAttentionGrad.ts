import type {KernelConfig, KernelFunc} from '@tensorflow/tfjs-core';
import {SparseAttentionGrad} from '../../src/kernel_names.js';
import {attentionGradCpu} from './attention_grad_cpu.js';

export const sparseAttentionGradConfig: KernelConfig = {
  kernelName: SparseAttentionGrad,
  backendName: 'cpu',
  kernelFunc: attentionGradCpu as unknown as KernelFunc,
};
