/**
 * The backward's option code (kernels/webgpu/flash_attention_grad_webgpu.ts GradOptionCode): the staged / hoisted code
 * (bias staged per tile — the default — and ALiBi hoisted, selectable) gives the first session's gradients (scoreTerm per element: 'inline' / 'inline'):
 * bit-identical with a bias alone; with ALiBi within 1e-6 of max |gradient| (the terms are the same f32 values, but
 * the shader compiler may contract `tt + negSlope·x` into an fma differently: lavapipe gives 1-ulp differences, as the
 * forward's hoisted ALiBi does) — bias in every broadcast shape, ALiBi [heads] and [batch, heads], odd sizes, GQA, causal,
 * masks, dropout, dBias from both its passes. The default code against the float64 reference: the shared table
 * (webgpu_grad.test.ts).
 */
import './setup_node.js';
import {expect} from 'chai';
import * as tf from '@tensorflow/tfjs-core';
import * as lib from '../src/index.js';
import '../kernels/webgpu/register_all_webgpu_kernels.js';
import {GradOptionCode, setGradOptionCodeForBench} from '../kernels/webgpu/flash_attention_grad_webgpu.js';
import {randomArray} from './check_case.js';
import {webgpuBackendOrSkip, WebGPUEnv, withGPUErrorCheck} from './webgpu_env.js';

let env: WebGPUEnv | null = null;
const LEGACY: GradOptionCode = {bias: 'inline', alibi: 'inline'};
const STAGED: GradOptionCode = {bias: 'staged', alibi: 'hoisted'};
const bits = (a: Float32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

interface CodeCase {
  name: string;
  B: number;
  Sq: number;
  Sk: number;
  H: number;
  Hkv: number;
  D: number;
  /** Bias shape, from [B | 1, H | 1, Sq, Sk] with leading dims dropped as listed. */
  bias?: 'q' | 'bq' | '1h' | 'b1';
  negInf?: boolean;
  alibi?: 'heads' | 'batchHeads';
  causal?: boolean;
  mask?: boolean;
  dropout?: boolean;
  queryOffsets?: number[];
}

const CODE_CASES: CodeCase[] = [
  {name: 'bias [Sq, Sk] S77 GQA causal (dBias pass over B, H)', B: 2, Sq: 77, Sk: 77, H: 4, Hkv: 2, D: 32, bias: 'q',
   causal: true},
  {name: 'bias [B, Sq, Sk] Sq7 Sk130 + mask', B: 2, Sq: 7, Sk: 130, H: 2, Hkv: 2, D: 64, bias: 'bq', mask: true},
  {name: 'bias [1, H, Sq, Sk] S130 B1 (dBias from the dQ pass), -Infinity entries', B: 1, Sq: 130, Sk: 130, H: 3,
   Hkv: 1, D: 16, bias: '1h', negInf: true, causal: true},
  {name: 'bias [B, 1, Sq, Sk] S1', B: 2, Sq: 1, Sk: 1, H: 2, Hkv: 1, D: 8, bias: 'b1'},
  {name: 'bias [1, H, Sq, Sk] + ALiBi [B, heads] + dropout Sq77 Sk7', B: 2, Sq: 77, Sk: 7, H: 2, Hkv: 2, D: 32,
   bias: '1h', alibi: 'batchHeads', dropout: true},
  {name: 'ALiBi [heads] S130 GQA causal', B: 1, Sq: 130, Sk: 130, H: 4, Hkv: 1, D: 32, alibi: 'heads', causal: true},
  {name: 'ALiBi [B, heads] queryOffsets + mask S77', B: 2, Sq: 77, Sk: 77, H: 2, Hkv: 2, D: 16, alibi: 'batchHeads',
   mask: true, queryOffsets: [0, 5]},
];

/** dq, dk, dv (and dBias) of one case under `code`. */
async function grads(c: CodeCase, code: GradOptionCode | null): Promise<Float32Array[]> {
  setGradOptionCodeForBench(code);
  try {
    return await withGPUErrorCheck(env!.device, async () => {
      let seed = 100;
      const rand = (shape: number[]) => tf.tensor(randomArray(shape.reduce((a, x) => a * x, 1), seed++), shape);
      const q = rand([c.B, c.Sq, c.H, c.D]), k = rand([c.B, c.Sk, c.Hkv, c.D]), v = rand([c.B, c.Sk, c.Hkv, c.D]);
      const dy = rand([c.B, c.Sq, c.H, c.D]);
      const biasShape = c.bias == null ? null : {q: [c.Sq, c.Sk], bq: [c.B, c.Sq, c.Sk], '1h': [1, c.H, c.Sq, c.Sk],
                                                 b1: [c.B, 1, c.Sq, c.Sk]}[c.bias];
      let bias = biasShape == null ? null : rand(biasShape);
      if (bias != null && c.negInf) {
        const values = await bias.data() as Float32Array;
        for (let e = 0; e < values.length; e += 5) values[e] = -Infinity;
        bias.dispose();
        bias = tf.tensor(values, biasShape!);
      }
      const maskValues = c.mask ? Array.from(randomArray(c.B * c.Sq * c.Sk, 7), (x) => (x > -0.6 ? 1 : 0)) : null;
      const mask = maskValues == null ? undefined : tf.tensor(maskValues, [c.B, 1, c.Sq, c.Sk], 'bool');
      const slopes = Array.from({length: c.H}, (_, h) => 2 ** (-8 * (h + 1) / c.H));
      const alibiSlopes = c.alibi == null ? undefined : c.alibi === 'heads' ? slopes :
          tf.tensor(Array.from({length: c.B}, (_, b) => slopes.map((s) => s * (b + 1))).flat(), [c.B, c.H]);
      const options = (b: tf.Tensor | null): lib.FlashAttentionOptions => ({
        causal: c.causal, mask, alibiSlopes, queryOffsets: c.queryOffsets,
        dropout: c.dropout ? {rate: 0.2, seed: 11} : undefined, ...(b == null ? {} : {bias: b}),
      });
      const inputs = [q, k, v, ...(bias == null ? [] : [bias])];
      const gs = tf.grads((...xs: tf.Tensor[]) => lib.flashAttention(
          xs[0] as tf.Tensor4D, xs[1] as tf.Tensor4D, xs[2] as tf.Tensor4D, options(xs[3] ?? null)) as tf.Tensor)(
          inputs, dy);
      const data = await Promise.all(gs.map((g) => g.data() as Promise<Float32Array>));
      tf.dispose([...inputs, dy, ...gs, ...(mask == null ? [] : [mask]),
                  ...(alibiSlopes instanceof tf.Tensor ? [alibiSlopes] : [])]);
      return data;
    });
  } finally {
    setGradOptionCodeForBench(null);
  }
}

describe('webgpu backward option code (bias staged, ALiBi hoisted vs the legacy inline code)', function() {
  // Every case compiles its tile programs twice (both codes): minutes on lavapipe.
  this.timeout(900_000);
  before(async function() {
    env = await webgpuBackendOrSkip(this);
  });

  describe('staged / hoisted code = legacy code (dq, dk, dv, dBias; bitwise without ALiBi, 1e-6 relative with)', () => {
    for (const c of CODE_CASES) {
      it(c.name, async () => {
        const legacy = await grads(c, LEGACY);
        const current = await grads(c, STAGED);
        expect(current.length).to.equal(c.bias != null ? 4 : 3);
        current.forEach((g, i) => {
          // (With one key, dq, dk and dBias are exactly 0: softmax over one key has no gradient.)
          if (i === 2) expect(g.some((x) => x !== 0), 'dv is not all zeros').to.equal(true);
          if (c.alibi == null) {
            expect(bits(g).equals(bits(legacy[i])), `gradient ${i} bit-identical`).to.equal(true);
            return;
          }
          let diff = 0, scale = 0;
          for (let e = 0; e < g.length; e++) {
            diff = Math.max(diff, Math.abs(g[e] - legacy[i][e]));
            scale = Math.max(scale, Math.abs(legacy[i][e]));
          }
          expect(Number.isFinite(diff) && diff <= 1e-6 * scale, `gradient ${i}: ${diff} of ${scale}`).to.equal(true);
        });
      });
    }
  });
});
