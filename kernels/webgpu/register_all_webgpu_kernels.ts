/**
 * Registers the dedicated webgpu attention kernels (like tfjs-backend-webgpu's register_all_kernels.ts).
 * Kernels missing here are served by the composite kernels (ensureAttentionKernels registers them on first use).
 */
import * as tf from '@tensorflow/tfjs-core';
import {flashAttentionConfig} from './FlashAttention.js';
import {slidingWindowAttentionConfig} from './SlidingWindowAttention.js';
import {sparseAttentionConfig} from './SparseAttention.js';

const kernelConfigs: tf.KernelConfig[] = [
  flashAttentionConfig,
  slidingWindowAttentionConfig,
  sparseAttentionConfig,
];

for (const config of kernelConfigs) tf.registerKernel(config);
