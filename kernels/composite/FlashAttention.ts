import type {KernelConfig} from '@tensorflow/tfjs-core';
import {FlashAttention} from '../../src/kernel_names.js';
import {forwardKernelFunc} from '../attention_kernel_func.js';
import {SUPPORTED} from './attention_composite_util.js';
import {runAttentionForward} from './attention_forward.js';

/**
 * FlashAttention built from tfjs ops, for backends without a dedicated kernel (backendName is filled in by
 * registerCompositeKernels).
 */
export const flashAttentionConfig: Omit<KernelConfig, 'backendName'> = {
  kernelName: FlashAttention,
  kernelFunc: forwardKernelFunc(runAttentionForward, SUPPORTED),
};
