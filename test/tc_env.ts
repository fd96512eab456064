/**
 * The setup the emulated tensor-core suites share (test/webgpu_tc.test.ts forward, test/webgpu_tc_grad.test.ts
 * backward): WebGPU on lavapipe (skip without it or without shader-f16), a tensor-core backend registered and made
 * current, subgroup-matrix operations emulated by SIMT code, and the decode path off (decode-shaped plans — few
 * queries, many keys — would not reach the tensor-core programs).
 */
import * as tf from '@tensorflow/tfjs-core';
import {setDecodePathForTests} from '../kernels/webgpu/attention_decode.js';
import {setTensorCoreEmulationForTests} from '../kernels/webgpu/attention_forward_tc.js';
import {registerTensorCoreBackend} from './tc_kernels.js';
import {setupWebGPU} from './webgpu_env.js';

/** A before-hook body: the backend `name` with emulated MMAs, or ctx.skip(). Returns its device. */
export async function emulatedTensorCoreBackendOrSkip(ctx: Mocha.Context, name: string): Promise<GPUDevice> {
  const env = await setupWebGPU();
  if (env == null) ctx.skip();
  const adapter = (await navigator.gpu.requestAdapter())!;
  if (!adapter.features.has('shader-f16')) ctx.skip();
  const device = await registerTensorCoreBackend(name, adapter);
  await tf.setBackend(name);
  setTensorCoreEmulationForTests(true);
  setDecodePathForTests('never');
  return device;
}

/** The after-hook body: emulation and the decode path back to their defaults. */
export function restoreTensorCoreSwitches(): void {
  setTensorCoreEmulationForTests(false);
  setDecodePathForTests(null);
}
