/**
 * `npm start`: train tiny transformers in node on a long-range key–value recall task (see task.ts) with different
 * attention layers, and compare what they learn, how fast they train and how much memory a training step takes.
 *
 *   flash    full causal attention on the FlashAttention kernels
 *   sliding  causal sliding window (default 8 tokens: shorter than the distance from a far query to the facts)
 *   sparse   block-sparse local + global (longformer layout: a local band of blocks plus block 0, where the facts are)
 *   strided  block-sparse strided (Sparse Transformer), not in the defaults
 *   naive    the flash model's attention written with plain tfjs ops (matMul → softmax → matMul); it computes the
 *            same function as flash, so by default it only runs --naive-steps steps, for speed and memory, and its
 *            losses are compared with flash's over those steps
 *
 * Every variant starts from the same initial weights and sees the same batches.
 *
 * The default run (under a minute of CPU time on two cores) is a small task at seq 64 that full and local+global
 * attention learn in 100 steps; --full is the longer run (seq 256, 8 facts among 16 keys; ~2 minutes per variant).
 *
 * Flags (default / with --full): --full, --backend cpu|wasm|webgpu (cpu), --seq N (64 / 256), --steps N (100 / 200),
 *        --batch N (8), --variants flash,sliding,sparse,naive (also: strided), --naive-steps N (8),
 *        --window N (8 / 32), --block N (8 / 32), --dim N (32), --heads N (2), --layers N (1), --lr X (0.02 / 0.003),
 *        --eval N (32 / 64 held-out sequences), --seed N (1); the task: --prompt N (facts in the first 8 / 32 tokens),
 *        --facts N (4 / 8), --keys N (4 / 16 distinct keys), --values N (8 / 16 values: chance is 1 / values)
 */
import * as tf from '@tensorflow/tfjs';
import {setNodeBackend} from '../shared/node_backend.js';
import {layers} from '../../src/index.js';
import type {AttentionSpec} from '../../src/index.js';
import {buildModel, logitsFrom} from './model.js';
import {formatRate, ProgressBar, table} from './progress.js';
import {makeBatches, RecallTask, vocabularySize} from './task.js';

interface Options {
  full: boolean;
  backend: string;
  seq: number;
  steps: number;
  naiveSteps: number;
  batch: number;
  variants: string[];
  window: number;
  block: number;
  dim: number;
  heads: number;
  layers: number;
  lr: number;
  eval: number;
  seed: number;
  /** The task: facts in the first `prompt` tokens, `facts` of them, keys and values drawn from `keys` / `values`. */
  prompt: number;
  facts: number;
  keys: number;
  values: number;
}

/**
 * The default run: short sequences and a small task (every key is in every prompt, so the model only has to find the
 * fact with the queried key and read its value), about 50 s of CPU time for the four variants on the cpu backend; full
 * and local+global attention learn it in 100 steps (the loss leaves ln 8 after ~50).
 */
const QUICK: Options = {
  full: false, backend: 'cpu', seq: 64, steps: 100, naiveSteps: 8, batch: 8,
  variants: ['flash', 'sliding', 'sparse', 'naive'], window: 8, block: 8, dim: 32, heads: 2, layers: 1, lr: 2e-2,
  eval: 32, seed: 1, prompt: 8, facts: 4, keys: 4, values: 8,
};

/** --full: longer sequences, more facts among more keys, and a lower learning rate (~2 minutes per variant). */
const FULL: Options = {
  ...QUICK, full: true, seq: 256, steps: 200, window: 32, block: 32, lr: 3e-3, eval: 64, prompt: 32, facts: 8,
  keys: 16, values: 16,
};

function parseArgs(argv: string[]): Options {
  const o: Options = {...(argv.includes('--full') ? FULL : QUICK)};
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--full') continue;
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(argv[i]);
    const key = m?.[1].replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()) as keyof Options | undefined;
    if (key == null || key === 'full' || !(key in o)) {
      throw new Error(`unknown argument ${argv[i]} (the flags are listed in train.ts)`);
    }
    const value = m![2] ?? argv[++i];
    if (value === undefined) throw new Error(`${argv[i - 1]} needs a value`);
    if (key === 'backend') o.backend = value;
    else if (key === 'variants') o.variants = value.split(',').map((s) => s.trim()).filter((s) => s);
    else {
      const n = Number(value);
      if (!Number.isFinite(n) || n <= 0) throw new Error(`--${m![1]} must be a positive number, got ${value}`);
      (o[key] as number) = n;
    }
  }
  return o;
}

interface Variant {
  name: string;
  description: string;
  attention: AttentionSpec;
}

function variants(o: Options): Variant[] {
  const all: Record<string, Variant> = {
    flash: {name: 'flash', description: 'full causal, FlashAttention kernels', attention: 'flash'},
    sliding: {name: 'sliding', description: `sliding window ${o.window}`,
              attention: {type: 'sliding', windowSize: o.window}},
    sparse: {name: 'sparse', description: `sparse local+global (blocks of ${o.block})`,
             attention: {type: 'sparse', pattern: {name: 'longformer', blockSize: o.block, windowBlocks: 1,
                                                   globalBlocks: [0]}}},
    strided: {name: 'strided', description: `sparse strided (stride 4 blocks of ${o.block})`,
              attention: {type: 'sparse', pattern: {name: 'strided', blockSize: o.block, stride: 4,
                                                    localBlocks: 1}}},
    naive: {name: 'naive', description: 'full causal, tfjs matMul→softmax→matMul', attention: 'naive'},
  };
  return o.variants.map((name) => {
    if (all[name] == null) throw new Error(`--variants: unknown variant ${name} (known: ${Object.keys(all)})`);
    return all[name];
  });
}

interface Result {
  variant: Variant;
  steps: number;
  /** Loss of every step. */
  losses: number[];
  finalLoss: number;
  accuracy: number;
  tokensPerSecond: number;
  msPerStep: number;
  peakBytes: number;
  seconds: number;
  /** One MultiHeadAttention layer of the model's shape, forward + backward: median ms and peak bytes. */
  attentionMs: number;
  attentionPeakBytes: number;
}

/** Warm-up steps left out of the throughput (first calls compile/JIT). */
const WARMUP_STEPS = 2;

async function trainVariant(
    v: Variant, o: Options, task: RecallTask, initialWeights: tf.Tensor[] | null): Promise<{result: Result;
                                                                                         weights: tf.Tensor[]}> {
  const start = performance.now();
  const model = buildModel({
    vocabSize: vocabularySize(task), numClasses: task.numValues, maxLength: o.seq, modelDim: o.dim,
    numHeads: o.heads, numLayers: o.layers, attention: v.attention,
  });
  model.build([null, o.seq]);
  // Every variant starts from the same weights and sees the same batches: only the attention differs.
  if (initialWeights != null) model.setWeights(initialWeights);
  const weights = initialWeights ?? model.getWeights().map((w) => w.clone());
  const optimizer = tf.train.adam(o.lr);
  const nextBatch = makeBatches(task, o.seed);
  const step = (tokens: Int32Array, targets: Int32Array): tf.Scalar => tf.tidy(() => {
    const x = tf.tensor2d(tokens, [o.batch, o.seq], 'int32');
    const y = tf.oneHot(tf.tensor2d(targets, [o.batch, o.seq - task.promptLength], 'int32'), task.numValues);
    return optimizer.minimize(
        () => tf.losses.softmaxCrossEntropy(y, logitsFrom(model, x, task.promptLength, true)) as tf.Scalar, true)!;
  });

  const steps = v.name === 'naive' ? Math.min(o.naiveSteps, o.steps) : o.steps;
  const bar = new ProgressBar(v.name.padEnd(8), steps);
  const losses: number[] = [];
  let smoothLoss = NaN, timedMs = 0, peakBytes = 0;
  for (let s = 0; s < steps; s++) {
    const {tokens, targets} = nextBatch(o.batch);
    const t0 = performance.now();
    let loss: tf.Scalar;
    if (s === WARMUP_STEPS - 1) {
      // One profiled step for the peak memory (profiling slows the step down, so it is not timed).
      let out: tf.Scalar | undefined;
      peakBytes = (await tf.profile(() => {
        out = step(tokens, targets);
        return out;
      })).peakBytes;
      loss = out!;
    } else {
      loss = step(tokens, targets);
    }
    const value = (await loss.data())[0];
    losses.push(value);
    loss.dispose();
    if (s >= WARMUP_STEPS) timedMs += performance.now() - t0;
    smoothLoss = Number.isNaN(smoothLoss) ? value : 0.95 * smoothLoss + 0.05 * value;
    const timedSteps = s + 1 - WARMUP_STEPS;
    bar.update(s + 1, {
      loss: smoothLoss.toFixed(3),
      'tok/s': timedSteps > 0 ? formatRate(timedSteps * o.batch * o.seq / (timedMs / 1000)) : '-',
    });
  }
  bar.done();

  const accuracy = steps < o.steps ? NaN : await evaluate(model, o, task);
  optimizer.dispose();
  model.dispose();
  const attention = await attentionCost(v, o);
  const timedSteps = Math.max(1, steps - WARMUP_STEPS);
  return {
    result: {
      variant: v, steps, losses, finalLoss: smoothLoss, accuracy,
      tokensPerSecond: timedSteps * o.batch * o.seq / (timedMs / 1000), msPerStep: timedMs / timedSteps, peakBytes,
      seconds: (performance.now() - start) / 1000, attentionMs: attention.ms,
      attentionPeakBytes: attention.peakBytes,
    },
    weights,
  };
}

/**
 * The attention alone: a MultiHeadAttention layer (projections included) at the training shape, forward and backward
 * with respect to its input and weights. Median time of 3 runs after a warm-up, and the peak tensor memory of one.
 */
async function attentionCost(v: Variant, o: Options): Promise<{ms: number; peakBytes: number}> {
  const layer = layers.multiHeadAttention({numHeads: o.heads, keyDim: o.dim / o.heads, causal: true,
                                          attention: v.attention});
  // The input is a variable too, so one backward pass gives the input gradient with the weight gradients.
  const x = tf.variable(tf.randomNormal([o.batch, o.seq, o.dim]));
  tf.dispose(layer.apply(x) as tf.Tensor);
  const vars = [x, ...layer.trainableWeights.map((w) => w.read() as tf.Variable)];
  const run = () => tf.tidy(() => {
    const {value, grads} = tf.variableGrads(() => tf.sum(layer.apply(x) as tf.Tensor) as tf.Scalar, vars);
    return [value, ...Object.values(grads)];
  });
  tf.dispose(run());
  const before = tf.memory().numBytes;
  const profile = await tf.profile(run);
  tf.dispose(profile.result);
  const peakBytes = profile.peakBytes - before;
  const times: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t0 = performance.now();
    const out = run();
    await out[0].data();
    times.push(performance.now() - t0);
    tf.dispose(out);
  }
  layer.dispose();
  x.dispose();
  return {ms: times.sort((a, b) => a - b)[1], peakBytes};
}

/**
 * Accuracy on held-out sequences (a different seed from training), over the far queries: those at least `window`
 * tokens past the prompt, which no fact is within a window's reach of.
 */
async function evaluate(model: tf.LayersModel, o: Options, task: RecallTask): Promise<number> {
  const next = makeBatches(task, o.seed + 1_000_003);
  const queries = o.seq - task.promptLength;
  let correct = 0, counted = 0;
  for (let seen = 0; seen < o.eval;) {
    const n = Math.min(o.batch, o.eval - seen);
    const {tokens, targets} = next(n);
    const predicted = tf.tidy(() => tf.argMax(
        logitsFrom(model, tf.tensor2d(tokens, [n, o.seq], 'int32'), task.promptLength, false), -1));
    const p = await predicted.data();
    predicted.dispose();
    for (let b = 0; b < n; b++) {
      for (let i = farQueryStart(o); i < queries; i++, counted++) {
        correct += p[b * queries + i] === targets[b * queries + i] ? 1 : 0;
      }
    }
    seen += n;
  }
  return correct / counted;
}

/** Index (among the queries) of the first far query. */
function farQueryStart(o: Options): number {
  return o.window;
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const backend = await setNodeBackend(o.backend);
  const task: RecallTask = {seq: o.seq, promptLength: o.prompt, numFacts: o.facts, numKeys: o.keys,
                            numValues: o.values, numFiller: o.keys};
  if (o.seq - task.promptLength <= farQueryStart(o)) {
    throw new Error(`--seq must exceed promptLength + window = ${task.promptLength + o.window} (no far queries)`);
  }
  const chosen = variants(o);
  console.log(`Key–value recall: ${task.numFacts} facts "key=value" among the first ${task.promptLength} tokens, ` +
              `then ${o.seq - task.promptLength} queries "key?", each to be answered with its value (chance ${
                  (100 / task.numValues).toFixed(1)}%).\nAccuracy is measured on held-out sequences at the far ` +
              `queries (positions ${task.promptLength + farQueryStart(o)}..${o.seq - 1}: no fact within ${
                  o.window} tokens).`);
  console.log(`backend ${backend}; model: ${o.layers} pre-norm TransformerDecoder block(s), dim ${o.dim}, ${o.heads} heads; ` +
              `batch ${o.batch} x seq ${o.seq}, ${o.steps} steps of Adam(${o.lr}); eval on ${o.eval} held-out ` +
              `sequences\n`);

  const results: Result[] = [];
  let weights: tf.Tensor[] | null = null;
  for (const v of chosen) {
    const r = await trainVariant(v, o, task, weights);
    weights = r.weights;
    results.push(r.result);
  }
  tf.dispose(weights ?? []);

  console.log('\n' + table(
      ['variant', 'attention', 'steps', 'loss', 'far-query acc', 'tokens/s', 'ms/step', 'peak MB', 'attn ms',
       'attn MB', 'time s'],
      results.map((r) => [
        r.variant.name, r.variant.description, String(r.steps), r.finalLoss.toFixed(3),
        Number.isNaN(r.accuracy) ? '(timing run)' : `${(100 * r.accuracy).toFixed(1)}%`,
        formatRate(r.tokensPerSecond), r.msPerStep.toFixed(0), (r.peakBytes / 2 ** 20).toFixed(1),
        r.attentionMs.toFixed(0), (r.attentionPeakBytes / 2 ** 20).toFixed(1), r.seconds.toFixed(0),
      ]),
      [false, false, true, true, true, true, true, true, true, true, true]));
  console.log(`\nloss: moving average at the end of training. tokens/s, ms/step: training steps after ${
                  WARMUP_STEPS} warm-up steps. peak MB: the most tensor memory held during one training step ` +
              `(tf.profile), weights and optimizer state included.\nattn ms / attn MB: one MultiHeadAttention ` +
              `layer of the same shape alone, forward + backward (median of 3; extra tensor memory at the peak).`);
  const flash = results.find((r) => r.variant.name === 'flash');
  const naive = results.find((r) => r.variant.name === 'naive');
  if (flash != null && naive != null) {
    const diff = Math.max(...naive.losses.map((l, s) => Math.abs(l - flash.losses[s])));
    const time = (naive.msPerStep / flash.msPerStep).toFixed(1);
    const memory = (naive.peakBytes / flash.peakBytes).toFixed(1);
    console.log(`naive vs flash: same weights and batches; per-step losses over the first ${naive.steps} steps ` +
                `differ by at most ${diff.toExponential(1)}; naive takes ${time}x the time per step and ${
                    memory}x the peak memory of flash.`);
  }
  console.log(`The sliding window (${o.window}) cannot reach the facts from a far query, so it stays near chance ` +
              `there; full and local+global sparse attention can.`);
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
