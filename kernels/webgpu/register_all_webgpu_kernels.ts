/**
 * Registers the dedicated webgpu attention kernels (like tfjs-backend-webgpu's register_all_kernels.ts).
 * Kernels missing here are served by the composite kernels (ensureAttentionKernels registers them on first use).
 */
import * as tf from '@tensorflow/tfjs-core';
import {flashAttentionConfig} from './FlashAttention.js';
import {flashAttentionGradConfig} from './FlashAttentionGrad.js';
import {slidingWindowAttentionConfig} from './SlidingWindowAttention.js';
import {slidingWindowAttentionGradConfig} from './SlidingWindowAttentionGrad.js';
import {sparseAttentionConfig} from './SparseAttention.js';
import {sparseAttentionGradConfig} from './SparseAttentionGrad.js';
import {updateKVCacheConfig} from './UpdateKVCache.js';

const kernelConfigs: tf.KernelConfig[] = [
  flashAttentionConfig,
  slidingWindowAttentionConfig,
  sparseAttentionConfig,
  flashAttentionGradConfig,
  slidingWindowAttentionGradConfig,
  sparseAttentionGradConfig,
  updateKVCacheConfig,
];

for (const config of kernelConfigs) tf.registerKernel(config);
