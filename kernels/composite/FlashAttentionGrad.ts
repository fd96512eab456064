import type {KernelConfig} from '@tensorflow/tfjs-core';
import {FlashAttentionGrad} from '../../src/kernel_names.js';
import {backwardKernelFunc} from '../attention_kernel_func.js';
import {SUPPORTED} from './attention_composite_util.js';
import {runAttentionBackward} from './attention_backward.js';

/**
 * FlashAttentionGrad built from tfjs ops, for backends without a dedicated kernel (backendName is filled in by
 * registerCompositeKernels).
 */
export const flashAttentionGradConfig: Omit<KernelConfig, 'backendName'> = {
  kernelName: FlashAttentionGrad,
  kernelFunc: backwardKernelFunc(runAttentionBackward, SUPPORTED),
};
