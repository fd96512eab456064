/**
 * Option checks beyond the shared table, on the cpu kernels and on the composite kernels (on a cpu-based backend
 * without attention kernels, as in composite.test.ts):
 *   - the dropout keep mask equals src/plan/philox.ts element by element, read back through the output with v = one-hot
 *     rows (output[b, i, h, d] = P[b, h, i, d]·Z/(1 − rate) for d < seqK);
 *   - the same seed gives bit-identical outputs and gradients run after run; another seed another mask;
 *   - forward + gradients (q, k, v and bias) with every option leave no tensor behind.
 */
import './setup_node.js';
import {MathBackendCPU} from '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import {expect} from 'chai';
import * as lib from '../src/index.js';
import {dropoutKeep, makeDropoutPlan} from '../src/plan/philox.js';
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
