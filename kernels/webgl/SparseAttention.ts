import type {KernelConfig, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';
import type {MathBackendWebGL} from '@tensorflow/tfjs-backend-webgl';
import {SparseAttention, planOf} from '../../src/kernel_names.js';
import {runAttentionForward} from './attention_webgl.js';
import {webGL2OrComposite} from './webgl2_only.js';

export const sparseAttention: KernelFunc = ({inputs, backend, attrs}) => {
  const {q, k, v, keyLengths} = inputs as Record<'q' | 'k' | 'v' | 'keyLengths', TensorInfo>;
  return runAttentionForward(backend as MathBackendWebGL, planOf(attrs), q, k, v, keyLengths);
};

export const sparseAttentionConfig: KernelConfig = {
  kernelName: SparseAttention,
  backendName: 'webgl',
  kernelFunc: webGL2OrComposite(SparseAttention, sparseAttention),
};
