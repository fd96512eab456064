/**
 * The dedicated kernels need WebGL2 (texelFetch, integer loops, float render targets). On a WebGL1 context they
 * delegate to the composite kernels (built from tfjs ops), with a one-time console warning.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {KernelFunc} from '@tensorflow/tfjs-core';
import {compositeKernelConfigs} from '../composite/register_all_composite_kernels.js';

let warned = false;

export function isWebGL2(): boolean {
  return tf.env().getNumber('WEBGL_VERSION') >= 2;
}

export function webGL2OrComposite(kernelName: string, kernelFunc: KernelFunc): KernelFunc {
  return (args) => {
    if (isWebGL2()) return kernelFunc(args);
    if (!warned) {
      warned = true;
      console.warn('tfjs-efficient-attention: the webgl attention kernels need WebGL2; this context is WebGL1, so ' +
                   'attention runs on the slower composite kernels (tfjs ops).');
    }
    const composite = compositeKernelConfigs.find((c) => c.kernelName === kernelName);
    if (composite == null) throw new Error(`no composite kernel ${kernelName} to serve WebGL1`);
    return composite.kernelFunc(args);
  };
}
