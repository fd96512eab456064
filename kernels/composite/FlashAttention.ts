import type {KernelConfig} from '@tensorflow/tfjs-core';
import {FlashAttention} from '../../src/kernel_names.js';
import {compositeAttentionForward} from './attention_composite.js';

/**
 * FlashAttention built from tfjs ops, for backends without a dedicated kernel (backendName is filled in by
 * registerCompositeKernels).
 */
export const flashAttentionConfig: Omit<KernelConfig, 'backendName'> = {
  kernelName: FlashAttention,
  kernelFunc: compositeAttentionForward,
};
