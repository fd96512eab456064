import type {KernelConfig} from '@tensorflow/tfjs-core';
import {SlidingWindowAttentionGrad} from '../../src/kernel_names.js';
import {backwardKernelFunc} from '../attention_kernel_func.js';
import {runAttentionBackward} from './attention_backward.js';

export const slidingWindowAttentionGradConfig: KernelConfig = {
  kernelName: SlidingWindowAttentionGrad,
  backendName: 'webgpu',
  kernelFunc: backwardKernelFunc(runAttentionBackward),
};
