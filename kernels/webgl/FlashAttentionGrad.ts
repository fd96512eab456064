import type {KernelConfig} from '@tensorflow/tfjs-core';
import {FlashAttentionGrad} from '../../src/kernel_names.js';
import {backwardKernelFunc} from '../attention_kernel_func.js';
import {runAttentionBackward} from './attention_backward.js';
import {webGL2OrComposite} from './webgl2_only.js';

export const flashAttentionGradConfig: KernelConfig = {
  kernelName: FlashAttentionGrad,
  backendName: 'webgl',
  kernelFunc: webGL2OrComposite(FlashAttentionGrad, backwardKernelFunc(runAttentionBackward)),
};
