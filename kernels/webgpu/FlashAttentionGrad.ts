import type {KernelConfig} from '@tensorflow/tfjs-core';
import {FlashAttentionGrad} from '../../src/kernel_names.js';
import {backwardKernelFunc} from '../attention_kernel_func.js';
import {runAttentionBackward} from './attention_backward.js';

export const flashAttentionGradConfig: KernelConfig = {
  kernelName: FlashAttentionGrad,
  backendName: 'webgpu',
  kernelFunc: backwardKernelFunc(runAttentionBackward),
};
