/**
 * A float32 mask entry holding NaN masks its pair (visible iff the entry is truthy: non-zero and not NaN), as the
 * float64 reference reads it, on cpu, the composite kernels (wasm) and webgpu (Dawn); webgl has the same check in
 * test/browser.test.ts.
 */
import './setup_node.js';
import {expect} from 'chai';
import * as tf from '@tensorflow/tfjs-core';
import * as lib from '../src/index.js';
import '../kernels/webgpu/register_all_webgpu_kernels.js';
import {NODE_BACKENDS} from './reliability_backends.js';
import {randomArray} from './check_case.js';

async function maskedEqualsNaN(): Promise<number> {
  const [B, S, H, D] = [1, 20, 2, 8];
  const q = tf.tensor(randomArray(B * S * H * D, 1), [B, S, H, D]);
  const k = tf.tensor(randomArray(B * S * H * D, 2), [B, S, H, D]);
  const v = tf.tensor(randomArray(B * S * H * D, 3), [B, S, H, D]);
  const values = randomArray(S * S, 4).map((x) => (x > -0.3 ? 1 : 0));
  const withNaN = values.map((x, e) => (x === 0 && e % 2 === 0 ? NaN : x));
  const m1 = tf.tensor(values, [S, S]), m2 = tf.tensor(withNaN, [S, S]);
  const a = lib.flashAttention(q, k, v, {mask: m1});
  const b = lib.flashAttention(q, k, v, {mask: m2});
  const diff = (await tf.max(tf.abs(tf.sub(a, b))).data())[0];
  tf.dispose([q, k, v, a, b, m1, m2]);
  return diff;
}

describe('a NaN in a float32 mask masks its pair', function() {
  this.timeout(600_000);
  for (const backend of NODE_BACKENDS) {
    it(backend.name, async () => {
      await backend.setUp();
      expect(await maskedEqualsNaN()).to.equal(0);
    });
  }
});
