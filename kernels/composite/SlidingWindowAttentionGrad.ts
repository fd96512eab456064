import type {KernelConfig} from '@tensorflow/tfjs-core';
import {SlidingWindowAttentionGrad} from '../../src/kernel_names.js';
import {compositeAttentionBackward} from './attention_grad_composite.js';

/**
 * SlidingWindowAttentionGrad built from tfjs ops, for backends without a dedicated kernel (backendName is filled in by
 * registerCompositeKernels).
 */
export const slidingWindowAttentionGradConfig: Omit<KernelConfig, 'backendName'> = {
  kernelName: SlidingWindowAttentionGrad,
  kernelFunc: compositeAttentionBackward,
};
