/**
 * The composite attention kernels (built from public tfjs ops) serve every backend without dedicated kernels:
 * src/register.ts registers them by name for `wasm` and `tensorflow` (tfjs-node), and installs
 * registerCompositeKernels as the ops' missing-kernel handler (src/ops/kernel_fallback.ts) for any other backend.
 */
import * as tf from '@tensorflow/tfjs-core';
import {compositeKernelConfigs} from './register_all_composite_kernels.js';

const registered = new Set<string>();

/** Registers the composite kernels on `backendName` for every attention kernel it does not have yet. */
export function registerCompositeKernels(backendName: string): void {
  if (registered.has(backendName)) return;
  registered.add(backendName);
  for (const config of compositeKernelConfigs) {
    if (tf.getKernel(config.kernelName, backendName) == null) tf.registerKernel({...config, backendName});
  }
}
