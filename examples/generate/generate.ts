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
import {setNodeBackend} from '../shared/node_backend.js';
import {cacheAgreement, DECODERS, Generation, generateTokens, text, trainModel} from './decode.js';
import {corpus, grammaticality, VOCABULARY} from './grammar.js';
import {TinyDecoder} from './model.js';

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

async function train(model: TinyDecoder, o: Options): Promise<number> {
  const t0 = performance.now();
  return trainModel(model, o, (step, loss) => {
    if (step % Math.max(1, Math.round(o.steps / 6)) === 0 || step === o.steps) {
      console.log(`  step ${String(step).padStart(4)}  loss ${loss.toFixed(3)}  ${
          ((performance.now() - t0) / 1000).toFixed(0)}s`);
    }
  });
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const started = performance.now();
  const backend = await setNodeBackend(o.backend);
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

  // One warm-up generation per decoder (first calls compile / JIT), then the timed ones.
  const results: Array<{name: string; generation: Generation}> = [];
  const models = {flash: model, naive: model.withAttention('naive')};  // the naive twin shares every weight
  for (const v of DECODERS) {
    const m = models[v.attention];
    await generateTokens(m, prompt, {...o, tokens: Math.min(4, o.tokens)}, v.cache);
    let best: Generation | null = null;
    for (let r = 0; r < o.repeats; r++) {
      const g = await generateTokens(m, prompt, o, v.cache);
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
