/**
 * Option checks beyond the shared table, on the cpu kernels and on the composite kernels (on a cpu-based backend
 * without attention kernels, as in composite.test.ts):
 *   - the dropout keep mask equals src/plan/philox.ts element by element, read back through the output with v = one-hot
 *     rows (output[b, i, h, d] = P[b, h, i, d]·Z/(1 − rate) for d < seqK);
 *   - the same seed gives bit-identical outputs and gradients run after run; another seed another mask;
 *   - forward + gradients (q, k, v and bias) with every option leave no tensor behind;
 *   - the cpu tile walk sends tiles whose element conditions allow everything down the unmasked path.
 */
import './setup_node.js';
import {MathBackendCPU} from '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import {expect} from 'chai';
import * as lib from '../src/index.js';
import {dropoutKeep, makeDropoutPlan} from '../src/plan/philox.js';
import {makePlan} from '../src/plan/plan.js';
import {chooseTiles} from '../kernels/cpu/attention_cpu_util.js';
import type {OptionOperands} from '../kernels/cpu/option_operands_cpu.js';
import {KeyTileWalk} from '../kernels/cpu/schedule_walk_cpu.js';
import {randomArray} from './check_case.js';


const COMPOSITE = 'cpu-composite-options';
tf.registerBackend(COMPOSITE, () => new MathBackendCPU(), -1);
for (const config of tf.getKernelsForBackend('cpu')) {
  if (!lib.ALL_KERNELS.includes(config.kernelName)) tf.registerKernel({...config, backendName: COMPOSITE});
}

function randomTensor(shape: number[], seed: number): tf.Tensor {
  return tf.tensor(randomArray(shape.reduce((a, b) => a * b, 1), seed), shape);
}

for (const backend of ['cpu', COMPOSITE]) {
  describe(`options on ${backend === 'cpu' ? 'the cpu kernels' : 'the composite kernels'}`, () => {
    before(async () => {
      expect(await tf.setBackend(backend)).to.equal(true);
    });

    for (const causal of [false, true]) {
      it(`dropout keeps exactly the elements Philox keeps (${causal ? 'causal, ' : ''}GQA, seed > 2^32)`, async () => {
        const [batch, seqQ, seqK, heads, kvHeads] = [2, 9, 70, 4, 2], dim = seqK;
        const dropout = {rate: 0.3, seed: 2 ** 35 + 12345};
        const plan = makeDropoutPlan(dropout.rate, dropout.seed);
        const q = randomTensor([batch, seqQ, heads, dim], 1), k = randomTensor([batch, seqK, kvHeads, dim], 2);
        // v[b, j, hk, :] = one-hot(j): output row (b, i, h) is the row of probabilities P[b, h, i, :] (times Z).
        const oneHot = new Float32Array(batch * seqK * kvHeads * dim);
        for (let b = 0; b < batch; b++) {
          for (let j = 0; j < seqK; j++) {
            for (let hk = 0; hk < kvHeads; hk++) oneHot[((b * seqK + j) * kvHeads + hk) * dim + j] = 1;
          }
        }
        const v = tf.tensor(oneHot, [batch, seqK, kvHeads, dim]);
        const plain = lib.flashAttention(q, k, v, {causal});
        const dropped = lib.flashAttention(q, k, v, {causal, dropout});
        const [p, z] = [await plain.data(), await dropped.data()];
        tf.dispose([q, k, v, plain, dropped]);
        let kept = 0, visible = 0;
        for (let b = 0; b < batch; b++) {
          for (let i = 0; i < seqQ; i++) {
            for (let h = 0; h < heads; h++) {
              for (let j = 0; j < seqK; j++) {
                const e = ((b * seqQ + i) * heads + h) * dim + j;
                if (p[e] === 0) {  // not visible (causal): nothing to drop
                  expect(z[e], `masked element (${b}, ${h}, ${i}, ${j})`).to.equal(0);
                  continue;
                }
                visible++;
                const keep = dropoutKeep(plan, b, h, i, j);
                if (keep) kept++;
                const expected = keep ? p[e] * plan.keepScale : 0;
                expect(Math.abs(z[e] - expected), `element (${b}, ${h}, ${i}, ${j}) keep ${keep}`)
                    .to.be.at.most(2e-6 * Math.max(1, Math.abs(expected)));
              }
            }
          }
        }
        // About 70% kept (the mask is Philox's, not constant).
        expect(kept / visible).to.be.within(0.6, 0.8);
      });
    }

    it('the same seed gives bit-identical outputs and gradients run after run; another seed differs', async () => {
      const q = randomTensor([2, 20, 4, 16], 3), k = randomTensor([2, 33, 2, 16], 4);
      const v = randomTensor([2, 33, 2, 16], 5);
      const run = async (seed: number) => {
        const f = (qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor) =>
            lib.slidingWindowAttention(qq, kk, vv, {windowSize: [9, 3], dropout: {rate: 0.4, seed}});
        const out = f(q, k, v);
        const grads = tf.grads((qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor) => tf.sum(f(qq, kk, vv)))([q, k, v]);
        const data = await Promise.all([out, ...grads].map((t) => t.data()));
        tf.dispose([out, ...grads]);
        return data.map((d) => Array.from(d as Float32Array));
      };
      const first = await run(77);
      for (let n = 0; n < 3; n++) expect(await run(77)).to.deep.equal(first);
      expect((await run(78))[0]).to.not.deep.equal(first[0]);
      tf.dispose([q, k, v]);
    });

    it('forward + gradients of q, k, v and bias with every option leave no tensor behind', async () => {
      const [batch, seqQ, seqK, heads, kvHeads, dim] = [2, 11, 19, 4, 2, 8];
      const q = randomTensor([batch, seqQ, heads, dim], 6), k = randomTensor([batch, seqK, kvHeads, dim], 7);
      const v = randomTensor([batch, seqK, kvHeads, dim], 8), bias = randomTensor([batch, 1, seqQ, seqK], 9);
      const mask = tf.tensor(randomArray(seqQ * seqK, 10).map((x) => (x > -0.7 ? 1 : 0)), [seqQ, seqK], 'bool');
      const ids = (n: number, cut: number) =>
          tf.tensor2d(Array.from({length: batch * n}, (_, e) => (e % n < cut ? 3 : 5)), [batch, n], 'int32');
      const segmentIds = {query: ids(seqQ, 5), key: ids(seqK, 9)};
      const queryOffsets = tf.tensor1d([8, 100], 'int32');  // 100 is clamped to seqK
      const before = tf.memory().numTensors;
      for (let n = 0; n < 3; n++) {
        const f = (qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor, bb: tf.Tensor) => lib.sparseAttention(qq, kk, vv, {
          layout: lib.patterns.local(seqQ, seqK, 4, {leftBlocks: 2, rightBlocks: 1}), causal: true, bias: bb, mask,
          alibiSlopes: [0.5, 0.25, 0.125, 0.0625], segmentIds, queryOffsets, keyLengths: [19, 15], softcap: 3,
          dropout: {rate: 0.2, seed: n}, returnLse: true,
        });
        const {output, lse} = f(q, k, v, bias);
        const grads = tf.grads((qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor, bb: tf.Tensor) => {
          const r = f(qq, kk, vv, bb);
          return tf.add(tf.sum(r.output), tf.sum(tf.where(tf.isFinite(r.lse), r.lse, tf.zerosLike(r.lse))));
        })([q, k, v, bias]);
        expect(grads[3].shape).to.deep.equal(bias.shape);
        const values = await Promise.all([output, ...grads].map((t) => t.data()));
        for (const x of values) expect(Array.from(x as Float32Array).every(Number.isFinite)).to.equal(true);
        tf.dispose([output, lse, ...grads]);
      }
      expect(tf.memory().numTensors).to.equal(before);
      tf.dispose([q, k, v, bias, mask, segmentIds.query, segmentIds.key, queryOffsets]);
    });
  });
}

describe('cpu key-tile walk with element conditions (issue 16: fully visible tiles take the unmasked path)', () => {
  /** The walk over one query tile of a 64 × 130 plan whose elementwise conditions hide the pairs `hidden` lists. */
  function walkTiles(hidden: (i: number, j: number) => boolean): Array<{k0: number, masked: boolean, c0: number,
                                                                         c1: number}> {
    const plan = makePlan({kind: 'flash', batch: 1, seqQ: 32, seqK: 130, heads: 1, kvHeads: 1, headDim: 8, scale: 1,
                           softcap: 0, windowLeft: -1, windowRight: -1, layout: null, hasKeyLengths: false});
    const ops = {
      elementWise: true, offsets: new Int32Array([plan.diagonalOffset]),
      allowRow(allowed: Uint8Array, base: number, _b: number, _h: number, i: number, k0: number, lo: number, hi: number) {
        for (let c = lo; c < hi; c++) if (hidden(i, k0 + c)) allowed[base + c] = 0;
      },
    } as unknown as OptionOperands;
    const walk = new KeyTileWalk(plan, ops);
    const tiles = [];
    expect(walk.startQueryTile(0, 0, 0, plan.seqK)).to.equal(true);
    while (walk.nextKeyTile()) tiles.push({k0: walk.k0, masked: walk.masked, c0: walk.c0, c1: walk.c1});
    return tiles;
  }

  it('a tile whose conditions allow every element is unmasked; one hidden element or a cut tile keeps the mask', () => {
    const {blockK} = chooseTiles(makePlan({kind: 'flash', batch: 1, seqQ: 32, seqK: 130, heads: 1, kvHeads: 1,
                                           headDim: 8, scale: 1, softcap: 0, windowLeft: -1, windowRight: -1,
                                           layout: null, hasKeyLengths: false}));
    expect(blockK).to.equal(64);
    // Nothing hidden: every tile is unmasked, the last one over its 2 keys (as without element conditions).
    expect(walkTiles(() => false)).to.deep.equal([
      {k0: 0, masked: false, c0: 0, c1: 64}, {k0: 64, masked: false, c0: 0, c1: 64},
      {k0: 128, masked: false, c0: 0, c1: 2}]);
    // One hidden element in the middle of tile 1: masked (the full width stays, the element is hidden per element).
    expect(walkTiles((i, j) => i === 5 && j === 100)[1]).to.deep.equal({k0: 64, masked: true, c0: 0, c1: 64});
    // A whole hidden row in tile 0: masked. Every element of tile 1 hidden: skipped. One key of the last: masked.
    expect(walkTiles((i, j) => (i === 7 && j < 64) || (j >= 64 && j < 128) || (i === 0 && j === 129))
        .map((t) => [t.k0, t.masked])).to.deep.equal([[0, true], [128, true]]);
  });
});
