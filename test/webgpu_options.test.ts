/**
 * Kernel-level checks of the webgpu options (issues 16-18) beyond the shared table: the dropout keep mask is
 * bit-identical to src/plan/philox.ts (v = identity rows, so the output exposes P ∘ Z), and the device-made tile
 * summary of a mask and segment ids equals a host computation.
 */
import {expect} from 'chai';
import './setup_node.js';
import * as tf from '@tensorflow/tfjs-core';
import * as lib from '../src/index.js';
import '../kernels/webgpu/register_all_webgpu_kernels.js';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {summarizeTiles, summaryShape} from '../kernels/webgpu/attention_options.js';
import {createOutput} from '../kernels/webgpu/program_runner.js';
import {dropoutKeep, makeDropoutPlan} from '../src/plan/philox.js';
import {makePlan} from '../src/plan/plan.js';
import {randomArray} from './check_case.js';
import {webgpuBackendOrSkip, WebGPUEnv, withGPUErrorCheck} from './webgpu_env.js';

let env: WebGPUEnv | null = null;

describe('webgpu options', function() {
  this.timeout(600000);
  before(async function() {
    env = await webgpuBackendOrSkip(this);
  });

  it('dropout keeps exactly the elements src/plan/philox.ts keeps (v = identity rows exposes P ∘ Z)', async () => {
    await withGPUErrorCheck(env!.device, async () => {
      // headDim = seqK: v[b, j, h, :] is the one-hot row j, so output[b, i, h, j] = P[i, j]·Z[i, j]·keepScale.
      const B = 2, Sq = 21, Sk = 16, H = 2, D = 16;
      const rate = 0.3, seed = 2 ** 33 + 5;
      const q = tf.tensor(randomArray(B * Sq * H * D, 11), [B, Sq, H, D]);
      const k = tf.tensor(randomArray(B * Sk * H * D, 12), [B, Sk, H, D]);
      const eye = new Float32Array(B * Sk * H * D);
      for (let b = 0; b < B; b++) {
        for (let j = 0; j < Sk; j++) for (let h = 0; h < H; h++) eye[((b * Sk + j) * H + h) * D + j] = 1;
      }
      const v = tf.tensor(eye, [B, Sk, H, D]);
      const plain = lib.flashAttention(q, k, v, {causal: true});
      const dropped = lib.flashAttention(q, k, v, {causal: true, dropout: {rate, seed}});
      const [p, pz] = [await plain.data(), await dropped.data()];
      const d = makeDropoutPlan(rate, seed);
      let kept = 0, visible = 0;
      for (let b = 0; b < B; b++) {
        for (let i = 0; i < Sq; i++) {
          for (let h = 0; h < H; h++) {
            for (let j = 0; j < Sk; j++) {
              const at = ((b * Sq + i) * H + h) * D + j;
              if (p[at] === 0) {
                expect(pz[at], `masked (${b}, ${h}, ${i}, ${j})`).to.equal(0);
                continue;
              }
              visible++;
              const keep = dropoutKeep(d, b, h, i, j);
              expect(pz[at] !== 0, `keep (${b}, ${h}, ${i}, ${j})`).to.equal(keep);
              if (keep) {
                kept++;
                expect(Math.abs(pz[at] - p[at] * d.keepScale)).to.be.at.most(1e-6 * d.keepScale);
              }
            }
          }
        }
      }
      expect(visible).to.be.greaterThan(200);
      expect(kept / visible).to.be.within(0.5, 0.85);
      tf.dispose([q, k, v, plain, dropped]);
    });
  });

  it('tile summary pre-pass equals a host computation (mask [B, 1, Sq, Sk] and segments)', async () => {
    await withGPUErrorCheck(env!.device, async () => {
      const B = 2, Sq = 37, Sk = 45, H = 3, blockQ = 8, blockK = 16;
      const maskValues = new Int32Array(B * Sq * Sk);
      for (let b = 0; b < B; b++) {
        for (let i = 0; i < Sq; i++) {
          for (let j = 0; j < Sk; j++) {
            // Rows < 16: scattered holes; rows >= 16: all on left of key 16, all off from key 32.
            const on = i < 16 ? (i * 7 + j * 3 + b) % 11 !== 0 : j < 32;
            maskValues[(b * Sq + i) * Sk + j] = on ? 1 : 0;
          }
        }
      }
      const queryIdValues = new Int32Array(B * Sq), keyIdValues = new Int32Array(B * Sk);
      for (let b = 0; b < B; b++) {
        for (let i = 0; i < Sq; i++) queryIdValues[b * Sq + i] = b === 0 ? 0 : (i < 24 ? 0 : 1);
        for (let j = 0; j < Sk; j++) keyIdValues[b * Sk + j] = b === 0 ? 0 : (j < 16 ? 0 : 1);
      }
      const mask = tf.tensor(maskValues, [B, 1, Sq, Sk], 'bool');
      const queryIds = tf.tensor(queryIdValues, [B, Sq], 'int32');
      const keyIds = tf.tensor(keyIdValues, [B, Sk], 'int32');
      const plan = makePlan({
        kind: 'flash', batch: B, seqQ: Sq, seqK: Sk, heads: H, kvHeads: H, headDim: 16, scale: 1, softcap: 0,
        windowLeft: -1, windowRight: -1, layout: null, hasKeyLengths: false,
        mask: {shape: [B, 1, Sq, Sk], batchStride: Sq * Sk, headStride: 0, dtype: 'bool'}, hasSegments: true,
      });
      const {batches, heads} = summaryShape(plan);
      expect([batches, heads]).to.deep.equal([B, 1]);
      const nq = Math.ceil(Sq / blockQ), nk = Math.ceil(Sk / blockK);
      const backend = env!.backend as WebGPUBackend;
      const info = createOutput(backend, [batches * heads * nq * nk + 3], 'int32');
      summarizeTiles(backend, plan, info, 3, blockQ, blockK, {mask, queryIds, keyIds});
      const out = tf.engine().makeTensorFromTensorInfo(info);
      const got = Array.from((await out.data()).slice(3));
      const expected: number[] = [];
      for (let b = 0; b < B; b++) {
        for (let qt = 0; qt < nq; qt++) {
          for (let kt = 0; kt < nk; kt++) {
            let any = false, all = true;
            for (let i = qt * blockQ; i < Math.min(Sq, (qt + 1) * blockQ); i++) {
              for (let j = kt * blockK; j < Math.min(Sk, (kt + 1) * blockK); j++) {
                const on = maskValues[(b * Sq + i) * Sk + j] !== 0 && queryIdValues[b * Sq + i] === keyIdValues[b * Sk + j];
                any ||= on;
                all &&= on;
              }
            }
            expected.push(!any ? 0 : all ? 2 : 1);
          }
        }
      }
      expect(got).to.deep.equal(expected);
      for (const state of [0, 1, 2]) expect(expected, `state ${state} occurs`).to.include(state);
      tf.dispose([mask, queryIds, keyIds, out]);
    });
  });
});
