import type {KernelConfig} from '@tensorflow/tfjs-core';
import {SparseAttention} from '../../src/kernel_names.js';
import {forwardKernelFunc} from '../attention_kernel_func.js';
import {runAttentionForward} from './attention_forward.js';
import {webGL2OrComposite} from './webgl2_only.js';

export const sparseAttentionConfig: KernelConfig = {
  kernelName: SparseAttention,
  backendName: 'webgl',
  kernelFunc: webGL2OrComposite(SparseAttention, forwardKernelFunc(runAttentionForward)),
};
