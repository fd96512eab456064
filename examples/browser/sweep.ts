/**
 * The timing sweep: for each sequence length, one op of the library ("ours") against tfjs's naive composition
 * (matMul → additive mask → softmax → matMul, src/layers/naive_attention.ts: the baseline every benchmark races) on the
 * current tfjs backend. Each point: one warm-up run (compiles shaders; its output is kept for the correctness check),
 * then the median of a few timed runs. A run ends when its output has been read back (await data()), so GPU work is
 * counted. The naive path materializes [batch, heads, seq, seq] scores: when that would not fit the memory budget
 * it is skipped, and when it throws (texture limits, out of memory) the point says "failed" with the error.
 */
import * as tf from '@tensorflow/tfjs';
// In an app: import {flashAttention, ...} from 'tfjs-efficient-attention';
import * as lib from '../../src/index.js';
import {additiveMask, naiveAttentionWithBias as naiveAttention} from '../../src/layers/naive_attention.js';

export type OpName = 'flash' | 'flash-causal' | 'sliding' | 'sparse';

export const OPS: Record<OpName, string> = {
  'flash': 'FlashAttention (dense)',
  'flash-causal': 'FlashAttention (causal)',
  'sliding': 'SlidingWindowAttention (causal, window 256)',
  'sparse': 'SparseAttention (BigBird, blocks of 64)',
};
const WINDOW = 256;
const SPARSE_BLOCK = 64;

export interface SweepConfig {
  op: OpName;
  seqs: number[];
  heads: number;
  headDim: number;
  /** Timed runs after the warm-up (fewer when one run takes longer than `slowRunMs`). */
  reps: number;
  /** Skip naive when its [heads, seq, seq] intermediates (see naiveBytes) would exceed this. */
  naiveMaxBytes: number;
}

export interface Timing {
  /** Median of the timed runs in ms, or null when the implementation failed or was skipped. */
  ms: number | null;
  runsMs: number[];
  /**
   * Peak tensor memory of one call above what was allocated before it (tf.profile's peakBytes, as the node training
   * example measures it): the [heads, seq, seq] intermediates for naive, the output and lse for ours.
   */
  peakBytes?: number;
  /** Why there is no time: the error message, or the reason it was skipped. */
  error?: string;
  skipped?: boolean;
}

export interface SweepRow {
  seq: number;
  ours: Timing;
  naive: Timing;
  /** max |ours − naive| over the output (null when naive has no output). */
  maxAbsDiff: number | null;
}

/**
 * Runs slower than this get no second warm-up and a single timed run (a cpu-backend sweep to 8192 would otherwise take
 * very long). Faster ones get a second warm-up: the first run at a new shape also allocates and uploads.
 */
const SLOW_RUN_MS = 2000;

/** Outputs further apart than this mark the row: one of the two is wrong. */
export const MAX_ABS_DIFF = 1e-3;

/**
 * Bytes the naive path holds at once at batch 1: scores, scaled scores, masked scores, and softmax's exp and
 * probabilities, each [heads, seq, seq] fp32 (a tidy frees them only at the end).
 */
export function naiveBytes(heads: number, seq: number): number {
  return 5 * 4 * heads * seq * seq;
}

type Attention = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D) => tf.Tensor4D;

/** Ours and naive for one op at one sequence length; dispose() frees the naive mask. */
function implementations(op: OpName, seq: number, heads: number, headDim: number):
    {ours: Attention; naive: () => Attention; dispose: () => void} {
  const scale = 1 / Math.sqrt(headDim);
  const layout = op === 'sparse' ?
      lib.patterns.bigBird(seq, seq, SPARSE_BLOCK, {windowBlocks: 3, globalBlocks: 1, randomBlocks: 2, seed: 1}) : null;
  const ours: Attention = (q, k, v) => {
    switch (op) {
      case 'flash': return lib.flashAttention(q, k, v);
      case 'flash-causal': return lib.flashAttention(q, k, v, {causal: true});
      case 'sliding': return lib.slidingWindowAttention(q, k, v, {windowSize: WINDOW});
      case 'sparse': return lib.sparseAttention(q, k, v, {layout: layout!});
    }
  };
  // The naive mask is the op's visibility (from the same AttentionPlan semantics), built once per length and
  // outside the timed runs; dense attention needs none.
  let mask: tf.Tensor2D | null = null;
  const naive = (): Attention => {
    if (op !== 'flash' && mask == null) {
      const [windowLeft, windowRight] = op === 'sliding' ? [WINDOW, 0] : op === 'flash-causal' ? [-1, 0] : [-1, -1];
      mask = additiveMask(lib.makePlan({
        kind: op === 'sparse' ? 'sparse' : op === 'sliding' ? 'sliding' : 'flash', batch: 1, seqQ: seq, seqK: seq,
        heads, kvHeads: heads, headDim, scale, softcap: 0, windowLeft, windowRight, layout, hasKeyLengths: false,
      }));
    }
    return (q, k, v) => naiveAttention(q, k, v, scale, mask);
  };
  return {ours, naive, dispose: () => mask?.dispose()};
}

/**
 * A profiled warm-up (its output is returned, its peak memory measured), then the median of the timed runs.
 * Throws what the implementation throws.
 */
async function time(run: () => tf.Tensor, reps: number): Promise<{timing: Timing; output: Float32Array}> {
  const t0 = performance.now();
  const bytesBefore = tf.memory().numBytes;
  const profile = await tf.profile(run);
  const first = profile.result as tf.Tensor;
  const output = await first.data() as Float32Array;
  first.dispose();
  const peakBytes = Math.max(0, profile.peakBytes - bytesBefore);
  const slow = performance.now() - t0 > SLOW_RUN_MS;
  if (!slow) {
    const second = run();
    await second.data();
    second.dispose();
  }
  const runsMs: number[] = [];
  const n = slow ? 1 : reps;
  for (let i = 0; i < n; i++) {
    const start = performance.now();
    const out = run();
    await out.data();
    runsMs.push(performance.now() - start);
    out.dispose();
  }
  return {timing: {ms: median(runsMs), runsMs, peakBytes}, output};
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= max)) max = d;  // NaN propagates
  }
  return max;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** One sequence length: ours, then naive, then the comparison. Never throws: failures are in the row. */
export async function measure(config: SweepConfig, seq: number): Promise<SweepRow> {
  const {op, heads, headDim, reps} = config;
  const shape: [number, number, number, number] = [1, seq, heads, headDim];
  const q = tf.randomNormal(shape) as tf.Tensor4D;
  const k = tf.randomNormal(shape) as tf.Tensor4D;
  const v = tf.randomNormal(shape) as tf.Tensor4D;
  const impl = implementations(op, seq, heads, headDim);
  const row: SweepRow = {seq, ours: {ms: null, runsMs: []}, naive: {ms: null, runsMs: []}, maxAbsDiff: null};
  try {
    let oursOut: Float32Array | null = null;
    try {
      const r = await time(() => impl.ours(q, k, v), reps);
      row.ours = r.timing;
      oursOut = r.output;
    } catch (e) {
      row.ours = {ms: null, runsMs: [], error: message(e)};
    }
    const bytes = naiveBytes(heads, seq);
    if (bytes > config.naiveMaxBytes) {
      row.naive = {ms: null, runsMs: [], skipped: true,
                   error: `skipped: would hold ~${(bytes / 2 ** 30).toFixed(1)} GiB of [heads, seq, seq] ` +
                       `intermediates (more than ?naiveMaxGiB=${+(config.naiveMaxBytes / 2 ** 30).toFixed(2)})`};
    } else {
      try {
        const naive = impl.naive();
        const r = await time(() => naive(q, k, v), reps);
        row.naive = r.timing;
        if (oursOut != null) row.maxAbsDiff = maxAbsDiff(oursOut, r.output);
      } catch (e) {
        row.naive = {ms: null, runsMs: [], error: message(e)};
      }
    }
  } finally {
    impl.dispose();
    tf.dispose([q, k, v]);
  }
  return row;
}

/** 128, 256, … up to maxSeq (doubling from minSeq). */
export function sequenceLengths(minSeq: number, maxSeq: number): number[] {
  const seqs: number[] = [];
  for (let s = minSeq; s <= maxSeq; s *= 2) seqs.push(s);
  return seqs;
}
