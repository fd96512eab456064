import type {KernelConfig, KernelFunc} from '@tensorflow/tfjs-core';
import type {MathBackendWebGL} from '@tensorflow/tfjs-backend-webgl';
import {FlashAttentionGrad, planOf} from '../../src/kernel_names.js';
import {AttentionGradInputs, runAttentionBackward} from './attention_grad_webgl.js';
import {webGL2OrComposite} from './webgl2_only.js';

export const flashAttentionGrad: KernelFunc = ({inputs, backend, attrs}) =>
    runAttentionBackward(backend as MathBackendWebGL, planOf(attrs), inputs as unknown as AttentionGradInputs);

export const flashAttentionGradConfig: KernelConfig = {
  kernelName: FlashAttentionGrad,
  backendName: 'webgl',
  kernelFunc: webGL2OrComposite(FlashAttentionGrad, flashAttentionGrad),
};
