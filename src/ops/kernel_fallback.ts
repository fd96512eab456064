/**
 * What the ops do when the active backend lacks an attention kernel. src/ never imports kernels/: the registration
 * entry (src/register.ts) installs the handler — today the composite kernels' registration — and runAttention calls
 * ensureAttentionKernels before runKernel.
 */
import * as tf from '@tensorflow/tfjs-core';
import {ALL_KERNELS} from '../kernel_names.js';

/** Registers attention kernels for a backend that lacks some (called with the backend's name). */
export type MissingKernelHandler = (backendName: string) => void;

let missingKernelHandler: MissingKernelHandler | null = null;

export function setMissingKernelHandler(handler: MissingKernelHandler | null): void {
  missingKernelHandler = handler;
}

/** Makes sure every attention kernel exists on `backendName`, through the handler when one is missing. */
export function ensureAttentionKernels(backendName: string): void {
  if (ALL_KERNELS.every((name) => tf.getKernel(name, backendName) != null)) return;
  missingKernelHandler?.(backendName);
}
