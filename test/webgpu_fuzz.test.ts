/**
 * Quick fixed-seed fuzz of the webgpu kernels in node (Dawn; lavapipe when there is no GPU, see test/webgpu_env.ts):
 * random cases of every op, mask, layout builder, GQA grouping, scale, softcap, keyLengths and dLse against the float64
 * reference (test/fuzz.ts), each case inside WebGPU validation / out-of-memory error scopes, shrunk to a minimal case on
 * failure. Few head sizes (GPU_QUICK_FUZZ) because every head-size class and option set is a new pipeline, which a
 * software driver compiles for seconds to minutes the first time (Mesa caches them on disk afterwards).
 *
 * Tolerance FUZZ_TOLERANCES.webgpu: 1e-5 forward, 2e-4 gradients (see RELIABILITY.md). FUZZ_SEED / WEBGPU_FUZZ_RUNS
 * override the seed and the number of runs; FUZZ_VERBOSE=1 prints every case. The long run is
 * `npm run fuzz -- --backend webgpu`.
 */
// Static imports only (not reliability_backends.ts's lazy webgpu row): under mocha a test file is loaded as CommonJS,
// and a dynamic import() of webgpu_env.ts would make a second module instance, i.e. a second Dawn instance and
// device, which crashes or deadlocks Dawn.
import './setup_node.js';
import * as tf from '@tensorflow/tfjs-core';
import {expect} from 'chai';
import * as lib from '../src/index.js';
import {checkCase} from './check_case.js';
import {formatFailure, FUZZ_TOLERANCES, GPU_QUICK_FUZZ, runFuzz} from './fuzz.js';
import {setupWebGPU, WebGPUEnv, withGPUErrorCheck} from './webgpu_env.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20240601);
const RUNS = Number(process.env.WEBGPU_FUZZ_RUNS ?? 16);
const TOLERANCE = FUZZ_TOLERANCES.webgpu;

describe(`fuzz on webgpu in node (seed ${SEED}, ${RUNS} runs, tolerance fwd ${TOLERANCE.forward}, grad ${
             TOLERANCE.gradients})`, function() {
  // First-time pipeline compiles on software Vulkan, on a shared machine.
  this.timeout(1_800_000);
  let env: WebGPUEnv | null = null;
  before(async function() {
    env = await setupWebGPU();
    if (env == null) this.skip();
    await tf.setBackend('webgpu');
  });

  it('output, lse, dq, dk, dv match the float64 reference; no WebGPU errors', async () => {
    const start = Date.now();
    let executed = 0;
    const report = await runFuzz(tf, lib, {
      seed: SEED, numRuns: RUNS, config: GPU_QUICK_FUZZ, tolerance: TOLERANCE,
      check: (c, seed) => withGPUErrorCheck(env!.device, () => checkCase(tf, lib, c, seed)),
      onCase: (c, r, failures) => {
        executed++;
        if (process.env.FUZZ_VERBOSE) {
          console.log(`      ${failures.length ? 'FAIL' : 'ok  '} ${((Date.now() - start) / 1000).toFixed(1)} s ${
              c.case.name}${failures.length ? `: ${failures.join('; ')}` : ''}`);
        }
      },
    });
    const maxErrors = Object.entries(report.maxErrors).map(([k, e]) => `${k} ${e.toExponential(1)}`).join(', ') +
        (report.passedByRoundingFloor ? `; ${report.passedByRoundingFloor} passed lse/dq/dk by the fp32 rounding floor` : '');
    console.log(`      ${executed} cases in ${((Date.now() - start) / 1000).toFixed(0)} s; max errors ${maxErrors}`);
    expect(report.failed, formatFailure(report, 'webgpu')).to.equal(false);
  });
});
