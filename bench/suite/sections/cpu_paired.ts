/**
 * Section `cpu-paired` of bench/suite.ts: the cpu kernels against tfjs's naive matMul → softmax → matMul on the cpu backend, side by side in one process:
 * forward and forward+backward (naive backward = tf.grads through the naive composition), dense and causal (naive
 * causal = additive -1e30 mask from the same plan semantics), batch 1, heads 4, headDim 64.
 *
 *   npx tsx bench/suite.ts --section cpu-paired [--seqs 256,1024,2048] [--iters N] [--out FILE.md]
 * (default output: bench/results/<date>-<machine>-cpu-paired/results.md)
 *
 * Implementations alternate within each iteration (ours, naive, ours, ...) so load from other processes hits both
 * alike; the table reports median wall-clock ms and the ratio naive / ours (> 1: ours is faster), plus the same ratio
 * of median process cpu time, which other processes on a shared machine disturb less.
 */
// The tfjs union package registers the gradients of tfjs's own ops (tfjs-core alone has none), needed by the naive
// backward; it also brings the cpu backend.
import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import {writeFileSync} from 'node:fs';
import os from 'node:os';
import {mkdirSync} from 'node:fs';
import path from 'node:path';
import * as lib from '../../../src/index.js';
import {additiveMask, naiveAttentionWithBias as naiveAttention} from '../../../src/layers/naive_attention.js';
import {makePlan} from '../../../src/plan/plan.js';
import {randomArray} from '../../../test/check_case.js';
import {runFolder} from '../machine.js';


const BATCH = 1, HEADS = 4, HEAD_DIM = 64;

let argv: string[] = [];
function arg(name: string): string | undefined {
  const i = argv.indexOf(`--${name}`);
  return i < 0 ? undefined : argv[i + 1];
}

let fixedIters: number | null = null;
const date = new Date().toISOString().slice(0, 10);
/** Fewer iterations at long sequences: the naive backward at 2048 takes tens of seconds. */
const itersFor = (seq: number) => fixedIters ?? (seq <= 256 ? 9 : seq <= 1024 ? 5 : 3);

type Fn = () => tf.Tensor[];

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
}

interface Timing {
  /** Wall-clock ms. */
  wall: number;
  /** Process cpu ms (user + system). */
  cpu: number;
}

async function timeOnce(fn: Fn): Promise<Timing> {
  const c0 = process.cpuUsage(), t0 = performance.now();
  const outs = fn();
  await Promise.all(outs.map((t) => t.data()));
  const wall = performance.now() - t0, c = process.cpuUsage(c0);
  tf.dispose(outs);
  return {wall, cpu: (c.user + c.system) / 1e3};
}

/** Median timings of each function, alternating them, after one warm-up run each. */
async function race(fns: Fn[], iters: number): Promise<Timing[]> {
  const times: Timing[][] = fns.map(() => []);
  for (const fn of fns) await timeOnce(fn);
  for (let it = 0; it < iters; it++) {
    for (let f = 0; f < fns.length; f++) times[f].push(await timeOnce(fns[f]));
  }
  return times.map((ts) => ({wall: median(ts.map((t) => t.wall)), cpu: median(ts.map((t) => t.cpu))}));
}

interface Row {
  seq: number;
  causal: boolean;
  mode: 'forward' | 'forward+backward';
  ours: Timing;
  naive: Timing;
}

export async function main(args: string[]): Promise<void> {
  argv = args;
  const seqs = (arg('seqs') ?? '256,1024,2048').split(',').map(Number);
  fixedIters = arg('iters') == null ? null : Number(arg('iters'));
  const outPath = arg('out') ?? path.join(runFolder('.', 'cpu-paired'), 'results.md');
  mkdirSync(path.dirname(outPath), {recursive: true});
  await tf.setBackend('cpu');
  const rows: Row[] = [];
  const loadBefore = os.loadavg()[0];
  for (const seq of seqs) {
    const shape = [BATCH, seq, HEADS, HEAD_DIM];
    const n = shape.reduce((a, b) => a * b, 1);
    const q = tf.tensor4d(randomArray(n, 1), shape as [number, number, number, number]);
    const k = tf.tensor4d(randomArray(n, 2), shape as [number, number, number, number]);
    const v = tf.tensor4d(randomArray(n, 3), shape as [number, number, number, number]);
    const dy = tf.tensor4d(randomArray(n, 4), shape as [number, number, number, number]);
    const scale = 1 / Math.sqrt(HEAD_DIM);
    for (const causal of [false, true]) {
      const plan = makePlan({
        kind: 'flash', batch: BATCH, seqQ: seq, seqK: seq, heads: HEADS, kvHeads: HEADS, headDim: HEAD_DIM, scale,
        softcap: 0, windowLeft: -1, windowRight: causal ? 0 : -1, layout: null, hasKeyLengths: false,
      });
      const mask = causal ? additiveMask(plan) : null;
      const ours = (qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor) => lib.flashAttention(qq, kk, vv, {causal});
      const naive = (qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor) =>
          naiveAttention(qq as tf.Tensor4D, kk as tf.Tensor4D, vv as tf.Tensor4D, scale, mask);
      const grads = (f: typeof ours): Fn => () => tf.grads(f)([q, k, v], dy);
      const iters = itersFor(seq);
      const [oursFwd, naiveFwd] = await race([() => [ours(q, k, v)], () => [naive(q, k, v)]], iters);
      rows.push({seq, causal, mode: 'forward', ours: oursFwd, naive: naiveFwd});
      report(rows[rows.length - 1]);
      const [oursBwd, naiveBwd] = await race([grads(ours), grads(naive)], iters);
      rows.push({seq, causal, mode: 'forward+backward', ours: oursBwd, naive: naiveBwd});
      report(rows[rows.length - 1]);
      mask?.dispose();
    }
    tf.dispose([q, k, v, dy]);
  }
  writeFileSync(outPath, markdown(rows, loadBefore, os.loadavg()[0]));
  console.log(`wrote ${outPath}`);
}

function report(r: Row): void {
  console.log(`seq ${r.seq} ${r.causal ? 'causal' : 'dense '} ${r.mode.padEnd(16)} ours ${r.ours.wall.toFixed(1)} ms, ` +
              `naive ${r.naive.wall.toFixed(1)} ms, ${(r.naive.wall / r.ours.wall).toFixed(2)}× (cpu time ` +
              `${r.ours.cpu.toFixed(1)} vs ${r.naive.cpu.toFixed(1)} ms, ${(r.naive.cpu / r.ours.cpu).toFixed(2)}×)`);
}

function markdown(rows: Row[], loadBefore: number, loadAfter: number): string {
  const cpus = os.cpus();
  const lines = [
    `# cpu kernels vs tfjs naive attention (${date})`,
    '',
    `Machine: ${cpus.length}-core ${cpus[0]?.model ?? 'unknown cpu'}, ${os.platform()} ${os.arch()}, ` +
        `node ${process.version}, tfjs-core ${tf.version_core}, backend cpu. The machine is shared: 1-minute load ` +
        `average ${loadBefore.toFixed(1)} at the start, ${loadAfter.toFixed(1)} at the end.`,
    `Shape: batch ${BATCH}, heads ${HEADS}, headDim ${HEAD_DIM}, seqQ = seqK = seq, float32. Median of ` +
        `${fixedIters ?? '9 / 5 / 3 (seq ≤ 256 / ≤ 1024 / longer)'} iterations after a warm-up, ours and naive ` +
        'alternating. Naive = src/layers/naive_attention.ts (matMul → softmax → matMul; causal adds a -1e30 [seq, seq] ' +
        'mask); backward = tf.grads of each with the same dy. Command: `npx tsx bench/suite.ts --section cpu-paired`.',
    '',
    '| seq | mask | pass | ours (ms) | naive (ms) | speedup (naive / ours) | ours cpu (ms) | naive cpu (ms) | ' +
        'speedup in cpu time |',
    '|---:|---|---|---:|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.seq} | ${r.causal ? 'causal' : 'dense'} | ${r.mode} | ${r.ours.wall.toFixed(1)} | ${
        r.naive.wall.toFixed(1)} | ${(r.naive.wall / r.ours.wall).toFixed(2)}× | ${r.ours.cpu.toFixed(1)} | ${
        r.naive.cpu.toFixed(1)} | ${(r.naive.cpu / r.ours.cpu).toFixed(2)}× |`),
    '',
  ];
  return lines.join('\n');
}

