/**
 * `npm run demo`: each op on the cpu backend against tfjs's naive composition (matMul → softmax → matMul):
 * speed and max error. Flags: --seq N (default 1024), --heads N (4), --dim N (64), --iters N (3).
 */
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import {additiveMask, naiveAttentionWithBias as naiveAttention} from '../src/layers/naive_attention.js';
import {flashAttention, makePlan, patterns, slidingWindowAttention, sparseAttention} from '../src/index.js';
import type {BlockLayout} from '../src/index.js';

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? Number(process.argv[i + 1]) : fallback;
}

async function median(fn: () => tf.Tensor, iters: number): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now();
    const out = fn();
    await out.data();
    times.push(performance.now() - t0);
    out.dispose();
  }
  return times.sort((a, b) => a - b)[Math.floor(times.length / 2)];
}

async function main() {
  await tf.setBackend('cpu');
  const seq = flag('seq', 1024), heads = flag('heads', 4), dim = flag('dim', 64), iters = flag('iters', 3);
  const q = tf.randomNormal([1, seq, heads, dim]) as tf.Tensor4D;
  const k = tf.randomNormal([1, seq, heads, dim]) as tf.Tensor4D;
  const v = tf.randomNormal([1, seq, heads, dim]) as tf.Tensor4D;
  const scale = 1 / Math.sqrt(dim);
  const layout: BlockLayout = patterns.bigBird(seq, seq, 64, {windowBlocks: 3, globalBlocks: 1, randomBlocks: 1});
  const ops: Array<{name: string; ours: () => tf.Tensor; window: [number, number]; layout: BlockLayout | null}> = [
    {name: 'flashAttention', ours: () => flashAttention(q, k, v), window: [-1, -1], layout: null},
    {name: 'flashAttention causal', ours: () => flashAttention(q, k, v, {causal: true}), window: [-1, 0], layout: null},
    {name: 'slidingWindowAttention 128', ours: () => slidingWindowAttention(q, k, v, {windowSize: 128}),
     window: [128, 0], layout: null},
    {name: 'sparseAttention bigBird', ours: () => sparseAttention(q, k, v, {layout}), window: [-1, -1], layout},
  ];
  console.log(`cpu backend, batch 1, seq ${seq}, heads ${heads}, headDim ${dim}, median of ${iters}`);
  console.log('op                          naive ms   ours ms   speed-up   max |error|');
  for (const op of ops) {
    const plan = makePlan({kind: 'flash', batch: 1, seqQ: seq, seqK: seq, heads, kvHeads: heads, headDim: dim, scale,
                           softcap: 0, windowLeft: op.window[0], windowRight: op.window[1], layout: op.layout,
                           hasKeyLengths: false});
    const mask = op.window[0] === -1 && op.window[1] === -1 && op.layout == null ? null : additiveMask(plan);
    const naive = () => naiveAttention(q, k, v, scale, mask);
    const naiveMs = await median(naive, iters);
    const oursMs = await median(op.ours, iters);
    const err = tf.tidy(() => tf.max(tf.abs(tf.sub(naive(), op.ours()))));
    const maxErr = (await err.data())[0];
    err.dispose();
    mask?.dispose();
    console.log(`${op.name.padEnd(26)} ${naiveMs.toFixed(1).padStart(9)} ${oursMs.toFixed(1).padStart(9)} ${
        (naiveMs / oursMs).toFixed(2).padStart(9)}x   ${maxErr.toExponential(2)}`);
  }
  tf.dispose([q, k, v]);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
