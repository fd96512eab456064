/**
 * What the per-element options cost in the webgpu fp32 forward (issues 16, 17), old and new code side by side in one
 * process: B1 H16 D64 S4096 (override: --seq N --heads N --dim N), dense vs `bias` [1, H, S, S] (target ≤ 1.5×),
 * `alibiSlopes` (≤ 1.1×) and `dropout: {rate: 0.1}` (≤ 1.25×), forward and forward+backward (tf.grads over q, k, v).
 *
 * 'legacy' compiles the forward's option code as the first session wrote it (bias loaded per score in the score loop,
 * ALiBi via scoreTerm per element, Philox's mulhi from four 16×16 products); 'new' is the default
 * (flash_attention_webgpu.ts ForwardOptionCode: bias prefetched into registers one key tile ahead, ALiBi hoisted, the
 * Hacker's Delight mulhi). The fwd+bwd rows also time the backward's option code (flash_attention_grad_webgpu.ts
 * GradOptionCode): 'legacy' = both passes' first code (the backward's bias loaded per score element inside phase B,
 * ALiBi via scoreTerm), 'fwd new' = new forward + legacy backward, 'new' = both defaults (the backward's bias tile
 * staged cooperatively per (query tile, key tile), ALiBi hoisted); fwd+bwd 'new' / 'fwd new' is the backward's
 * effect. (The backward's Philox is the new one in every row.)
 * Before timing, each option's output (and, fwd+bwd, gradients) under both codes is compared (max |new − legacy|;
 * dropout keeps the same elements, so it is a rounding difference too; the backward's new code is bit-identical
 * with a bias, 1 ulp with ALiBi: 1.19e-7 on lavapipe, the compiler contracting the hoisted term differently).
 *
 * Timing: bench/suite/webgpu_timing.ts timeOnQueue (calls back to back, one queue sync per batch, median ms per call
 * over 5 batches after a warm-up call).
 *   npm run bench:options-bundle && node .bench-dist/options_sweep.mjs [--quick] [--fwd-only]
 * (the bundle needs only the `webgpu` package beside it; Dawn toggles as tc_check.ts). --quick: B1 H2 D32 S256 (a check
 * of the script, e.g. on lavapipe); --fwd-only: no fwd+bwd rows.
 */
import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import * as lib from '../../src/index.js';
import '../../kernels/webgpu/register_all_webgpu_kernels.js';
import {
  DEFAULT_OPTION_CODE, ForwardOptionCode, setForwardOptionCodeForBench,
} from '../../kernels/webgpu/flash_attention_webgpu.js';
import {
  DEFAULT_GRAD_OPTION_CODE, GradOptionCode, setGradOptionCodeForBench,
} from '../../kernels/webgpu/flash_attention_grad_webgpu.js';
import {timeOnQueue} from '../suite/webgpu_timing.js';
import {adapterName, DAWN_TOGGLES, dawnAdapter} from './dawn_device.js';

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const arg = (name: string, fallback: number) => {
  const at = argv.indexOf(name);
  return at >= 0 ? Number(argv[at + 1]) : fallback;
};
const B = 1, H = arg('--heads', quick ? 2 : 16), D = arg('--dim', quick ? 32 : 64), S = arg('--seq', quick ? 256 : 4096);

const LEGACY: ForwardOptionCode = {bias: 'inline', alibi: 'inline', philox: 'halves'};
const LEGACY_GRAD: GradOptionCode = {bias: 'inline', alibi: 'inline'};
interface Code {
  fwd: ForwardOptionCode;
  bwd: GradOptionCode;
}
const CODES: Array<[string, Code]> = [
  ['legacy', {fwd: LEGACY, bwd: LEGACY_GRAD}], ['new', {fwd: DEFAULT_OPTION_CODE, bwd: DEFAULT_GRAD_OPTION_CODE}],
];
/** fwd+bwd rows: the new forward with the legacy backward too, so that one run separates the two effects. */
const FWD_BWD_CODES: Array<[string, Code]> = [
  CODES[0], ['fwd new', {fwd: DEFAULT_OPTION_CODE, bwd: LEGACY_GRAD}], CODES[1],
];
function setCode(code: Code | null): void {
  setForwardOptionCodeForBench(code?.fwd ?? null);
  setGradOptionCodeForBench(code?.bwd ?? null);
}
const maxDiff = (a: Float32Array, b: Float32Array) => {
  let diff = 0, scale = 0;
  for (let e = 0; e < a.length; e++) {
    diff = Math.max(diff, Math.abs(a[e] - b[e]));
    scale = Math.max(scale, Math.abs(a[e]));
  }
  return {diff, scale};
};

async function main(): Promise<void> {
  const {gpu, adapter} = await dawnAdapter([DAWN_TOGGLES]);
  if (adapter == null) throw new Error('no WebGPU adapter');
  console.log(`adapter: ${adapterName(adapter)}`);
  const caps = await lib.setupWebGPU({gpu});
  console.log(`backend ${tf.getBackend()}; ${JSON.stringify(caps)}`);
  console.log(`B${B} H${H} D${D} S${S} fp32; node ${process.version}`);

  const [q, k, v, dy] = [0, 1, 2, 3].map(() => tf.randomNormal([B, S, H, D]) as tf.Tensor4D);
  const bias = tf.randomUniform([1, H, S, S], -1, 1);
  const alibiSlopes = Array.from({length: H}, (_, h) => 2 ** (-8 * (h + 1) / H));
  const options: Array<[string, lib.FlashAttentionOptions]> = [
    ['dense', {}],
    ['bias', {bias}],
    ['alibi', {alibiSlopes}],
    ['dropout 0.1', {dropout: {rate: 0.1, seed: 7}}],
  ];
  const fwd = (o: lib.FlashAttentionOptions) => () => [lib.flashAttention(q, k, v, o) as tf.Tensor];
  const fwdBwd = (o: lib.FlashAttentionOptions) => () => tf.grads(
      (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
          lib.flashAttention(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, o) as tf.Tensor)([q, k, v], dy);

  console.log('\n== new vs legacy outputs (forward)');
  for (const [name, o] of options.slice(1)) {
    const outs: Float32Array[] = [];
    for (const [, code] of CODES) {
      setCode(code);
      const y = lib.flashAttention(q, k, v, o) as tf.Tensor;
      outs.push(await y.data() as Float32Array);
      y.dispose();
    }
    const {diff, scale} = maxDiff(outs[0], outs[1]);
    console.log(`${name.padEnd(12)} max |new - legacy| ${diff.toExponential(2)} (max |out| ${scale.toFixed(3)})${
        Number.isFinite(diff) ? '' : '  NOT FINITE'}`);
  }
  if (!argv.includes('--fwd-only')) {
    console.log('\n== new vs legacy backward (legacy forward in both: dq, dk, dv, and dBias for bias)');
    for (const [name, o] of options.slice(1)) {
      const runs: Float32Array[][] = [];
      // The same (legacy) forward, so that only the backward's code differs.
      for (const bwd of [LEGACY_GRAD, DEFAULT_GRAD_OPTION_CODE]) {
        setCode({fwd: LEGACY, bwd});
        const xs = name === 'bias' ? [q, k, v, bias] : [q, k, v];
        const gs = tf.grads((...a: tf.Tensor[]) => lib.flashAttention(
            a[0] as tf.Tensor4D, a[1] as tf.Tensor4D, a[2] as tf.Tensor4D, a.length > 3 ? {...o, bias: a[3]} : o) as
            tf.Tensor)(xs, dy);
        runs.push(await Promise.all(gs.map((g) => g.data() as Promise<Float32Array>)));
        tf.dispose(gs);
      }
      const parts = runs[1].map((g, i) => {
        const {diff} = maxDiff(runs[0][i], g);
        return `${['dq', 'dk', 'dv', 'dBias'][i]} ${diff.toExponential(2)}${Number.isFinite(diff) ? '' : ' NOT FINITE'}`;
      });
      console.log(`${name.padEnd(12)} max |new - legacy| ${parts.join(', ')}`);
    }
  }

  const table: Array<{pass: string; option: string; code: string; ms: number}> = [];
  const passes = [['fwd', fwd], ['fwd+bwd', fwdBwd]] as const;
  for (const [pass, make] of argv.includes('--fwd-only') ? passes.slice(0, 1) : passes) {
    for (const [name, o] of options) {
      for (const [codeName, code] of name === 'dense' ? [CODES[1]] : pass === 'fwd' ? CODES : FWD_BWD_CODES) {
        setCode(code);
        const ms = await timeOnQueue(make(o));
        table.push({pass, option: name, code: name === 'dense' ? '-' : codeName, ms});
        console.log(`${pass.padEnd(8)} ${name.padEnd(12)} ${(name === 'dense' ? '-' : codeName).padEnd(7)} ${
            ms.toFixed(3).padStart(9)} ms`);
      }
    }
  }
  setCode(null);

  const targets: Record<string, number> = {'bias': 1.5, 'alibi': 1.1, 'dropout 0.1': 1.25};
  console.log(`\n| pass | option | code | ms | / dense | target |`);
  console.log(`|---|---|---|---:|---:|---|`);
  for (const r of table) {
    const dense = table.find((t) => t.pass === r.pass && t.option === 'dense')!.ms;
    const ratio = r.ms / dense;
    const target = targets[r.option];
    console.log(`| ${r.pass} | ${r.option} | ${r.code} | ${r.ms.toFixed(3)} | ${ratio.toFixed(2)} | ${
        target == null ? '' : `≤ ${target} ${ratio <= target ? 'met' : 'not met'}`} |`);
  }
  tf.dispose([q, k, v, dy, bias]);
}

main().then(() => process.exit(0), (e) => {
  console.error(e);
  process.exit(1);
});
