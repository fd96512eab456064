/**
 * Training and decoding of the tiny decoder (model.ts), shared by `npm run generate` (generate.ts, node) and the
 * browser demo's Generate panel (examples/browser/generate.ts): a training loop on the synthetic grammar, a seeded
 * sampler, generation with the layers' KV cache or by recomputing the prefix, and the cache's exactness check.
 */
import * as tf from '@tensorflow/tfjs';
import {corpus, makeRandom, VOCABULARY} from './grammar.js';
import {KVCache, TinyDecoder} from './model.js';

export interface TrainOptions {
  steps: number;
  batch: number;
  seq: number;
  lr: number;
  seed: number;
}

/** Adam on random windows of the corpus; calls onStep with the smoothed loss. Returns the final smoothed loss. */
export async function trainModel(model: TinyDecoder, o: TrainOptions,
                                 onStep: (step: number, loss: number) => void | Promise<void> = () => {}):
    Promise<number> {
  const stream = corpus(200_000, o.seed);
  const random = makeRandom(o.seed + 1);
  const optimizer = tf.train.adam(o.lr);
  let smooth = NaN;
  for (let step = 1; step <= o.steps; step++) {
    const windows = new Int32Array(o.batch * (o.seq + 1));
    for (let b = 0; b < o.batch; b++) {
      const start = Math.floor(random() * (stream.length - o.seq - 1));
      windows.set(stream.subarray(start, start + o.seq + 1), b * (o.seq + 1));
    }
    const loss = tf.tidy(() => optimizer.minimize(
        () => model.loss(tf.tensor2d(windows, [o.batch, o.seq + 1], 'int32')), true)!);
    const value = (await loss.data())[0];
    loss.dispose();
    smooth = Number.isNaN(smooth) ? value : 0.9 * smooth + 0.1 * value;
    await onStep(step, smooth);
  }
  optimizer.dispose();
  return smooth;
}

/** Samples from logits [vocab] at `temperature` with a seeded uniform. */
export function sample(logits: Float32Array, temperature: number, u: number): number {
  let max = -Infinity;
  for (const l of logits) max = Math.max(max, l);
  const p = Array.from(logits, (l) => Math.exp((l - max) / temperature));
  let r = u * p.reduce((a, b) => a + b, 0);
  for (let i = 0; i < p.length; i++) if ((r -= p[i]) < 0) return i;
  return p.length - 1;
}

export interface Generation {
  tokens: number[];
  seconds: number;
}

export interface GenerateOptions {
  tokens: number;
  temperature: number;
  seed: number;
}

/**
 * Generates o.tokens tokens after `prompt`: with the cache (the prompt in one cached pass, then one token per step)
 * or without (a full causal pass over everything so far, for every token).
 */
export async function generateTokens(model: TinyDecoder, prompt: number[], o: GenerateOptions, useCache: boolean):
    Promise<Generation> {
  const random = makeRandom(o.seed + 2);
  const tokens = [...prompt];
  let cache: KVCache | null = useCache ? model.emptyCache(1, prompt.length + o.tokens) : null;
  let next = prompt;
  const t0 = performance.now();
  for (let i = 0; i < o.tokens; i++) {
    const input = useCache ? next : tokens;
    const step = tf.tidy(() => {
      const {logits, cache: updated} = model.forward(tf.tensor2d(input, [1, input.length], 'int32'), cache);
      const last = tf.squeeze(tf.slice(logits, [0, input.length - 1, 0], [1, 1, -1]));
      return {last, layers: updated?.layers ?? []};
    });
    if (cache != null) {
      tf.dispose(cache.layers);
      cache = {layers: step.layers, length: cache.length + input.length};
    }
    const token = sample(await step.last.data() as Float32Array, o.temperature, random());
    step.last.dispose();
    tokens.push(token);
    next = [token];
  }
  const seconds = (performance.now() - t0) / 1000;
  if (cache != null) tf.dispose(cache.layers);
  return {tokens: tokens.slice(prompt.length), seconds};
}

/** Max |cached logits − full-pass logits| over a sequence fed token by token (the cache's exactness). */
export async function cacheAgreement(model: TinyDecoder, sequence: number[]): Promise<number> {
  const full = await tf.tidy(() => model.forward(tf.tensor2d(sequence, [1, sequence.length], 'int32')).logits).data();
  let cache = model.emptyCache(1, sequence.length);
  let maxDiff = 0;
  for (let i = 0; i < sequence.length; i++) {
    const step = tf.tidy(() => {
      const {logits, cache: updated} = model.forward(tf.tensor2d([sequence[i]], [1, 1], 'int32'), cache);
      return {logits, layers: updated!.layers};
    });
    tf.dispose(cache.layers);
    cache = {layers: step.layers, length: i + 1};
    const row = await step.logits.data();
    step.logits.dispose();
    const v = VOCABULARY.length;
    for (let j = 0; j < v; j++) maxDiff = Math.max(maxDiff, Math.abs(row[j] - full[i * v + j]));
  }
  tf.dispose(cache.layers);
  return maxDiff;
}

export function text(tokens: number[]): string {
  return tokens.map((t) => VOCABULARY[t]).join(' ').replace(/ \./g, '.');
}

/** The four decoders the examples race: same weights, same seeded sampler, so the same tokens. */
export const DECODERS = [
  {name: 'flash + KV cache', attention: 'flash', cache: true},
  {name: 'flash, recompute prefix', attention: 'flash', cache: false},
  {name: 'naive + KV cache', attention: 'naive', cache: true},
  {name: 'naive, recompute prefix', attention: 'naive', cache: false},
] as const;
