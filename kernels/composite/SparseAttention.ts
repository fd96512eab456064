import type {KernelConfig} from '@tensorflow/tfjs-core';
import {SparseAttention} from '../../src/kernel_names.js';
import {compositeAttentionForward} from './attention_composite.js';

/**
 * SparseAttention built from tfjs ops, for backends without a dedicated kernel (backendName is filled in by
 * registerCompositeKernels).
 */
export const sparseAttentionConfig: Omit<KernelConfig, 'backendName'> = {
  kernelName: SparseAttention,
  kernelFunc: compositeAttentionForward,
};
