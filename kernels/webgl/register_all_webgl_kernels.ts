/**
 * Registers the dedicated webgl attention kernels (like tfjs-backend-webgl's register_all_kernels.ts). They need
 * WebGL2; on WebGL1 each delegates to its composite kernel.
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
