/**
 * The webgpu backward kernels (kernels/webgpu/*Grad.ts): the shared case table through tf.grads on the public API,
 * plus what the table cannot see: the grad path runs our three programs and no tfjs matmul/softmax, results are
 * bit-identical run to run, other tilings (forced) agree, batch splitting under a small binding limit, and no
 * WebGPU validation errors anywhere.
 */
import './setup_node.js';
import {expect} from 'chai';
import * as tf from '@tensorflow/tfjs-core';
import * as lib from '../src/index.js';
import '../kernels/webgpu/register_all_webgpu_kernels.js';
import {setGradTilesOverrideForTests, setGradVec4LoadsForTests} from '../kernels/webgpu/attention_backward.js';
import {chooseGradTiles, GradTiles} from '../kernels/webgpu/grad_tiles.js';
import {setLimitsOverrideForTests} from '../kernels/webgpu/program_runner.js';
import {CASES, AttentionCase} from './cases.js';
import {checkCase, randomArray} from './check_case.js';
import {assertCaseResult, caseSeed, describeBackendCases} from './shared_runner.js';
import {TOLERANCES as TABLE} from './tolerances.js';
import {webgpuBackendOrSkip, WebGPUEnv, withGPUErrorCheck} from './webgpu_env.js';

const TOLERANCES = TABLE.webgpu;
const QUICK = process.env.WEBGPU_GRAD_ALL == null;

let env: WebGPUEnv | null = null;

function runCase(c: AttentionCase, seed: number) {
  return withGPUErrorCheck(env!.device, () => checkCase(tf, lib, c, seed));
}

describe('webgpu backward kernels', function() {
  // Software Vulkan compiles each new pipeline at its first dispatch: on a loaded 2-core machine a forced tiling's
  // first case can take minutes.
  this.timeout(600_000);
  before(async function() {
    env = await webgpuBackendOrSkip(this);
  });

  describeBackendCases('webgpu', runCase, (c) => !QUICK || (c.tags ?? []).includes('quick'), 'webgpu grad');

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

  describe('forced tilings (chunked headDim, ragged accumulator rows, two accumulator columns, tiny tiles)', () => {
    // chunk -1: whole padded headDim; -2: half of it. Each tiling runs the cases that exercise its edge.
    const tile = (resident: number, streamed: number, threads: number, chunk: number, accCols = 1) =>
        ({resident, streamed, threads, chunk, accCols, paddedDim: 0});
    const runs: Array<[string, GradTiles, string[]]> = [
      ['16x8, 64 invocations, chunks of 16 columns', tile(16, 8, 64, 16),
       ['flash causal S77 H3 D64', 'sliding GQA keyLengths softcap']],
      ['32x16, 128 invocations, half-width chunks', tile(32, 16, 128, -2),
       ['flash softcap 5, scale 1', 'flash keyLengths [77, 0, 30] (empty batch)']],
      ['32x16, 128 invocations, two accumulator columns', tile(32, 16, 128, -1, 2),
       ['sparse longformer bs7 S77', 'flash causal seqQ130 > seqK77 (empty top rows)']],
      ['8x8, 64 invocations', tile(8, 8, 64, -1), ['flash causal seqQ130 > seqK77 (empty top rows)']],
    ];
    for (const [label, t, names] of runs) {
      for (const name of names) {
        const index = CASES.findIndex((c) => c.name === name);
        if (index < 0) throw new Error(`webgpu_grad.test.ts: no shared case named ${name}`);
        it(`${label}: ${name}`, async () => {
          const c = CASES[index];
          const paddedDim = Math.ceil(c.headDim / 16) * 16;
          const chunk = t.chunk === -1 ? paddedDim : t.chunk === -2 ? paddedDim / 2 : t.chunk;
          const forced = {...t, paddedDim, chunk};
          setGradTilesOverrideForTests({dkdv: forced, dq: forced});
          try {
            assertCaseResult(await runCase(c, caseSeed(index)), TOLERANCES, c);
          } finally {
            setGradTilesOverrideForTests(null);
          }
        });
      }
    }
  });

  it('prefetched staging and vec4 loads give the same bits as plain staging (GQA, causal, mask summaries)', async () => {
    // Only how streamed tiles reach workgroup memory differs, not the arithmetic: results must be bit-identical.
    // The mask makes the summary skip tiles the prefetch predicted (then the tile is loaded where it is used); GQA
    // makes the dK/dV prefetch cross heads; headDim 24 pads (vec4 loads, zero columns), headDim 18 takes scalar loads.
    for (const d of [24, 18]) {
      const seq = 70;
      const maskData = new Uint8Array(seq * seq).map((_, e) => Number((e % seq) <= Math.floor(e / seq) &&
                                                                         (e % seq) % 11 !== 3));
      const grads = async (prefetch: boolean, vec4: boolean) => {
        const paddedDim = Math.ceil(d / 16) * 16;
        const t = (resident: number, streamed: number) =>
            ({resident, streamed, threads: 64, chunk: paddedDim, paddedDim, prefetch});
        setGradTilesOverrideForTests({dkdv: t(16, 16), dq: t(16, 8)});
        setGradVec4LoadsForTests(vec4);
        try {
          return await withGPUErrorCheck(env!.device, async () => {
            const q = tf.tensor(randomArray(seq * 4 * d, 1), [1, seq, 4, d]);
            const k = tf.tensor(randomArray(seq * 2 * d, 2), [1, seq, 2, d]);
            const v = tf.tensor(randomArray(seq * 2 * d, 3), [1, seq, 2, d]);
            const mask = tf.tensor(maskData, [seq, seq], 'bool');
            const gs = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
                tf.sum(tf.square(lib.flashAttention(a, b, c, {mask}) as tf.Tensor)))([q, k, v]);
            const gsPlain = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
                tf.sum(tf.square(lib.flashAttention(a, b, c, {causal: true}) as tf.Tensor)))([q, k, v]);
            const data = await Promise.all([...gs, ...gsPlain].map((g) => g.data()));
            tf.dispose([q, k, v, mask, ...gs, ...gsPlain]);
            return data;
          });
        } finally {
          setGradTilesOverrideForTests(null);
          setGradVec4LoadsForTests(true);
        }
      };
      const plain = await grads(false, false);
      for (const [prefetch, vec4] of [[true, true], [true, false]]) {
        const other = await grads(prefetch, vec4);
        for (let i = 0; i < plain.length; i++) {
          expect(Buffer.from((other[i] as Float32Array).buffer).equals(Buffer.from((plain[i] as Float32Array).buffer)),
                 `headDim ${d} prefetch ${prefetch} vec4 ${vec4} gradient ${i}`).to.equal(true);
        }
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
