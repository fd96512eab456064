import type {KernelConfig} from '@tensorflow/tfjs-core';
import {FlashAttention} from '../../src/kernel_names.js';
import {forwardKernelFunc} from '../attention_kernel_func.js';
import {runAttentionForward} from './attention_forward.js';

export const flashAttentionConfig: KernelConfig = {
  kernelName: FlashAttention,
  backendName: 'webgpu',
  kernelFunc: forwardKernelFunc(runAttentionForward),
};
