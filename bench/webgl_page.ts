/**
 * Page side of the webgl benchmark (bundled by bench/webgl.ts into the global `webglBench`): times our webgl kernels
 * and tfjs's naive composition (matMul → additive mask → softmax → matMul, bench/naive_attention.ts) on the same
 * WebGL2 context, forward and forward+backward. Uses the page's globals `tf` and `tfEfficientAttention`.
 */
import type * as tfType from '@tensorflow/tfjs-core';
import type * as libType from '../src/index.js';
import {makePlan} from '../src/plan/plan.js';
import {additiveMask, naiveAttention} from './naive_attention.js';

declare const tf: typeof tfType;
declare const tfEfficientAttention: typeof libType;

export type MaskKind = 'dense' | 'causal' | 'window' | 'sparse';
export type Mode = 'forward' | 'forward+backward';

export interface BenchJob {
  impl: 'ours' | 'naive';
  mask: MaskKind;
  mode: Mode;
  batch: number;
  seq: number;
  heads: number;
  headDim: number;
  /** Timed runs after one warm-up run (which compiles shaders). */
  reps: number;
  /** Skip the warm-up run (the runner's paired mode warms up once, then alternates single runs). */
  noWarmup?: boolean;
}

export interface BenchResult {
  /** Median and every timed run, in ms; null when the run failed. */
  medianMs: number | null;
  runsMs: number[];
  error?: string;
}

export const WINDOW = 256;
export const SPARSE_BLOCK = 64;

async function setup(): Promise<string> {
  await tf.setBackend('webgl');
  await tf.ready();
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const gl = (tf.backend() as any).gpgpu.gl as WebGL2RenderingContext;
  const info = gl.getExtension('WEBGL_debug_renderer_info');
  return String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
}

function layoutFor(seq: number) {
  return tfEfficientAttention.patterns.bigBird(seq, seq, SPARSE_BLOCK, {windowBlocks: 3, globalBlocks: 1, randomBlocks: 2});
}

export async function runJob(job: BenchJob): Promise<BenchResult> {
  const lib = tfEfficientAttention;
  const {batch, seq, heads, headDim} = job;
  const scale = 1 / Math.sqrt(headDim);
  const layout = job.mask === 'sparse' ? layoutFor(seq) : null;
  const q = tf.randomNormal([batch, seq, heads, headDim]) as tfType.Tensor4D;
  const k = tf.randomNormal([batch, seq, heads, headDim]) as tfType.Tensor4D;
  const v = tf.randomNormal([batch, seq, heads, headDim]) as tfType.Tensor4D;
  const dOut = tf.randomNormal([batch, seq, heads, headDim]);
  let mask: tfType.Tensor2D | null = null;
  const runsMs: number[] = [];
  try {
    if (job.impl === 'naive' && job.mask !== 'dense') {
      const window = job.mask === 'causal' ? [-1, 0] : job.mask === 'window' ? [WINDOW, 0] : [-1, -1];
      mask = additiveMask(makePlan({kind: job.mask === 'sparse' ? 'sparse' : 'sliding', batch, seqQ: seq, seqK: seq,
                                    heads, kvHeads: heads, headDim, scale, softcap: 0, windowLeft: window[0],
                                    windowRight: window[1], layout, hasKeyLengths: false}));
    }
    const attention = (qq: tfType.Tensor4D, kk: tfType.Tensor4D, vv: tfType.Tensor4D): tfType.Tensor4D => {
      if (job.impl === 'naive') return naiveAttention(qq, kk, vv, scale, mask);
      switch (job.mask) {
        case 'dense': return lib.flashAttention(qq, kk, vv) as tfType.Tensor4D;
        case 'causal': return lib.flashAttention(qq, kk, vv, {causal: true}) as tfType.Tensor4D;
        case 'window': return lib.slidingWindowAttention(qq, kk, vv, {windowSize: WINDOW}) as tfType.Tensor4D;
        case 'sparse': return lib.sparseAttention(qq, kk, vv, {layout: layout!}) as tfType.Tensor4D;
      }
    };
    const once = async () => {
      const t0 = performance.now();
      if (job.mode === 'forward') {
        const out = attention(q, k, v);
        await out.data();
        out.dispose();
      } else {
        const grads = tf.grads((a: tfType.Tensor, b: tfType.Tensor, c: tfType.Tensor) =>
            tf.sum(tf.mul(attention(a as tfType.Tensor4D, b as tfType.Tensor4D, c as tfType.Tensor4D), dOut)))([q, k, v]);
        await Promise.all(grads.map((g) => g.data()));
        grads.forEach((g) => g.dispose());
      }
      return performance.now() - t0;
    };
    if (!job.noWarmup) await once();  // warm-up: shader compilation, schedule upload
    for (let i = 0; i < job.reps; i++) runsMs.push(await once());
    const sorted = [...runsMs].sort((a, b) => a - b);
    return {medianMs: sorted[Math.floor(sorted.length / 2)], runsMs};
  } catch (e) {
    return {medianMs: null, runsMs, error: String((e as Error).message ?? e).slice(0, 300)};
  } finally {
    [q, k, v, dOut].forEach((t) => t.dispose());
    mask?.dispose();
  }
}

export {setup};
