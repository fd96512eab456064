/**
 * `npm run generate`: train a tiny decoder-only transformer (MultiHeadAttention layers with rotary q/k, grouped-query
 * heads and keras_hub's KV cache, see model.ts) on a synthetic grammar (grammar.ts), then generate text with the
 * cache (the layer's cache / cacheUpdateIndex call arguments) and compare
 * decoding speed: with the cache, without it (recomputing the whole prefix for every token), and the same two with
 * naive attention (tfjs matMul → softmax → matMul). Every decoder samples the same tokens (same weights, same seeded
 * sampler), which the example checks, and the cached logits are compared with one full causal pass.
 *
 * Flags: --backend cpu|wasm|webgpu (cpu), --steps N (70 training steps), --batch N (16), --seq N (32),
 *        --dim N (48), --layers N (2), --heads N (4), --kv-heads N (2), --lr X (0.01), --tokens N (64 generated),
 *        --temperature X (0.7), --repeats N (2 timed generations per decoder, the fastest counts), --seed N (1).
 *        Longer runs: --steps 300 --dim 64 --tokens 256.
 */
import {createRequire} from 'node:module';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import {corpus, grammaticality, makeRandom, VOCABULARY} from './grammar.js';
import {AttentionImpl, KVCache, TinyDecoder} from './model.js';

interface Options {
  backend: string;
  steps: number;
  batch: number;
  seq: number;
  dim: number;
  layers: number;
  heads: number;
  kvHeads: number;
  lr: number;
  tokens: number;
  temperature: number;
  /** Timed generations per decoder (the fastest counts: timings on a shared machine are noisy). */
  repeats: number;
  seed: number;
}

function parseArgs(argv: string[]): Options {
  const o: Options = {backend: 'cpu', steps: 70, batch: 16, seq: 32, dim: 48, layers: 2, heads: 4, kvHeads: 2,
                      lr: 1e-2, tokens: 64, temperature: 0.7, repeats: 2, seed: 1};
  for (let i = 0; i < argv.length; i++) {
    const m = /^--([a-z-]+)(?:=(.*))?$/.exec(argv[i]);
    const key = m?.[1].replace(/-([a-z])/g, (_, c: string) => c.toUpperCase()) as keyof Options | undefined;
    if (key == null || !(key in o)) throw new Error(`unknown argument ${argv[i]} (the flags are listed in generate.ts)`);
    const value = m![2] ?? argv[++i];
    if (value === undefined) throw new Error(`--${m![1]} needs a value`);
    if (key === 'backend') {
      o.backend = value;
    } else {
      const n = Number(value);
      if (!Number.isFinite(n) || n <= 0) throw new Error(`--${m![1]} must be a positive number, got ${value}`);
      (o[key] as number) = n;
    }
  }
  return o;
}

async function setBackend(name: string): Promise<string> {
  if (name === 'wasm') {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    const pkg = createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm/package.json');
    wasm.setWasmPaths(path.join(path.dirname(pkg), 'dist') + path.sep);
  } else if (name === 'webgpu') {
    // Dawn (the `webgpu` package), on a GPU or Mesa's software Vulkan driver; installs navigator.gpu first.
    const {setupWebGPU} = await import('../../test/webgpu_env.js');
    const env = await setupWebGPU();
    if (env == null) throw new Error('--backend webgpu: WebGPU (Dawn) is not available on this machine');
    return `webgpu (${env.adapterDescription})`;
  } else if (name !== 'cpu') {
    throw new Error(`--backend must be cpu, wasm or webgpu, got ${name}`);
  }
  if (!(await tf.setBackend(name))) throw new Error(`tf.setBackend('${name}') failed`);
  await tf.ready();
  return name;
}

async function train(model: TinyDecoder, o: Options): Promise<number> {
  const stream = corpus(200_000, o.seed);
  const random = makeRandom(o.seed + 1);
  const optimizer = tf.train.adam(o.lr);
  let smooth = NaN;
  const t0 = performance.now();
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
    if (step % Math.max(1, Math.round(o.steps / 6)) === 0 || step === o.steps) {
      console.log(`  step ${String(step).padStart(4)}  loss ${smooth.toFixed(3)}  ${
          ((performance.now() - t0) / 1000).toFixed(0)}s`);
    }
  }
  optimizer.dispose();
  return smooth;
}

/** Samples from logits [vocab] at `temperature` with a seeded uniform. */
function sample(logits: Float32Array, temperature: number, u: number): number {
  let max = -Infinity;
  for (const l of logits) max = Math.max(max, l);
  const p = Array.from(logits, (l) => Math.exp((l - max) / temperature));
  let r = u * p.reduce((a, b) => a + b, 0);
  for (let i = 0; i < p.length; i++) if ((r -= p[i]) < 0) return i;
  return p.length - 1;
}

interface Generation {
  tokens: number[];
  seconds: number;
}

/**
 * Generates o.tokens tokens after `prompt`: with the cache (the prompt in one cached pass, then one token per step)
 * or without (a full causal pass over everything so far, for every token).
 */
async function generate(model: TinyDecoder, prompt: number[], o: Options, useCache: boolean): Promise<Generation> {
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
async function cacheAgreement(model: TinyDecoder, sequence: number[]): Promise<number> {
  const full = await tf.tidy(() =>
      model.forward(tf.tensor2d(sequence, [1, sequence.length], 'int32')).logits).data();
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

function text(tokens: number[]): string {
  return tokens.map((t) => VOCABULARY[t]).join(' ').replace(/ \./g, '.');
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const started = performance.now();
  const backend = await setBackend(o.backend);
  const model = new TinyDecoder({vocabSize: VOCABULARY.length, dim: o.dim, layers: o.layers, heads: o.heads,
                                 kvHeads: o.kvHeads, seed: o.seed});
  console.log(`backend ${backend}; model: ${o.layers} block(s), dim ${o.dim}, ${o.heads} query heads sharing ${
      o.kvHeads} kv heads (head size ${model.headDim}), rotary positions; vocabulary ${VOCABULARY.length} words`);
  console.log(`training ${o.steps} steps of ${o.batch} × ${o.seq} tokens on a synthetic grammar (see grammar.ts)`);
  await train(model, o);

  const prompt = [0, VOCABULARY.indexOf('the')];  // ". the"
  const agreement = await cacheAgreement(model, [...prompt, ...corpus(30, o.seed + 3)]);
  console.log(`\nKV cache vs one full causal pass (32 tokens fed one at a time): max |logit difference| ${
      agreement.toExponential(1)}`);

  // One warm-up generation per variant (first calls compile / JIT), then the timed ones.
  const variants: Array<{name: string; attention: AttentionImpl; cache: boolean}> = [
    {name: 'flash + KV cache', attention: 'flash', cache: true},
    {name: 'flash, recompute prefix', attention: 'flash', cache: false},
    {name: 'naive + KV cache', attention: 'naive', cache: true},
    {name: 'naive, recompute prefix', attention: 'naive', cache: false},
  ];
  const results: Array<{name: string; generation: Generation}> = [];
  const models = {flash: model, naive: model.withAttention('naive')};  // the naive twin shares every weight
  for (const v of variants) {
    const m = models[v.attention];
    await generate(m, prompt, {...o, tokens: Math.min(4, o.tokens)}, v.cache);
    let best: Generation | null = null;
    for (let r = 0; r < o.repeats; r++) {
      const g = await generate(m, prompt, o, v.cache);
      if (best == null || g.seconds < best.seconds) best = g;
    }
    results.push({name: v.name, generation: best!});
  }
  const reference = results[0].generation.tokens;
  console.log(`\nsample (${o.tokens} tokens at temperature ${o.temperature}, after "${text(prompt)}"):\n  ${
      text(reference)}`);
  const {sentences, grammatical} = grammaticality([...prompt, ...reference]);
  console.log(`  ${grammatical} of ${sentences} complete sentences follow the grammar`);
  console.log(`\n| decoder                  | tokens/s | ms/token | same tokens as flash + cache |`);
  console.log(`|--------------------------|---------:|---------:|------------------------------|`);
  for (const {name, generation} of results) {
    const same = generation.tokens.every((t, i) => t === reference[i]);
    console.log(`| ${name.padEnd(24)} | ${(o.tokens / generation.seconds).toFixed(1).padStart(8)} | ${
        (1000 * generation.seconds / o.tokens).toFixed(1).padStart(8)} | ${(same ? 'yes' : 'NO').padEnd(28)} |`);
  }
  console.log(`\ntotal ${((performance.now() - started) / 1000).toFixed(0)}s`);
  models.naive.dispose(true);
  model.dispose();
  if (!(agreement < 1e-3)) {
    console.error('the cached logits differ from the full pass');
    process.exitCode = 1;
  }
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
