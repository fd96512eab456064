/**
 * The fuzz property on the webgpu backend in node, as webgpu_fuzz.test.ts (fp32) and webgpu_precision.test.ts
 * ('medium') run it: the shared WebGPU test environment, every case checked by `check` inside WebGPU validation /
 * out-of-memory error scopes (Dawn reports them without throwing). Static imports only: see webgpu_fuzz.test.ts.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as lib from '../src/index.js';
import type {AttentionCase} from './cases.js';
import type {CaseResult} from './check_case.js';
import {FuzzConfig, FuzzTolerance, runFuzz} from './fuzz.js';
import {describeFuzz} from './fuzz_runner.js';
import {webgpuBackendOrSkip, WebGPUEnv, withGPUErrorCheck} from './webgpu_env.js';

export function describeWebGPUFuzz(spec: {
  label: string; runs: number; config: FuzzConfig; tolerance: FuzzTolerance;
  check: (c: AttentionCase, seed: number) => Promise<CaseResult>;
}): void {
  let env: WebGPUEnv | null = null;
  describeFuzz({
    label: spec.label, runs: spec.runs, config: spec.config, tolerance: spec.tolerance,
    // First-time pipeline compiles on software Vulkan, on a shared machine.
    timeout: 1_800_000,
    setUp: async (ctx) => {
      env = await webgpuBackendOrSkip(ctx);
    },
    run: (opts) => runFuzz(tf, lib, {
      ...opts,
      check: (c, seed) => withGPUErrorCheck(env!.device, () => spec.check(c, seed)),
      onCase: (c, r, failures) => opts.onCase(c.case.name, r?.errors ?? null, failures),
    }),
  });
}
