/**
 * What the notebooks use from this repository besides the published API, loaded from where it lives (no copies):
 *
 * - `naiveAttention`: the library's plain-tfjs attention (matMul → masked softmax → matMul, the layers'
 *   `attention: 'naive'`), from the build in dist/. It takes the same mask description the ops use internally
 *   ({windowLeft, windowRight, layout}, see src/plan/plan.ts), so it is the reference the ops are checked against.
 * - `lineChart` and its tick formatters: the benchmark suite's dependency-free SVG chart writer
 *   (bench/suite/svg_chart.ts), loaded through tsx.
 * - `makeBatches`, `vocabularySize`: the key–value recall task of examples/node-training/task.ts, loaded through tsx.
 * - `measure`: time and peak tensor memory of a function, the way the notebook plots them.
 *
 * tslab type-checks only the files under the notebook's folder, so these modules are `require`d at run time and
 * typed here by the part of their interfaces the notebooks use (see those files for the rest). This file imports
 * nothing by the package's name, so the repository's own `tsc -p .` checks it too, before dist/ exists.
 */
import * as path from 'path';
import * as tf from '@tensorflow/tfjs-core';

/** The repository root (tslab runs cells with the notebook's folder, examples/notebooks, as working directory). */
export const REPO_ROOT = path.resolve(__dirname, '..', '..');

/**
 * q [batch, seqQ, heads, d], k/v [batch, seqK, kvHeads, d] → [batch, seqQ, heads, d], materialising the
 * [batch, heads, seqQ, seqK] probabilities. mask: windowLeft/windowRight (-1 = unbounded; causal is
 * {windowLeft: -1, windowRight: 0}) and an optional BlockLayout from `patterns`.
 */
export type NaiveAttention = (
    q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D,
    mask: {windowLeft: number; windowRight: number; layout: object | null}, scale: number) => tf.Tensor4D;

export const naiveAttention =
    (require(path.join(REPO_ROOT, 'dist/cjs/src/layers/naive_attention.js')) as {naiveAttention: NaiveAttention})
        .naiveAttention;

export interface Series {
  name: string;
  color: string;
  /** SVG stroke-dasharray, e.g. '6 4'. */
  dash?: string;
  points: Array<[number, number]>;
}

export interface ChartSpec {
  title: string;
  subtitle?: string;
  xLabel: string;
  yLabel: string;
  xScale: 'log' | 'linear';
  yScale: 'log' | 'linear';
  series: Series[];
  formatX?: (x: number) => string;
  formatY?: (y: number) => string;
  xTicks?: number[];
  yBinary?: boolean;
  width?: number;
  height?: number;
}

interface SvgChartModule {
  lineChart(spec: ChartSpec): string;
  formatSeq(x: number): string;
  formatMsTick(ms: number): string;
  formatBytesTick(bytes: number): string;
  compactNumber(x: number): string;
  PALETTE: string[];
}

const tsx = require(require.resolve('tsx/cjs/api', {paths: [REPO_ROOT]})) as
    {require(id: string, fromFile: string): unknown};
const svgChart = tsx.require(path.join(REPO_ROOT, 'bench/suite/svg_chart.ts'), __filename) as SvgChartModule;
export const {lineChart, formatSeq, formatMsTick, formatBytesTick, compactNumber, PALETTE} = svgChart;

/** The key–value recall task (examples/node-training/task.ts). */
export interface RecallTask {
  seq: number;
  /** Facts live in positions [0, promptLength); every later position is a query. */
  promptLength: number;
  numFacts: number;
  numKeys: number;
  numValues: number;
  numFiller: number;
}

export interface Batch {
  /** [batch * seq] token ids, row-major: filler [0, F), fact (k, v) F + k·V + v, query(k) F + K·V + k. */
  tokens: Int32Array;
  /** [batch * (seq - promptLength)] the value asked for at each query position, in [0, numValues). */
  targets: Int32Array;
}

interface RecallTaskModule {
  /** A reproducible stream of batches for a seed. */
  makeBatches(task: RecallTask, seed: number): (batchSize: number) => Batch;
  vocabularySize(task: RecallTask): number;
}

const recallTask = tsx.require(path.join(REPO_ROOT, 'examples/node-training/task.ts'), __filename) as RecallTaskModule;
export const {makeBatches, vocabularySize} = recallTask;

export interface Measurement {
  /** Median wall time of one call (including reading the result back), ms. */
  ms: number;
  /** Peak bytes of tensors alive during one call, above what was alive before it (tf.profile). */
  peakBytes: number;
}

/**
 * Profiles one call of `f` for its peak tensor memory (it doubles as the warm-up), then times `repeats` calls. Every
 * call's result is read back (dataSync) so the timing includes the whole computation; tensors are disposed.
 */
export async function measure(f: () => tf.Tensor | tf.Tensor[], repeats = 3): Promise<Measurement> {
  const run = () => tf.tidy(() => {
    const out = f();
    for (const t of Array.isArray(out) ? out : [out]) t.dataSync();
  });
  const before = tf.memory().numBytes;
  const profile = await tf.profile(run);
  const times: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const start = performance.now();
    run();
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  return {ms: times[Math.floor(times.length / 2)], peakBytes: profile.peakBytes - before};
}
