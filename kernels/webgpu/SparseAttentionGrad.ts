import type {KernelConfig} from '@tensorflow/tfjs-core';
import {SparseAttentionGrad} from '../../src/kernel_names.js';
import {backwardKernelFunc} from '../attention_kernel_func.js';
import {runAttentionBackward} from './attention_backward.js';

export const sparseAttentionGradConfig: KernelConfig = {
  kernelName: SparseAttentionGrad,
  backendName: 'webgpu',
  kernelFunc: backwardKernelFunc(runAttentionBackward),
};
