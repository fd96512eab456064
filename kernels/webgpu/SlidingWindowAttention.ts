import type {KernelConfig} from '@tensorflow/tfjs-core';
import {SlidingWindowAttention} from '../../src/kernel_names.js';
import {forwardKernelFunc} from '../attention_kernel_func.js';
import {runAttentionForward} from './attention_forward.js';

export const slidingWindowAttentionConfig: KernelConfig = {
  kernelName: SlidingWindowAttention,
  backendName: 'webgpu',
  kernelFunc: forwardKernelFunc(runAttentionForward),
};
