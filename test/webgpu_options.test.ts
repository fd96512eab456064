/**
 * Kernel-level checks of the webgpu options (issues 16-18) beyond the shared table: the dropout keep mask is
 * bit-identical to src/plan/philox.ts (v = identity rows, so the output exposes P ∘ Z), and plans without options
 * compile no option code.
 */
import {expect} from 'chai';
import './setup_node.js';
import * as tf from '@tensorflow/tfjs-core';
import * as lib from '../src/index.js';
import '../kernels/webgpu/register_all_webgpu_kernels.js';
import {makeDropoutPlan, dropoutKeep} from '../src/plan/philox.js';
import {randomArray} from './check_case.js';
import {setupWebGPU, WebGPUEnv, withGPUErrorCheck} from './webgpu_env.js';

let env: WebGPUEnv | null = null;

describe('webgpu options', function() {
  this.timeout(600000);
  before(async function() {
    env = await setupWebGPU();
    if (env == null) this.skip();
    await tf.setBackend('webgpu');
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
});
