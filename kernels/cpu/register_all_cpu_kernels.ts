/** Registers the dedicated cpu attention kernels (forward and backward of all three ops), like tfjs-backend-cpu's. */
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

for (const config of kernelConfigs) {
  if (tf.getKernel(config.kernelName, config.backendName) == null) tf.registerKernel(config);
}
