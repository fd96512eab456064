/**
 * The split-dQ backward design (kernels/webgpu/attention_backward.ts, dq_splits.ts): the nsplits rule, bit-identical
 * gradients run to run with several key tiles per split, agreement with the two-pass design, the shared cases with
 * forced small tiles and nsplits (every split then owns several key tiles) and batch splitting under a small binding
 * limit with the split design still in use. The shared case table itself runs with the default (two-pass) design in
 * webgpu_grad.test.ts.
 */
import './setup_node.js';
import {expect} from 'chai';
import * as tf from '@tensorflow/tfjs-core';
import * as lib from '../src/index.js';
import '../kernels/webgpu/register_all_webgpu_kernels.js';
import {
  BackwardDesign, lastBackwardRun, setBackwardDesignForTests, setGradTilesOverrideForTests,
} from '../kernels/webgpu/attention_backward.js';
import {chooseDqSplits, MAX_ACCUMULATOR_BYTES, TARGET_WORKGROUPS} from '../kernels/webgpu/dq_splits.js';
import {setLimitsOverrideForTests} from '../kernels/webgpu/program_runner.js';
import {CASES, AttentionCase} from './cases.js';
import {checkCase, randomArray} from './check_case.js';
import {assertCaseResult, caseSeed} from './shared_runner.js';
import {TOLERANCES as TABLE} from './tolerances.js';
import {webgpuBackendOrSkip, WebGPUEnv, withGPUErrorCheck} from './webgpu_env.js';

const TOLERANCES = TABLE.webgpu;
let env: WebGPUEnv | null = null;

/** Small tiles (16 keys × 8 queries): a 77-key case has 5 key tiles, so nsplits 2 gives splits of 3 and 2 tiles.
 *  Prefetched, as the default tiles are (the prefetch then restarts at every key tile of a split). */
const SMALL = {resident: 16, streamed: 8, threads: 64, accCols: 1, prefetch: true};
function smallTiles(headDim: number) {
  const paddedDim = Math.ceil(headDim / 16) * 16;
  return {...SMALL, paddedDim, chunk: paddedDim};
}

/** Runs f under a design (and forced nsplits / tiles), restoring the defaults after. */
async function withDesign<T>(
    design: BackwardDesign, nsplits: number | null, headDim: number | null, f: () => Promise<T>): Promise<T> {
  setBackwardDesignForTests(design, nsplits);
  if (headDim != null) setGradTilesOverrideForTests({dkdv: smallTiles(headDim), dq: smallTiles(headDim)});
  try {
    return await withGPUErrorCheck(env!.device, f);
  } finally {
    setBackwardDesignForTests('two-pass');
    setGradTilesOverrideForTests(null);
  }
}

/** dq, dk, dv, dBias of a GQA causal flash attention with keyLengths, a per-head bias and dropout. */
async function optionGrads(): Promise<Float32Array[]> {
  const [B, S, H, Hkv, D] = [2, 77, 4, 2, 40];
  const q = tf.tensor(randomArray(B * S * H * D, 11), [B, S, H, D]);
  const k = tf.tensor(randomArray(B * S * Hkv * D, 12), [B, S, Hkv, D]);
  const v = tf.tensor(randomArray(B * S * Hkv * D, 13), [B, S, Hkv, D]);
  const bias = tf.tensor(randomArray(H * S * S, 14), [1, H, S, S]);
  const dy = tf.tensor(randomArray(B * S * H * D, 15), [B, S, H, D]);
  const gs = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor, d: tf.Tensor) => tf.sum(tf.mul(
      lib.flashAttention(a, b, c, {causal: true, keyLengths: [77, 40], bias: d, dropout: {rate: 0.2, seed: 7}}) as
      tf.Tensor, dy)))([q, k, v, bias]);
  const data = await Promise.all(gs.map((g) => g.data() as Promise<Float32Array>));
  [q, k, v, bias, dy, ...gs].forEach((t) => t.dispose());
  return data;
}

const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

describe('webgpu backward, split-dQ design', function() {
  this.timeout(900_000);
  before(async function() {
    env = await webgpuBackendOrSkip(this);
  });

  it('chooses nsplits: fills the GPU, equal key tiles per split, capped by tiles, binding and memory', () => {
    const base = {batch: 1, kvHeads: 16, numKeyTiles: 64, queryFloats: 4096 * 16 * 64, keyFloats: 4096 * 16 * 64,
                  bindingRoom: 2 ** 31};
    // 528 / 16 → 33 wanted, capped at 32 by memory (32 · 16 MiB) → 2 tiles per split → 32 splits, 512 workgroups.
    expect(TARGET_WORKGROUPS).to.equal(528);
    expect(chooseDqSplits(base)).to.equal(32);
    expect(chooseDqSplits({...base, kvHeads: 32})).to.equal(16);  // wanted 17 → 4 tiles per split
    expect(chooseDqSplits({...base, kvHeads: 1, numKeyTiles: 5})).to.equal(5);
    expect(chooseDqSplits({...base, batch: 64, numKeyTiles: 64})).to.equal(1);
    expect(chooseDqSplits({...base, numKeyTiles: 7, kvHeads: 100})).to.equal(4);  // wanted 6: 2 tiles per split
    // One binding holds the work buffer of a batch: [nsplits accumulators | dK | dV].
    expect(chooseDqSplits({...base, bindingRoom: 4 * (2 * base.keyFloats + 3 * base.queryFloats)})).to.equal(3);
    expect(chooseDqSplits({...base, bindingRoom: 4 * 2 * base.keyFloats})).to.equal(0);
    expect(chooseDqSplits({...base, queryFloats: base.queryFloats * 4}))
        .to.equal(MAX_ACCUMULATOR_BYTES / (4 * 4 * base.queryFloats));  // 8: the memory cap
    expect(chooseDqSplits(base, 5)).to.equal(5);
    expect(chooseDqSplits({...base, numKeyTiles: 3}, 5)).to.equal(3);
  });

  it('is bit-identical run to run with several key tiles per split (GQA, causal, keyLengths, bias, dropout)',
     async () => {
       const first = await withDesign('split-dq', 2, 40, optionGrads);
       expect(lastBackwardRun()).to.deep.equal({design: 'split-dq', nsplits: 2});
       const second = await withDesign('split-dq', 2, 40, optionGrads);
       expect(first.length).to.equal(4);
       first.forEach((g, i) => expect(bits(second[i]).equals(bits(g)), `gradient ${i}`).to.equal(true));
     });

  it('agrees with the two-pass design (same case, default tiles and nsplits)', async () => {
    const split = await withDesign('split-dq', null, null, optionGrads);
    expect(lastBackwardRun()!.design).to.equal('split-dq');
    const twoPass = await withDesign('two-pass', null, null, optionGrads);
    expect(lastBackwardRun()).to.deep.equal({design: 'two-pass', nsplits: 0});
    split.forEach((g, i) => {
      const ref = twoPass[i];
      let scale = 0, diff = 0;
      for (let e = 0; e < g.length; e++) {
        scale = Math.max(scale, Math.abs(ref[e]));
        diff = Math.max(diff, Math.abs(g[e] - ref[e]));
      }
      // dQ is summed in another order; dK, dV, dBias take the same arithmetic in another shader.
      expect(diff / scale, `gradient ${i}`).to.be.at.most(2e-5);
    });
  });

  describe('shared cases with 16×8 tiles and nsplits 2 (several key tiles per split)', () => {
    // Each is a new pipeline, which lavapipe compiles for minutes on a loaded machine: a few cases that cover the
    // skip lists, GQA, keyLengths, softcap, mask summaries, a dBias pass and dropout (the default tiling runs the
    // whole shared table in webgpu_grad.test.ts).
    const names = [
      'flash causal S77 H3 D64', 'sliding GQA keyLengths softcap', 'mask [B, 1, Sq, Sk] padding + sliding [8, 8]',
      'dropout 0.1 causal + mask + bias, seed > 2^32',
    ];
    for (const c of names.map((n) => CASES.find((cc) => cc.name === n)!)) {
      if (c == null) throw new Error('webgpu_grad_split_dq.test.ts: a named shared case is missing');
      it(c.name, async () => {
        const r = await withDesign('split-dq', 2, c.headDim, () => checkCase(tf, lib, c, caseSeed(CASES.indexOf(c))));
        expect(lastBackwardRun()!.design).to.equal('split-dq');
        assertCaseResult(r, TOLERANCES);
      });
    }
  });

  it('splits by batch when one binding cannot hold every batch, still split-dQ', async () => {
    const c: AttentionCase = {name: 'split', op: 'flash', batch: 3, seqQ: 40, seqK: 50, heads: 2, kvHeads: 1,
                              headDim: 16, causal: true, keyLengths: [50, 20, 33], lseGrad: true};
    // A batch of `work` is nsplits · 1280 + 1600 floats: 24 KiB holds nsplits ≤ 3; 4 key tiles of 16 → 2 splits of
    // 2 tiles (16.6 KB): one batch per binding.
    setLimitsOverrideForTests({maxStorageBufferBindingSize: 24576});
    try {
      const r = await withDesign('split-dq', null, 16, () => checkCase(tf, lib, c, 77));
      expect(lastBackwardRun()).to.deep.equal({design: 'split-dq', nsplits: 2});
      assertCaseResult(r, TOLERANCES);
    } finally {
      setLimitsOverrideForTests(null);
    }
  });
});
