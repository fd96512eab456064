/**
 * Section `webgpu-options` of bench/suite.ts (issues 16/17): what the attention options cost, all in one run on one
 * device, forward and forward+backward (tf.grads over q, k, v with dy on the device):
 *   - causal given as a boolean `mask` [S, S] vs `causal: true` (target ≤ 1.3×) and vs naive with the same mask
 *     (target: ours ≥ 3× faster);
 *   - a random padding mask [B, 1, S, S] (per batch a random number of visible keys), ours vs naive;
 *   - `bias` [1, H, S, S] on / off (target ≤ 1.5×), `alibiSlopes` on / off (target ≤ 1.1×);
 *   - 4 documents packed through `segmentIds` vs dense attention over the whole sequence (target ≤ 0.35×);
 *   - `dropout: {rate: 0.1}` vs none (target ≤ 1.25×) and vs naive with tf.dropout's keep mask on the probabilities.
 * Default fp32 B1 H16 D64 S4096 on WebGPU (node + Dawn); `--quick` is S256 H2 D32, `--backend cpu` runs the same rows
 * on tfjs's cpu backend (test/bench_quick.test.ts does, to keep the section working). A row whose option the
 * backend's kernels do not support yet reports the kernel's error instead of a time; the run goes on.
 *
 *   npx tsx bench/suite.ts --section webgpu-options [--quick] [--seq N] [--heads N] [--dim N] [--batch N]
 *       [--backend webgpu|cpu] [--out DIR]
 *   node node_modules/tsx/dist/cli.mjs bench/suite.ts --section webgpu-options --out $OUT     # where there is no npx
 *
 * Timing on webgpu as in the webgpu-kernel section (calls back to back, one queue sync, median per call); on cpu the
 * median of a few calls, each ended by reading the outputs back. Writes webgpu-options-<date>.{json,md}.
 */
// tfjs's op gradients and the cpu backend, as @tensorflow/tfjs users have them (see webgpu_kernel.ts).
import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import {mkdirSync, writeFileSync} from 'node:fs';
import os from 'node:os';
import * as lib from '../../../src/index.js';
import '../../../kernels/webgpu/register_all_webgpu_kernels.js';
import {naiveAttentionWithBias} from '../../../src/layers/naive_attention.js';
import {mulberry32} from '../../../src/patterns/builders.js';
import {setupWebGPU} from '../../../test/webgpu_env.js';
import {runFolder} from '../machine.js';
import {median} from '../timing.js';
import {timeOnQueue} from '../webgpu_timing.js';

type Pass = 'fwd' | 'fwd+bwd';
type Fn4 = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D) => tf.Tensor4D;

export interface OptionRow {
  name: string;
  impl: 'ours' | 'naive';
  pass: Pass;
  ms: number | null;
  /** Why there is no time: the kernel's error (an option not supported yet) or naive failing. */
  error?: string;
}

export interface OptionRatio {
  what: string;
  pass: Pass;
  /** numerator / denominator of the two rows' times; null when either did not run. */
  ratio: number | null;
  target: string;
  met: boolean | null;
}

const MASKED = -1e30;

function parse(argv: string[]) {
  const arg = (name: string) => {
    const i = argv.indexOf(`--${name}`);
    return i < 0 ? undefined : argv[i + 1];
  };
  const quick = argv.includes('--quick');
  return {
    quick,
    seq: Number(arg('seq') ?? (quick ? 256 : 4096)),
    heads: Number(arg('heads') ?? (quick ? 2 : 16)),
    dim: Number(arg('dim') ?? (quick ? 32 : 64)),
    batch: Number(arg('batch') ?? 1),
    backend: arg('backend') ?? 'webgpu',
    // Our rows are timed in rounds (every variant once per round, the median over rounds): GPU clocks and
    // neighbours drift over a run, and a ratio of two rows timed minutes apart inherits that drift.
    rounds: Number(arg('rounds') ?? (quick ? 1 : 3)),
    out: arg('out'),
  };
}

/** Median ms per call of fn; fn returns the tensors to dispose. */
async function timeCall(fn: () => tf.Tensor[], quick: boolean): Promise<number> {
  if (tf.getBackend() === 'webgpu') return timeOnQueue(fn, quick ? {targetMs: 20, repeats: 3} : {});
  const once = async () => {
    const t0 = performance.now();
    const outs = fn();
    await Promise.all(outs.map((t) => t.data()));
    tf.dispose(outs);
    return performance.now() - t0;
  };
  await once();  // warm-up
  const samples: number[] = [];
  for (let i = 0; i < (quick ? 3 : 7); i++) samples.push(await once());
  return median(samples);
}

export async function main(argv: string[]): Promise<OptionRatio[]> {
  const o = parse(argv);
  let adapter = o.backend;
  if (o.backend === 'webgpu') {
    const env = await setupWebGPU();
    if (env == null) throw new Error('webgpu-options: no WebGPU adapter (use --backend cpu for the cpu backend)');
    adapter = env.adapterDescription;
  } else if (!(await tf.setBackend(o.backend))) {
    throw new Error(`webgpu-options: --backend ${o.backend} could not be set`);
  }
  const outDir = o.out ?? process.env.OUT ?? runFolder('.', 'webgpu-options', adapter);
  const {batch: B, seq: S, heads: H, dim: D} = o;
  const scale = 1 / Math.sqrt(D);
  const log = (s: string) => console.log(s);
  log(`webgpu-options on ${adapter}: B${B} H${H} D${D} S${S} fp32`);

  const rand = mulberry32(20261207);
  const [q, k, v, dy] = [0, 1, 2, 3].map(() => tf.randomUniform([B, S, H, D], -1, 1)) as tf.Tensor4D[];
  // Causal as data: [S, S] bool, key j visible from query i when j <= i (seqQ = seqK: bottom-right = top-left).
  const causalValues = new Uint8Array(S * S);
  for (let i = 0; i < S; i++) causalValues.fill(1, i * S, i * S + i + 1);
  const causalMask = tf.tensor2d(causalValues, [S, S], 'bool');
  // Padding: per batch a random number of visible keys in [S/2, S], as a [B, 1, S, S] mask.
  const paddingValues = new Uint8Array(B * S * S);
  for (let b = 0; b < B; b++) {
    const visible = Math.floor(S / 2 + rand() * (S / 2 + 1));
    for (let i = 0; i < S; i++) paddingValues.fill(1, (b * S + i) * S, (b * S + i) * S + Math.min(visible, S));
  }
  const paddingMask = tf.tensor4d(paddingValues, [B, 1, S, S], 'bool');
  const additive = (m: tf.Tensor) => tf.tidy(() => tf.where(m, tf.zeros(m.shape), tf.fill(m.shape, MASKED)));
  const causalBias = additive(causalMask), paddingBias = additive(paddingMask);
  const bias = tf.randomUniform([1, H, S, S], -1, 1);
  const slopes = Array.from({length: H}, (_, h) => 2 ** (-8 * (h + 1) / H));
  // 4 documents of S/4 tokens packed into one sequence.
  const docs = 4;
  const segmentIds = tf.tensor2d(Array.from({length: B * S}, (_, n) => Math.floor((n % S) / (S / docs))), [B, S],
                                 'int32');
  const rate = 0.1;

  const variants: Array<[string, 'ours' | 'naive', Fn4]> = [
    ['causal', 'ours', (a, b, c) => lib.flashAttention(a, b, c, {causal: true})],
    ['causal as mask', 'ours', (a, b, c) => lib.flashAttention(a, b, c, {mask: causalMask})],
    ['causal as mask', 'naive', (a, b, c) => naiveAttentionWithBias(a, b, c, scale, causalBias)],
    ['padding mask', 'ours', (a, b, c) => lib.flashAttention(a, b, c, {mask: paddingMask})],
    ['padding mask', 'naive', (a, b, c) => naiveAttentionWithBias(a, b, c, scale, paddingBias)],
    ['dense', 'ours', (a, b, c) => lib.flashAttention(a, b, c)],
    ['bias', 'ours', (a, b, c) => lib.flashAttention(a, b, c, {bias})],
    ['alibi', 'ours', (a, b, c) => lib.flashAttention(a, b, c, {alibiSlopes: slopes})],
    ['packed 4 docs', 'ours', (a, b, c) => lib.flashAttention(a, b, c, {segmentIds})],
    ['dropout 0.1', 'ours', (a, b, c) => lib.flashAttention(a, b, c, {dropout: {rate, seed: 7}})],
    // tf.dropout(probs, rate) is probs · floor(uniform + keep) / keep: that keep mask, drawn per call, as rowScale.
    ['dropout 0.1', 'naive', (a, b, c) => naiveAttentionWithBias(a, b, c, scale, null, 0, tf.div(
        tf.floor(tf.add(tf.randomUniform([B, H, S, S]), 1 - rate)), 1 - rate))],
  ];

  const rows: OptionRow[] = [];
  for (const pass of ['fwd', 'fwd+bwd'] as Pass[]) {
    const passRows = variants.map(([name, impl, f]) => {
      const fn = pass === 'fwd' ? () => [f(q, k, v)] :
          () => tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
              f(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D))([q, k, v], dy);
      return {row: {name, impl, pass, ms: null} as OptionRow, fn, samples: [] as number[]};
    });
    // Naive rows once (the naive dropout takes seconds per call); ours in o.rounds rounds.
    for (let round = 0; round < o.rounds; round++) {
      for (const r of passRows) {
        if (r.row.error != null || (round > 0 && r.row.impl === 'naive')) continue;
        try {
          r.samples.push(await timeCall(r.fn, o.quick));
        } catch (e) {
          r.row.error = (e as Error).message.split('\n')[0].slice(0, 200);
        }
      }
    }
    for (const {row, samples} of passRows) {
      if (row.error == null && samples.length > 0) row.ms = median(samples);
      rows.push(row);
      log(`${pass.padEnd(7)} ${row.name.padEnd(15)} ${row.impl.padEnd(5)} ${
          row.ms != null ? `${row.ms.toFixed(3).padStart(10)} ms${samples.length > 1 ? `  (rounds: ${
              samples.map((x) => x.toFixed(3)).join(', ')})` : ''}` : `not run: ${row.error}`}`);
    }
  }

  const ms = (name: string, impl: 'ours' | 'naive', pass: Pass) =>
      rows.find((r) => r.name === name && r.impl === impl && r.pass === pass)?.ms ?? null;
  const ratios: OptionRatio[] = [];
  const ratio = (what: string, pass: Pass, num: number | null, den: number | null, target: string,
                 ok: (x: number) => boolean) => {
    const x = num != null && den != null ? num / den : null;
    ratios.push({what, pass, ratio: x, target, met: x == null ? null : ok(x)});
  };
  for (const pass of ['fwd', 'fwd+bwd'] as Pass[]) {
    ratio('mask / causal', pass, ms('causal as mask', 'ours', pass), ms('causal', 'ours', pass), '≤ 1.3', (x) => x <= 1.3);
    ratio('naive mask / ours mask', pass, ms('causal as mask', 'naive', pass), ms('causal as mask', 'ours', pass), '≥ 3',
          (x) => x >= 3);
    ratio('naive padding / ours padding', pass, ms('padding mask', 'naive', pass), ms('padding mask', 'ours', pass),
          '> 1', (x) => x > 1);
    ratio('bias / dense', pass, ms('bias', 'ours', pass), ms('dense', 'ours', pass), '≤ 1.5', (x) => x <= 1.5);
    ratio('alibi / dense', pass, ms('alibi', 'ours', pass), ms('dense', 'ours', pass), '≤ 1.1', (x) => x <= 1.1);
    ratio('packed / dense', pass, ms('packed 4 docs', 'ours', pass), ms('dense', 'ours', pass), '≤ 0.35',
          (x) => x <= 0.35);
    ratio('dropout / none', pass, ms('dropout 0.1', 'ours', pass), ms('dense', 'ours', pass), '≤ 1.25', (x) => x <= 1.25);
    ratio('naive dropout / ours dropout', pass, ms('dropout 0.1', 'naive', pass), ms('dropout 0.1', 'ours', pass), '> 1',
          (x) => x > 1);
  }
  for (const r of ratios) {
    log(`${r.pass.padEnd(7)} ${r.what.padEnd(30)} ${r.ratio == null ? '—'.padStart(7) : r.ratio.toFixed(2).padStart(7)}  target ${
        r.target}${r.met == null ? '' : r.met ? '  met' : '  NOT met'}`);
  }
  tf.dispose([q, k, v, dy, causalMask, paddingMask, causalBias, paddingBias, bias, segmentIds]);

  const header = {date: new Date().toISOString(), backend: tf.getBackend(), adapter, batch: B, heads: H, headDim: D,
                  seq: S, host: `${os.type()} ${os.release()}, node ${process.version}`};
  mkdirSync(outDir, {recursive: true});
  const day = header.date.slice(0, 10);
  writeFileSync(`${outDir}/webgpu-options-${day}.json`, JSON.stringify({header, rows, ratios}, null, 1));
  const md = [`# Attention options, ${adapter} (${header.date})`, '',
    `B${B} H${H} D${D} S${S} fp32, backend ${header.backend}; ${header.host}.`, '',
    '| pass | variant | impl | ms | note |', '|---|---|---|---:|---|',
    ...rows.map((r) => `| ${r.pass} | ${r.name} | ${r.impl} | ${r.ms?.toFixed(3) ?? '—'} | ${r.error ?? ''} |`), '',
    '| pass | ratio | value | target | met |', '|---|---|---:|---|---|',
    ...ratios.map((r) => `| ${r.pass} | ${r.what} | ${r.ratio?.toFixed(2) ?? '—'} | ${r.target} | ${
        r.met == null ? '—' : r.met ? 'yes' : 'no'} |`)].join('\n');
  writeFileSync(`${outDir}/webgpu-options-${day}.md`, md + '\n');
  log(`wrote ${outDir}/webgpu-options-${day}.{json,md}`);
  return ratios;
}
