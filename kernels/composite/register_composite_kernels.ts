/**
 * The composite attention kernels (built from public tfjs ops) serve every backend without dedicated kernels:
 * registered by name for `wasm` and `tensorflow` (tfjs-node), and on first use for any other backend.
 */
import * as tf from '@tensorflow/tfjs-core';
import {ALL_KERNELS, FlashAttention} from '../../src/kernel_names.js';
import {compositeKernelConfigs} from './register_all_composite_kernels.js';

const registered = new Set<string>();

export function registerCompositeKernels(backendName: string): void {
  if (registered.has(backendName)) return;
  registered.add(backendName);
  for (const config of compositeKernelConfigs) {
    if (tf.getKernel(config.kernelName, backendName) == null) tf.registerKernel({...config, backendName});
  }
}

/** Makes sure the attention kernels exist on `backendName`, falling back to the composite ones. */
export function ensureAttentionKernels(backendName: string): void {
  if (tf.getKernel(FlashAttention, backendName) != null &&
      ALL_KERNELS.every((name) => tf.getKernel(name, backendName) != null)) {
    return;
  }
  registerCompositeKernels(backendName);
}
