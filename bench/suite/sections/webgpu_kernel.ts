/**
 * Section `webgpu-kernel` of bench/suite.ts: our fused WebGPU kernels against tfjs's naive matMul → (mask) → softmax
 * → matMul (src/layers/naive_attention.ts), in one process on one device (node + Dawn; on the lent H200 through
 * Vulkan). fp32, batch 1, heads 16, headDim 64 (and 128).
 *
 *   npx tsx bench/suite.ts --section webgpu-kernel [--quick] [--sections tune,kernel,dense,dense128,bwd,sliding,sparse]
 *       [--configs64 JSON] [--configs128 JSON] [--out DIR]
 *   node node_modules/tsx/dist/cli.mjs bench/suite.ts --section webgpu-kernel --out $OUT     # where there is no npx
 *
 * Timing: each measurement enqueues `iters` calls back to back (outputs disposed as they come, as a training loop
 * would) and syncs once at the end (submit + onSubmittedWorkDone); the per-call time is the median over `repeats`
 * such batches. TFLOP/s counts 4·d FLOPs per visited (query, key) pair ("visited": only the pairs the mask lets
 * through, tile granularity aside) and per (query, key) pair of the dense problem ("dense-equivalent").
 * Correctness is checked on the device too: against the naive result where it exists, and on sampled rows against a
 * float64 reference where it doesn't (16k and 128k causal).
 */
// tfjs's op gradients (tf.grads of the naive composition), as @tensorflow/tfjs users have them: the union package
// registers them on the global engine (tfjs-core's register_all_gradients imports directories, which node's ESM
// loader rejects, so it cannot be imported here under tsx).
import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import {mkdirSync, writeFileSync} from 'node:fs';
import os from 'node:os';
import * as lib from '../../../src/index.js';
import '../../../kernels/webgpu/register_all_webgpu_kernels.js';
import {ForwardTileConfig, setForwardConfigOverride} from '../../../kernels/webgpu/forward_tiles.js';
import {additiveMask, naiveAttentionWithBias} from '../../../src/layers/naive_attention.js';
import {createLayout} from '../../../src/patterns/block_layout.js';
import {mulberry32} from '../../../src/patterns/builders.js';
import {makePlan} from '../../../src/plan/plan.js';
import {setupWebGPU} from '../../../test/webgpu_env.js';
import {runFolder} from '../machine.js';
import {timeOnQueue} from '../webgpu_timing.js';


let argv: string[] = [];
const flag = (name: string) => argv.includes(`--${name}`);
const arg = (name: string) => {
  const i = argv.indexOf(`--${name}`);
  return i < 0 ? undefined : argv[i + 1];
};
const HEADS = 16, BATCH = 1;

interface Row {
  group: string;
  impl: 'ours' | 'naive';
  d: number;
  seq: number;
  mask: string;
  pass: 'fwd' | 'fwd+bwd';
  ms: number;
  visitedTflops: number;
  denseTflops: number;
  ratioToNaive?: number;
  maxRelErr?: number;
  note?: string;
}
const rows: Row[] = [];
const log = (s: string) => console.log(s);

/** Median ms per call of fn (which returns tensors to dispose). */
const time = (fn: () => tf.Tensor[], targetMs?: number) => timeOnQueue(fn, {targetMs});

function visitedPairs(seq: number, windowLeft: number, windowRight: number): number {
  let n = 0;
  for (let i = 0; i < seq; i++) {
    const lo = windowLeft < 0 ? 0 : Math.max(0, i - windowLeft);
    const hi = windowRight < 0 ? seq - 1 : Math.min(seq - 1, i + windowRight);
    n += Math.max(0, hi - lo + 1);
  }
  return n;
}

const tflops = (pairs: number, d: number, ms: number, passFactor = 1) =>
    (4 * d * pairs * HEADS * BATCH * passFactor) / (ms * 1e-3) / 1e12;

function inputs(seq: number, d: number) {
  return [0, 1, 2].map(() => tf.randomUniform([BATCH, seq, HEADS, d], -1, 1)) as tf.Tensor4D[];
}

/** tfjs naive attention (materializes [B, H, S, S]): the one naive composition, src/layers/naive_attention.ts. */
function naive(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, mask: tf.Tensor | null): tf.Tensor4D {
  return naiveAttentionWithBias(q, k, v, 1 / Math.sqrt(q.shape[3]), mask);
}

/** [seq, seq] additive mask (0 visible, -1e30 masked) of the band [i - left, i + right] (-1: unbounded). */
function bandMask(seq: number, left: number, right: number): tf.Tensor {
  return additiveMask(makePlan({kind: 'flash', batch: 1, seqQ: seq, seqK: seq, heads: 1, kvHeads: 1, headDim: 1,
                                scale: 1, softcap: 0, windowLeft: left, windowRight: right, layout: null,
                                hasKeyLengths: false}));
}

async function maxRelErr(a: tf.Tensor, b: tf.Tensor): Promise<number> {
  const [diff, ref] = await Promise.all([tf.max(tf.abs(tf.sub(a, b))).data(), tf.max(tf.abs(b)).data()]);
  return diff[0] / Math.max(ref[0], 1e-3);
}

/** float64 reference for a few query rows of head h (causal when `causal`), compared with ours. */
async function sampledRowsErr(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, out: tf.Tensor4D, causal: boolean) {
  const [, seq, , d] = q.shape;
  const scale = 1 / Math.sqrt(d);
  let worst = 0;
  for (const h of [0, HEADS - 1]) {
    const kh = await tf.slice(k, [0, 0, h, 0], [1, seq, 1, d]).data();
    const vh = await tf.slice(v, [0, 0, h, 0], [1, seq, 1, d]).data();
    for (const i of [0, 1, 777, Math.floor(seq / 2) + 3, seq - 1]) {
      const qi = await tf.slice(q, [0, i, h, 0], [1, 1, 1, d]).data();
      const oi = await tf.slice(out, [0, i, h, 0], [1, 1, 1, d]).data();
      const n = causal ? i + 1 : seq;
      const s = new Float64Array(n);
      let m = -Infinity;
      for (let j = 0; j < n; j++) {
        let x = 0;
        for (let e = 0; e < d; e++) x += qi[e] * kh[j * d + e];
        s[j] = x * scale;
        m = Math.max(m, s[j]);
      }
      const o = new Float64Array(d);
      let l = 0;
      for (let j = 0; j < n; j++) {
        const p = Math.exp(s[j] - m);
        l += p;
        for (let e = 0; e < d; e++) o[e] += p * vh[j * d + e];
      }
      let err = 0, ref = 1e-3;
      for (let e = 0; e < d; e++) {
        err = Math.max(err, Math.abs(o[e] / l - oi[e]));
        ref = Math.max(ref, Math.abs(o[e] / l));
      }
      if (!Number.isFinite(err)) return Infinity;
      worst = Math.max(worst, err / ref);
    }
  }
  return worst;
}

function record(r: Row) {
  rows.push(r);
  log(`${r.group.padEnd(10)} ${r.impl.padEnd(5)} d${r.d} S=${String(r.seq).padStart(6)} ${r.mask.padEnd(14)} ${
      r.pass.padEnd(7)} ${r.ms.toFixed(3).padStart(9)} ms  ${r.visitedTflops.toFixed(2).padStart(6)} TF/s visited  ${
      r.denseTflops.toFixed(2).padStart(6)} dense-eq${r.ratioToNaive ? `  naive/ours ${r.ratioToNaive.toFixed(2)}` : ''}${
      r.maxRelErr != null ? `  err ${r.maxRelErr.toExponential(1)}` : ''}${r.note ? `  ${r.note}` : ''}`);
}

/** Dense and causal forward, ours vs naive where the naive [B,H,S,S] scores fit (≤ ~1 GiB). */
async function denseAndCausal(d: number, seqs: number[], group = 'flash') {
  for (const seq of seqs) {
    const [q, k, v] = inputs(seq, d);
    for (const causal of [false, true]) {
      if (!causal && seq > 65536) continue;
      const pairs = visitedPairs(seq, -1, causal ? 0 : -1);
      const ours = () => [lib.flashAttention(q, k, v, {causal})];
      let ms: number;
      try {
        ms = await time(ours, seq >= 32768 ? 1 : 250);
      } catch (e) {
        record({group, impl: 'ours', d, seq, mask: causal ? 'causal' : 'dense', pass: 'fwd', ms: NaN,
                visitedTflops: 0, denseTflops: 0, note: `FAILED ${(e as Error).message.slice(0, 120)}`});
        continue;
      }
      let err: number | undefined;
      let naiveMs: number | undefined;
      const scoresBytes = BATCH * HEADS * seq * seq * 4;
      if (scoresBytes <= 1 << 30) {
        const mask = causal ? bandMask(seq, -1, 0) : null;
        const naiveFn = () => [naive(q, k, v, mask)];
        try {
          naiveMs = await time(naiveFn);
          const a = ours()[0], b = naiveFn()[0];
          err = await maxRelErr(a, b);
          tf.dispose([a, b]);
          record({group, impl: 'naive', d, seq, mask: causal ? 'causal' : 'dense', pass: 'fwd', ms: naiveMs,
                  visitedTflops: tflops(pairs, d, naiveMs), denseTflops: tflops(seq * seq, d, naiveMs)});
        } catch (e) {
          log(`naive failed at ${seq}: ${(e as Error).message.slice(0, 100)}`);
        }
        mask?.dispose();
      } else if (causal && (seq === 16384 || seq === 131072)) {
        const out = ours()[0];
        err = await sampledRowsErr(q, k, v, out as tf.Tensor4D, true);
        out.dispose();
      }
      record({group, impl: 'ours', d, seq, mask: causal ? 'causal' : 'dense', pass: 'fwd', ms,
              visitedTflops: tflops(pairs, d, ms), denseTflops: tflops(seq * seq, d, ms),
              ratioToNaive: naiveMs ? naiveMs / ms : undefined, maxRelErr: err});
    }
    tf.dispose([q, k, v]);
  }
}

async function forwardBackward(d: number, seqs: number[]) {
  for (const seq of seqs) {
    const [q, k, v] = inputs(seq, d);
    // dy on the GPU, as a training loop's loss gradient is: without it tf.grads builds ones(output.shape) as a CPU
    // array and uploads it on every call (tens of ms at seq 4096), which would time tfjs, not attention.
    const dy = tf.randomUniform(q.shape, -1, 1);
    for (const causal of [false, true]) {
      const pairs = visitedPairs(seq, -1, causal ? 0 : -1);
      const ours = () => tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
          lib.flashAttention(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, {causal}))([q, k, v], dy);
      const ms = await time(ours);
      let naiveMs: number | undefined;
      if (BATCH * HEADS * seq * seq * 4 <= 1 << 30) {
        const mask = causal ? bandMask(seq, -1, 0) : null;
        naiveMs = await time(() => tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
            naive(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, mask))([q, k, v], dy));
        record({group: 'flash', impl: 'naive', d, seq, mask: causal ? 'causal' : 'dense', pass: 'fwd+bwd',
                ms: naiveMs, visitedTflops: tflops(pairs, d, naiveMs, 3.5), denseTflops: tflops(seq * seq, d, naiveMs, 3.5)});
        mask?.dispose();
      }
      const gradKernel = tf.getKernel('FlashAttentionGrad', 'webgpu');
      record({group: 'flash', impl: 'ours', d, seq, mask: causal ? 'causal' : 'dense', pass: 'fwd+bwd', ms,
              visitedTflops: tflops(pairs, d, ms, 3.5), denseTflops: tflops(seq * seq, d, ms, 3.5),
              ratioToNaive: naiveMs ? naiveMs / ms : undefined,
              note: `grad kernel: ${String((gradKernel?.kernelFunc as {name?: string})?.name ?? 'none')}`});
    }
    tf.dispose([q, k, v, dy]);
  }
}

async function slidingWindows(d: number, seqs: number[], windows: number[]) {
  for (const w of windows) {
    for (const seq of seqs) {
      const [q, k, v] = inputs(seq, d);
      const ms = await time(() => [lib.slidingWindowAttention(q, k, v, {windowSize: w})]);
      const pairs = visitedPairs(seq, w, 0);
      let naiveMs: number | undefined;
      if (BATCH * HEADS * seq * seq * 4 <= 1 << 30) {
        const mask = bandMask(seq, w, 0);
        naiveMs = await time(() => [naive(q, k, v, mask)]);
        mask.dispose();
      }
      record({group: 'sliding', impl: 'ours', d, seq, mask: `window ${w}`, pass: 'fwd', ms,
              visitedTflops: tflops(pairs, d, ms), denseTflops: tflops(seq * seq, d, ms),
              ratioToNaive: naiveMs ? naiveMs / ms : undefined});
      tf.dispose([q, k, v]);
    }
  }
}

/** Random block layouts (block 64, diagonal always on) at several densities vs dense at the same size. */
async function sparse(d: number, seq: number, densities: number[]) {
  const [q, k, v] = inputs(seq, d);
  const denseMs = await time(() => [lib.flashAttention(q, k, v)]);
  record({group: 'sparse', impl: 'ours', d, seq, mask: 'dense (ref)', pass: 'fwd', ms: denseMs,
          visitedTflops: tflops(seq * seq, d, denseMs), denseTflops: tflops(seq * seq, d, denseMs)});
  const bs = 64, nb = Math.ceil(seq / bs);
  for (const density of densities) {
    const rand = mulberry32(1234 + Math.round(density * 1000));
    const layout = createLayout(1, nb, nb, bs, (_h, qb, kb) => qb === kb || rand() < density);
    let on = 0;
    for (const x of layout.mask) on += x;
    const ms = await time(() => [lib.sparseAttention(q, k, v, {layout})]);
    const pairs = (on / (nb * nb)) * seq * seq;
    record({group: 'sparse', impl: 'ours', d, seq, mask: `density ${(on / (nb * nb) * 100).toFixed(1)}%`,
            pass: 'fwd', ms, visitedTflops: tflops(pairs, d, ms), denseTflops: tflops(seq * seq, d, ms),
            note: `${(ms / denseMs).toFixed(3)}× dense`});
  }
  tf.dispose([q, k, v]);
}

/**
 * GPU time of the kernels alone (tf.time's kernelMs: timestamp queries around each dispatch, when the device has
 * them) next to the queue-timed call: how much of a call's time is not our dispatch (tfjs bookkeeping, bubbles).
 */
async function kernelTimes(d: number, seq: number) {
  const [q, k, v] = inputs(seq, d);
  for (const causal of [false, true]) {
    const fn = () => lib.flashAttention(q, k, v, {causal});
    const wallMs = await time(() => [fn()]);
    const kernel: number[] = [];
    for (let i = 0; i < 15; i++) {
      const info = await tf.time(() => { tf.dispose(fn()); });
      const ms = typeof info.kernelMs === 'number' ? info.kernelMs : NaN;
      if (i >= 3) kernel.push(ms);  // the first few include pipeline warm-up
    }
    kernel.sort((a, b) => a - b);
    const kernelMs = kernel[kernel.length >> 1];
    const pairs = visitedPairs(seq, -1, causal ? 0 : -1);
    record({group: 'kernel', impl: 'ours', d, seq, mask: causal ? 'causal' : 'dense', pass: 'fwd', ms: kernelMs,
            visitedTflops: tflops(pairs, d, kernelMs), denseTflops: tflops(seq * seq, d, kernelMs),
            note: `GPU timestamps (tf.time kernelMs, median of 12); queue-timed call ${wallMs.toFixed(3)} ms`});
  }
  tf.dispose([q, k, v]);
}

/** Times each tile configuration at one size; returns the fastest on the dense problem. */
async function tune(d: number, seq: number, configs: ForwardTileConfig[]): Promise<ForwardTileConfig | null> {
  const [q, k, v] = inputs(seq, d);
  let best: ForwardTileConfig | null = null, bestMs = Infinity;
  for (const config of configs) {
    setForwardConfigOverride(config);
    for (const causal of [false, true]) {
      try {
        const ms = await time(() => [lib.flashAttention(q, k, v, {causal})]);
        const pairs = visitedPairs(seq, -1, causal ? 0 : -1);
        record({group: 'tune', impl: 'ours', d, seq, mask: causal ? 'causal' : 'dense', pass: 'fwd', ms,
                visitedTflops: tflops(pairs, d, ms), denseTflops: tflops(seq * seq, d, ms),
                note: JSON.stringify(config)});
        if (!causal && ms < bestMs) [best, bestMs] = [config, ms];
      } catch (e) {
        log(`tune ${JSON.stringify(config)} failed: ${(e as Error).message.slice(0, 200)}`);
      }
    }
  }
  setForwardConfigOverride(null);
  tf.dispose([q, k, v]);
  log(`best d${d}: ${JSON.stringify(best)}`);
  return best;
}

export async function main(args: string[]): Promise<void> {
  argv = args;
  const QUICK = flag('quick');
  const env = await setupWebGPU();
  if (env == null) throw new Error('no WebGPU');
  const OUT_DIR = arg('out') ?? process.env.OUT ?? runFolder('.', 'webgpu-kernel', env.adapterDescription);
  const limits = env.device.limits;
  const header = {
    date: new Date().toISOString(),
    adapter: env.adapterDescription,
    features: [...env.device.features].sort(),
    limits: {maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
             maxComputeWorkgroupStorageSize: limits.maxComputeWorkgroupStorageSize,
             maxComputeInvocationsPerWorkgroup: limits.maxComputeInvocationsPerWorkgroup,
             maxBufferSize: limits.maxBufferSize},
    host: `${os.cpus()[0]?.model} ×${os.cpus().length}, node ${process.version}`,
    tfjs: tf.version_core,
  };
  log(JSON.stringify(header));
  const sections = (arg('sections') ?? 'tune,dense,dense128,bwd,sliding,sparse').split(',');
  const seqs = QUICK ? [128, 256] : [512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072];
  // With --tune, the fastest configuration per head size serves the rest of the run (each row's note says which).
  const c = (blockQ: number, blockK: number, rowsPerThread: number, colsPerThread: number, prefetch = false) =>
      ({blockQ, blockK, rowsPerThread, colsPerThread, prefetch});
  let best64: ForwardTileConfig | null = null, best128: ForwardTileConfig | null = null;
  if (sections.includes('tune')) {
    best64 = await tune(64, QUICK ? 256 : 4096, JSON.parse(arg('configs64') ?? 'null') ?? [
      c(64, 32, 4, 4), c(64, 32, 4, 4, true), c(64, 32, 2, 4), c(64, 32, 2, 4, true), c(32, 32, 2, 4, true),
      c(64, 16, 4, 2, true), c(64, 16, 2, 2, true)]);
    best128 = await tune(128, QUICK ? 256 : 4096, JSON.parse(arg('configs128') ?? 'null') ?? [
      c(32, 16, 4, 2), c(32, 16, 4, 2, true), c(16, 32, 2, 4), c(16, 32, 2, 4, true), c(32, 16, 2, 2, true),
      c(16, 16, 2, 2, true)]);
  }
  setForwardConfigOverride(best64);
  if (sections.includes('kernel')) await kernelTimes(64, QUICK ? 256 : 4096);
  if (sections.includes('dense')) await denseAndCausal(64, seqs);
  setForwardConfigOverride(best128);
  if (sections.includes('dense128')) await denseAndCausal(128, QUICK ? [128] : [1024, 4096, 16384]);
  setForwardConfigOverride(best64);
  if (sections.includes('bwd')) await forwardBackward(64, QUICK ? [128] : [1024, 4096]);
  if (sections.includes('sliding')) {
    await slidingWindows(64, QUICK ? [256, 512] : [4096, 8192, 16384, 32768, 65536], QUICK ? [64] : [256, 1024]);
  }
  if (sections.includes('sparse')) await sparse(64, QUICK ? 512 : 16384, [0.05, 0.1, 0.25, 0.5]);

  mkdirSync(OUT_DIR, {recursive: true});
  const day = header.date.slice(0, 10);
  writeFileSync(`${OUT_DIR}/webgpu-kernel-${day}.json`, JSON.stringify({header, rows}, null, 1));
  const md = [`# WebGPU attention benchmark ${header.date}`, '', `adapter: ${header.adapter}`, '',
    `limits: ${JSON.stringify(header.limits)}; features: ${header.features.join(', ')}`, '', `host: ${header.host}`,
    '', '| group | impl | d | seq | mask | pass | ms | TFLOP/s visited | TFLOP/s dense-eq | naive/ours | err | note |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map((r) => `| ${r.group} | ${r.impl} | ${r.d} | ${r.seq} | ${r.mask} | ${r.pass} | ${r.ms.toFixed(3)} | ${
        r.visitedTflops.toFixed(2)} | ${r.denseTflops.toFixed(2)} | ${r.ratioToNaive?.toFixed(2) ?? ''} | ${
        r.maxRelErr?.toExponential(1) ?? ''} | ${r.note ?? ''} |`)].join('\n');
  writeFileSync(`${OUT_DIR}/webgpu-kernel-${day}.md`, md + '\n');
  log(`wrote ${OUT_DIR}/webgpu-kernel-${day}.{json,md}`);
}
