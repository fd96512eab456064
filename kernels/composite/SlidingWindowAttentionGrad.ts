import type {KernelConfig} from '@tensorflow/tfjs-core';
import {SlidingWindowAttentionGrad} from '../../src/kernel_names.js';
import {backwardKernelFunc} from '../attention_kernel_func.js';
import {SUPPORTED} from './attention_composite_util.js';
import {runAttentionBackward} from './attention_backward.js';

/**
 * SlidingWindowAttentionGrad built from tfjs ops, for backends without a dedicated kernel (backendName is filled in by
 * registerCompositeKernels).
 */
export const slidingWindowAttentionGradConfig: Omit<KernelConfig, 'backendName'> = {
  kernelName: SlidingWindowAttentionGrad,
  kernelFunc: backwardKernelFunc(runAttentionBackward, SUPPORTED),
};
