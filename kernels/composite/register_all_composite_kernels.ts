import type {KernelConfig} from '@tensorflow/tfjs-core';
import {flashAttentionConfig} from './FlashAttention.js';
import {flashAttentionGradConfig} from './FlashAttentionGrad.js';
import {slidingWindowAttentionConfig} from './SlidingWindowAttention.js';
import {slidingWindowAttentionGradConfig} from './SlidingWindowAttentionGrad.js';
import {sparseAttentionConfig} from './SparseAttention.js';
import {sparseAttentionGradConfig} from './SparseAttentionGrad.js';
import {updateKVCacheConfig} from './UpdateKVCache.js';

/** Composite kernel configs; backendName is filled in by registerCompositeKernels. */
export const compositeKernelConfigs: Array<Omit<KernelConfig, 'backendName'>> = [
  flashAttentionConfig,
  slidingWindowAttentionConfig,
  sparseAttentionConfig,
  flashAttentionGradConfig,
  slidingWindowAttentionGradConfig,
  sparseAttentionGradConfig,
  updateKVCacheConfig,
];
