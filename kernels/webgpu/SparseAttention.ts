import type {KernelConfig} from '@tensorflow/tfjs-core';
import {SparseAttention} from '../../src/kernel_names.js';
import {forwardKernelFunc} from '../attention_kernel_func.js';
import {runAttentionForward} from './attention_forward.js';

export const sparseAttentionConfig: KernelConfig = {
  kernelName: SparseAttention,
  backendName: 'webgpu',
  kernelFunc: forwardKernelFunc(runAttentionForward),
};
