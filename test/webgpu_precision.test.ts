/**
 * precision 'medium' on webgpu (Dawn on lavapipe, which has shader-f16): the shared case table's forward (output, lse)
 * against the float64 reference at the measured 'medium' tolerance (test/tolerances.ts), the path each op reports, 'high' and 'highest'
 * unchanged, and setupWebGPU's options; then the fuzz that measured the tolerance (WEBGPU_PRECISION_FUZZ_RUNS
 * runs, default 16; GPU_QUICK_FUZZ shapes; WEBGPU_PRECISION_FUZZ_LONG=1 for GPU_LONG_FUZZ's).
 */
import {expect} from 'chai';
import './setup_node.js';
import * as tf from '@tensorflow/tfjs-core';
import * as lib from '../src/index.js';
import '../kernels/webgpu/register_all_webgpu_kernels.js';
import {DECODE_MAX_QUERIES, DECODE_MIN_KEYS} from '../kernels/webgpu/attention_decode.js';
import {webgpuCapabilities} from '../kernels/webgpu/device_capabilities.js';
import {AttentionCase, hasTag} from './cases.js';
import {checkCase, randomArray} from './check_case.js';
import {GPU_LONG_FUZZ, GPU_QUICK_FUZZ} from './fuzz.js';
import {describeSharedCases} from './shared_runner.js';
import {MEDIUM_TOLERANCES} from './tolerances.js';
import {webgpuBackendOrSkip, WebGPUEnv, withGPUErrorCheck} from './webgpu_env.js';
import {describeWebGPUFuzz} from './webgpu_fuzz_suite.js';

let env: WebGPUEnv | null = null;

/** A case in 'medium', forward only (MEDIUM_TOLERANCES: the backward is the fp32 kernel). */
const checkMedium = (c: AttentionCase, seed: number) =>
  checkCase(tf, lib, {...c, precision: 'medium', forwardOnly: true}, seed);

describe('webgpu precision', function() {
  this.timeout(600000);
  before(async function() {
    env = await webgpuBackendOrSkip(this);
    // The runner's device must reach the f16 path: setupWebGPU requested shader-f16 (lavapipe offers it).
    expect(webgpuCapabilities(env.backend).shaderF16, 'lavapipe device has shader-f16').to.equal(true);
  });

  describeSharedCases('webgpu medium', MEDIUM_TOLERANCES.webgpu,
      (c, seed) => withGPUErrorCheck(env!.device, () => checkMedium(c, seed)), (c) => !hasTag(c, 'long'));

  const qkv = (seqQ: number, seqK: number, heads: number, kvHeads: number, d: number) => [
    tf.tensor(randomArray(seqQ * heads * d, 1), [1, seqQ, heads, d]),
    tf.tensor(randomArray(seqK * kvHeads * d, 2), [1, seqK, kvHeads, d]),
    tf.tensor(randomArray(seqK * kvHeads * d, 3), [1, seqK, kvHeads, d]),
  ] as tf.Tensor4D[];

  it("reports path 'f16' for every op in 'medium', fp32 for 'high' and 'highest', fp32 for the backward", async () => {
    const [q, k, v] = qkv(77, 77, 4, 2, 64);
    const ops = {
      FlashAttention: (precision: lib.AttentionPrecision) => lib.flashAttention(q, k, v, {causal: true, precision}),
      SlidingWindowAttention: (precision: lib.AttentionPrecision) =>
        lib.slidingWindowAttention(q, k, v, {windowSize: 9, precision}),
      SparseAttention: (precision: lib.AttentionPrecision) =>
        lib.sparseAttention(q, k, v, {layout: lib.patterns.local(77, 77, 16, {leftBlocks: 2}), precision}),
    };
    for (const [kernel, run] of Object.entries(ops)) {
      for (const precision of lib.ATTENTION_PRECISIONS) {
        tf.dispose(run(precision));
        expect(lib.lastAttentionPath(), `${kernel} ${precision}`).to.deep.equal(
            {backend: 'webgpu', kernel, requested: precision, path: precision === 'medium' ? 'f16' : 'fp32'});
      }
    }
    const grads = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
      lib.flashAttention(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, {precision: 'medium'}));
    tf.dispose(grads([q, k, v]));
    expect(lib.lastAttentionPath()).to.deep.equal(
        {backend: 'webgpu', kernel: 'FlashAttentionGrad', requested: 'medium', path: 'fp32'});
    tf.dispose([q, k, v]);
  });

  it("'high' and 'highest' give bit-identical results; 'medium' differs by f16 rounding only", async () => {
    const [q, k, v] = qkv(130, 130, 2, 2, 64);
    const [highest, high, medium] = await Promise.all((['highest', 'high', 'medium'] as const).map(async (precision) => {
      const o = lib.flashAttention(q, k, v, {causal: true, precision});
      const data = await o.data();
      o.dispose();
      return data;
    }));
    expect(Array.from(high)).to.deep.equal(Array.from(highest));
    let maxDiff = 0;
    for (let i = 0; i < highest.length; i++) maxDiff = Math.max(maxDiff, Math.abs(medium[i] - highest[i]));
    expect(maxDiff).to.be.greaterThan(0);
    expect(maxDiff).to.be.at.most(MEDIUM_TOLERANCES.webgpu.forward);
    tf.dispose([q, k, v]);
  });

  it('decode-shaped calls (the split-K decode kernel) run fp32 and say so', async () => {
    const [q, k, v] = qkv(DECODE_MAX_QUERIES, DECODE_MIN_KEYS + 7, 4, 1, 64);
    tf.dispose(lib.flashAttention(q, k, v, {precision: 'medium'}));
    expect(lib.lastAttentionPath()).to.deep.equal(
        {backend: 'webgpu', kernel: 'FlashAttention', requested: 'medium', path: 'fp32'});
    tf.dispose([q, k, v]);
  });

  describe('setupWebGPU options', () => {
    it('refuses a feature the adapter lacks, naming it, and keeps the current backend', async () => {
      const backend = tf.backend();
      let message = '';
      try {
        await lib.setupWebGPU({gpu: navigator.gpu, features: ['shader-f16', 'not-a-feature']});
      } catch (e) {
        message = (e as Error).message;
      }
      expect(message).to.match(/does not offer feature 'not-a-feature' \(it offers .*'shader-f16'/);
      expect(tf.backend()).to.equal(backend);
    });

    it('refuses bad options with the argument named', async () => {
      const cases: Array<[unknown, RegExp]> = [
        [{features: 'all'}, /features must be 'available' or an array of feature names, got "all"/],
        [{features: [16]}, /features must be 'available' or an array/],
        [{powerPreference: 'fast'}, /powerPreference must be 'low-power' or 'high-performance', got "fast"/],
        [{gpus: navigator.gpu}, /unknown option 'gpus'/],
      ];
      for (const [options, pattern] of cases) {
        let message = '';
        try {
          await lib.setupWebGPU(options as lib.SetupWebGPUOptions);
        } catch (e) {
          message = (e as Error).message;
        }
        expect(message, JSON.stringify(options)).to.match(pattern);
      }
    });
  });
});

describeWebGPUFuzz({
  label: "webgpu 'medium' in node", runs: Number(process.env.WEBGPU_PRECISION_FUZZ_RUNS ?? 16),
  config: process.env.WEBGPU_PRECISION_FUZZ_LONG ? GPU_LONG_FUZZ : GPU_QUICK_FUZZ,
  tolerance: MEDIUM_TOLERANCES.webgpu,
  check: checkMedium,
});
