import type {KernelConfig} from '@tensorflow/tfjs-core';
import {FlashAttention} from '../../src/kernel_names.js';
import {forwardKernelFunc} from '../attention_kernel_func.js';
import {runAttentionForward} from './attention_forward.js';
import {SUPPORTED} from './attention_cpu_util.js';

export const flashAttentionConfig: KernelConfig = {
  kernelName: FlashAttention,
  backendName: 'cpu',
  kernelFunc: forwardKernelFunc(runAttentionForward, SUPPORTED),
};
