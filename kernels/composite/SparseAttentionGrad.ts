import type {KernelConfig} from '@tensorflow/tfjs-core';
import {SparseAttentionGrad} from '../../src/kernel_names.js';
import {compositeAttentionBackward} from './attention_grad_composite.js';

/**
 * SparseAttentionGrad built from tfjs ops, for backends without a dedicated kernel (backendName is filled in by
 * registerCompositeKernels).
 */
export const sparseAttentionGradConfig: Omit<KernelConfig, 'backendName'> = {
  kernelName: SparseAttentionGrad,
  kernelFunc: compositeAttentionBackward,
};
