/**
 * The webgpu backward kernels (kernels/webgpu/*Grad.ts): the shared case table through tf.grads on the public API,
 * plus what the table cannot see: the grad path runs our three programs and no tfjs matmul/softmax, results are
 * bit-identical run to run, other tilings (forced) agree, batch splitting under a small binding limit, and no
 * WebGPU validation errors anywhere.
 */
import {expect} from 'chai';
// Gradients of the core ops (sum, mul, where) that check_case's loss uses; tfjs-core alone does not register them.
import '@tensorflow/tfjs-core/dist/register_all_gradients';
import * as tf from '@tensorflow/tfjs-core';
import * as lib from '../src/index.js';
import '../kernels/webgpu/register_all_webgpu_kernels.js';
import {setGradTilesOverrideForTests} from '../kernels/webgpu/attention_grad_executor_webgpu.js';
import {chooseGradTiles, GradTiles} from '../kernels/webgpu/attention_grad_webgpu.js';
import {setLimitsOverrideForTests} from '../kernels/webgpu/program_runner_webgpu.js';
import {CASES, AttentionCase} from './cases.js';
import {checkCase, randomArray} from './check_case.js';
import {assertCaseResult, caseSeed, describeSharedCases, Tolerances} from './shared_runner.js';
import {setupWebGPU, WebGPUEnv, withGPUErrorCheck} from './webgpu_env.js';

const TOLERANCES: Tolerances = {forward: 1e-5, gradients: 1e-5};
const QUICK = process.env.WEBGPU_GRAD_ALL == null;

let env: WebGPUEnv | null = null;

async function ready(ctx: Mocha.Context): Promise<WebGPUEnv> {
  env = await setupWebGPU();
  if (env == null) ctx.skip();
  await tf.setBackend('webgpu');
  return env!;
}

function runCase(c: AttentionCase, seed: number) {
  return withGPUErrorCheck(env!.device, () => checkCase(tf, lib, c, seed));
}

describe('webgpu backward kernels', function() {
  before(async function() {
    await ready(this);
  });

  describeSharedCases('webgpu grad', TOLERANCES, runCase, (c) => !QUICK || (c.tags ?? []).includes('quick'));

  it('the grad path runs only the attention programs (no BatchMatMul/Softmax)', async () => {
    const q = tf.randomNormal([1, 40, 2, 32]), k = tf.randomNormal([1, 40, 2, 32]), v = tf.randomNormal([1, 40, 2, 32]);
    const profile = await tf.profile(() => {
      const [dq, dk, dv] = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
          tf.sum(lib.flashAttention(a, b, c, {causal: true}) as tf.Tensor))([q, k, v]);
      return [dq, dk, dv];
    });
    const names = profile.kernels.map((kk) => kk.name);
    expect(names).to.include('FlashAttentionGrad');
    expect(names.filter((n) => /BatchMatMul|Softmax|MatMul/.test(n))).to.deep.equal([]);
    [q, k, v].forEach((t) => t.dispose());
  });

  it('is deterministic: two runs give bit-identical dq, dk, dv', async () => {
    const c: AttentionCase = {name: 'det', op: 'flash', batch: 2, seqQ: 150, seqK: 150, heads: 4, kvHeads: 2,
                              headDim: 64, causal: true};
    const grads = async () => {
      const qa = randomArray(2 * 150 * 4 * 64, 1), ka = randomArray(2 * 150 * 2 * 64, 2);
      const va = randomArray(2 * 150 * 2 * 64, 3);
      const q = tf.tensor(qa, [2, 150, 4, 64]), k = tf.tensor(ka, [2, 150, 2, 64]), v = tf.tensor(va, [2, 150, 2, 64]);
      const gs = tf.grads((a: tf.Tensor, b: tf.Tensor, cc: tf.Tensor) =>
          tf.sum(tf.square(lib.flashAttention(a, b, cc, {causal: c.causal}) as tf.Tensor)))([q, k, v]);
      const data = await Promise.all(gs.map((g) => g.data()));
      [q, k, v, ...gs].forEach((t) => t.dispose());
      return data;
    };
    const first = await withGPUErrorCheck(env!.device, grads);
    const second = await withGPUErrorCheck(env!.device, grads);
    for (let i = 0; i < 3; i++) {
      expect(Buffer.from((second[i] as Float32Array).buffer).equals(Buffer.from((first[i] as Float32Array).buffer)),
             `gradient ${i}`).to.equal(true);
    }
  });

  describe('forced tilings (chunked headDim, small tiles, ragged accumulator rows, two accumulator columns)', () => {
    const tilings: Array<[string, Partial<Record<'dkdv' | 'dq', GradTiles>>]> = [
      ['16x8x64 chunk 16', {
        dkdv: {resident: 16, streamed: 8, paddedDim: 0, chunk: 16, threads: 64},
        dq: {resident: 16, streamed: 8, paddedDim: 0, chunk: 16, threads: 64},
      }],
      ['32x16x128 half chunks', {
        dkdv: {resident: 32, streamed: 16, paddedDim: 0, chunk: -2, threads: 128},
        dq: {resident: 32, streamed: 16, paddedDim: 0, chunk: -2, threads: 128},
      }],
      ['32x16x128 two accumulator columns', {
        dkdv: {resident: 32, streamed: 16, paddedDim: 0, chunk: -1, threads: 128, accCols: 2},
        dq: {resident: 32, streamed: 16, paddedDim: 0, chunk: -1, threads: 128, accCols: 2},
      }],
      ['8x8x64', {
        dkdv: {resident: 8, streamed: 8, paddedDim: 0, chunk: -1, threads: 64},
        dq: {resident: 8, streamed: 8, paddedDim: 0, chunk: -1, threads: 64},
      }],
    ];
    const picks = ['flash causal S77 H3 D64', 'flash softcap 5, scale 1', 'sparse longformer bs7 S77',
                   'sliding GQA keyLengths softcap', 'flash keyLengths [77, 0, 30] (empty batch)',
                   'flash causal seqQ130 > seqK77 (empty top rows)'];
    for (const [label, t] of tilings) {
      for (const name of picks) {
        const index = CASES.findIndex((c) => c.name === name);
        it(`${label}: ${name}`, async () => {
          const c = CASES[index];
          const pad = Math.ceil(c.headDim / 16) * 16;
          const fix = (g: GradTiles): GradTiles => ({...g, paddedDim: pad,
                                                     chunk: g.chunk === -1 ? pad : g.chunk === -2 ? pad / 2 : g.chunk});
          setGradTilesOverrideForTests({dkdv: fix(t.dkdv!), dq: fix(t.dq!)});
          try {
            assertCaseResult(await runCase(c, caseSeed(index)), TOLERANCES);
          } finally {
            setGradTilesOverrideForTests(null);
          }
        });
      }
    }
  });

  it('splits by batch when one binding cannot hold every batch', async () => {
    const c: AttentionCase = {name: 'split', op: 'flash', batch: 3, seqQ: 40, seqK: 50, heads: 2, kvHeads: 1,
                              headDim: 16, causal: true, keyLengths: [50, 20, 33], lseGrad: true};
    // One batch of q is 40·2·16·4 = 5120 bytes: room for one batch per binding.
    setLimitsOverrideForTests({maxStorageBufferBindingSize: 8192});
    try {
      assertCaseResult(await runCase(c, 77), TOLERANCES);
    } finally {
      setLimitsOverrideForTests(null);
    }
  });

  it('chooses tilings that fit 16 KiB of workgroup memory for every headDim', () => {
    for (const d of [16, 40, 64, 80, 96, 128, 200, 256]) {
      for (const pass of ['dkdv', 'dq'] as const) {
        const t = chooseGradTiles(pass, d, {maxComputeWorkgroupStorageSize: 16384,
                                            maxComputeInvocationsPerWorkgroup: 256});
        expect(t.paddedDim).to.be.at.least(d);
      }
    }
  });
});
