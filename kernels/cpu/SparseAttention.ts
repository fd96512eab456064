import type {KernelConfig, KernelFunc} from '@tensorflow/tfjs-core';
import {SparseAttention} from '../../src/kernel_names.js';
import {attentionCpu} from './attention_cpu.js';

export const sparseAttentionConfig: KernelConfig = {
  kernelName: SparseAttention,
  backendName: 'cpu',
  kernelFunc: attentionCpu as unknown as KernelFunc,
};
