/**
 * The fuzz (test/fuzz.ts) on the webgpu kernels in node (Dawn; lavapipe when there is no GPU, see
 * test/webgpu_env.ts): fixed seed, each case inside WebGPU validation / out-of-memory error scopes, shrunk to a
 * minimal case on failure (test/fuzz_runner.ts). Few head sizes (GPU_QUICK_FUZZ) because every head-size class and
 * option set is a new pipeline, which a software driver compiles for seconds to minutes the first time (Mesa caches
 * them on disk afterwards).
 *
 * Tolerance FUZZ_TOLERANCES.webgpu (test/tolerances.ts). FUZZ_SEED / WEBGPU_FUZZ_RUNS override the seed and the number
 * of runs; FUZZ_VERBOSE=1 prints every case. The long run is `npm run fuzz -- --backend webgpu`.
 */
// Static imports only (not reliability_backends.ts's lazy webgpu row): under mocha a test file is loaded as CommonJS,
// and a dynamic import() of webgpu_env.ts would make a second module instance, i.e. a second Dawn instance and
// device, which crashes or deadlocks Dawn.
import './setup_node.js';
import * as tf from '@tensorflow/tfjs-core';
import * as lib from '../src/index.js';
import {checkCase} from './check_case.js';
import {FUZZ_TOLERANCES, GPU_QUICK_FUZZ} from './fuzz.js';
import {describeWebGPUFuzz} from './webgpu_fuzz_suite.js';

describeWebGPUFuzz({
  label: 'webgpu in node', runs: Number(process.env.WEBGPU_FUZZ_RUNS ?? 16), config: GPU_QUICK_FUZZ,
  tolerance: FUZZ_TOLERANCES.webgpu,
  check: (c, seed) => checkCase(tf, lib, c, seed),
});
