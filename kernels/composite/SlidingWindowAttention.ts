import type {KernelConfig} from '@tensorflow/tfjs-core';
import {SlidingWindowAttention} from '../../src/kernel_names.js';
import {compositeAttentionForward} from './attention_composite.js';

/**
 * SlidingWindowAttention built from tfjs ops, for backends without a dedicated kernel (backendName is filled in by
 * registerCompositeKernels).
 */
export const slidingWindowAttentionConfig: Omit<KernelConfig, 'backendName'> = {
  kernelName: SlidingWindowAttention,
  kernelFunc: compositeAttentionForward,
};
