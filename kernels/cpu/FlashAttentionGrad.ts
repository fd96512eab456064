import type {KernelConfig} from '@tensorflow/tfjs-core';
import {FlashAttentionGrad} from '../../src/kernel_names.js';
import {backwardKernelFunc} from '../attention_kernel_func.js';
import {runAttentionBackward} from './attention_backward.js';
import {SUPPORTED} from './attention_cpu_util.js';

export const flashAttentionGradConfig: KernelConfig = {
  kernelName: FlashAttentionGrad,
  backendName: 'cpu',
  kernelFunc: backwardKernelFunc(runAttentionBackward, SUPPORTED),
};
