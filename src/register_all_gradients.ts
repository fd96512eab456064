import * as tf from '@tensorflow/tfjs-core';
import {flashAttentionGradConfig} from './gradients/FlashAttention_grad.js';
import {slidingWindowAttentionGradConfig} from './gradients/SlidingWindowAttention_grad.js';
import {sparseAttentionGradConfig} from './gradients/SparseAttention_grad.js';
import {updateKVCacheGradConfig} from './gradients/UpdateKVCache_grad.js';

const gradConfigs: tf.GradConfig[] = [
  flashAttentionGradConfig,
  slidingWindowAttentionGradConfig,
  sparseAttentionGradConfig,
  updateKVCacheGradConfig,
];

for (const config of gradConfigs) {
  if (tf.getGradient(config.kernelName) == null) tf.registerGradient(config);
}
