import type {KernelConfig} from '@tensorflow/tfjs-core';
import {FlashAttentionGrad} from '../../src/kernel_names.js';
import {compositeAttentionBackward} from './attention_grad_composite.js';

/**
 * FlashAttentionGrad built from tfjs ops, for backends without a dedicated kernel (backendName is filled in by
 * registerCompositeKernels).
 */
export const flashAttentionGradConfig: Omit<KernelConfig, 'backendName'> = {
  kernelName: FlashAttentionGrad,
  kernelFunc: compositeAttentionBackward,
};
