/**
 * The cached layers (keras_hub's CachedMultiHeadAttention semantics on MultiHeadAttention and TransformerDecoder),
 * checked once and run by every runner: node (test/layers_cache.test.ts: cpu, the composite kernels, Dawn's webgpu)
 * and Chromium (test/browser_generate.test.ts: webgl and webgpu, against the bundle users load). Each check takes the
 * tfjs module and the library module and throws an Error when it fails.
 *
 * The property: feeding a sequence through the layer in pieces — a prompt in one cached call, then token by token —
 * gives the outputs of one full causal pass, within 1e-5 (max |difference| / max |full pass|).
 */
import type {Tensor} from '@tensorflow/tfjs-core';
import {Lib, randomArray, Tf} from './check_case.js';

export type LayerCacheCheck = (tf: Tf, lib: Lib) => Promise<void>;

export const CACHE_TOL = 1e-5;

function fail(message: string): never {
  throw new Error(message);
}

async function relativeDifference(a: Tensor, b: Tensor, what: string): Promise<number> {
  if (a.shape.join() !== b.shape.join()) fail(`${what}: shape [${a.shape}], expected [${b.shape}]`);
  const [x, y] = [await a.data() as Float32Array, await b.data() as Float32Array];
  let diff = 0, scale = 1e-3;
  for (let i = 0; i < y.length; i++) {
    const d = Math.abs(x[i] - y[i]);
    diff = Number.isNaN(d) ? Infinity : Math.max(diff, d);
    scale = Math.max(scale, Math.abs(y[i]));
  }
  return diff / scale;
}

async function expectClose(a: Tensor, b: Tensor, what: string): Promise<void> {
  const err = await relativeDifference(a, b, what);
  if (!(err <= CACHE_TOL)) fail(`${what}: max |cached − full| / max |full| = ${err} > ${CACHE_TOL}`);
}

/** How the sequence is fed: the first `prompt` tokens in one call, then one at a time. */
interface Feeding {
  prompt: number;
  /** cacheUpdateIndex as a number, a scalar int32 tensor, or an int32 [batch] tensor. */
  index: 'number' | 'scalar' | 'batch';
}

type Apply = (x: Tensor, cache: Tensor | null, index: number | Tensor | null) => Tensor | Tensor[];

/** Feeds x [batch, seq, features] in pieces through `apply` with a cache of `capacity`; returns the outputs joined. */
async function decodeInPieces(tf: Tf, apply: Apply, x: Tensor, cacheShape: number[], feeding: Feeding):
    Promise<Tensor> {
  const [batch, seq, features] = x.shape;
  let cache: Tensor = tf.zeros(cacheShape);
  const outputs: Tensor[] = [];
  for (let start = 0; start < seq;) {
    const n = start === 0 ? feeding.prompt : 1;
    const piece = tf.slice(x, [0, start, 0], [batch, n, features]);
    const index = feeding.index === 'number' ? start : feeding.index === 'scalar' ? tf.scalar(start, 'int32') :
                                                                                 tf.tensor1d([start, start], 'int32');
    const result = apply(piece, cache, index);
    if (!Array.isArray(result) || result.length !== 2) fail('a cached call must return [output, cache]');
    const [out, updated] = result;
    if (updated.shape.join() !== cacheShape.join()) fail(`the returned cache has shape [${updated.shape}]`);
    tf.dispose([piece, cache, ...(typeof index === 'number' ? [] : [index])]);
    cache = updated;
    outputs.push(out);
    start += n;
  }
  const joined = tf.concat(outputs, 1);
  tf.dispose([...outputs, cache]);
  return joined;
}

interface MhaCase {
  name: string;
  args: Record<string, unknown>;
  feeding: Feeding;
}

const MHA_CASES: MhaCase[] = [
  {name: 'flash, GQA 4/2, rotary, prompt 3 then 1 by 1 (number index)',
   args: {numHeads: 4, numKeyValueHeads: 2, keyDim: 8, rotary: true}, feeding: {prompt: 3, index: 'number'}},
  {name: 'flash, MHA, 1 by 1 (scalar tensor index)', args: {numHeads: 2, keyDim: 4},
   feeding: {prompt: 1, index: 'scalar'}},
  {name: 'flash, GQA 4/1, rotary, prompt 4 ([batch] tensor index)',
   args: {numHeads: 4, numKeyValueHeads: 1, keyDim: 4, rotary: {maxWavelength: 500}},
   feeding: {prompt: 4, index: 'batch'}},
  {name: "naive spec, GQA 4/2, rotary", args: {numHeads: 4, numKeyValueHeads: 2, keyDim: 8, rotary: true,
                                                  attention: 'naive'}, feeding: {prompt: 2, index: 'number'}},
  {name: 'sliding window 3 (causal layer), GQA 2/1', args: {numHeads: 2, numKeyValueHeads: 1, keyDim: 8,
                                                           causal: true, attention: {type: 'sliding', windowSize: 3}},
   feeding: {prompt: 3, index: 'number'}},
];

function mhaCheck(c: MhaCase): LayerCacheCheck {
  return async (tf, lib) => {
    const [batch, seq, features] = [2, 7, 12];
    const layer = lib.layers.multiHeadAttention(c.args as never);
    const x = tf.tensor3d(randomArray(batch * seq * features, 7), [batch, seq, features]);
    const full = layer.apply(x, {useCausalMask: true}) as Tensor;  // builds the layer (its weights)
    const before = tf.memory().numTensors;
    const kvHeads = (c.args.numKeyValueHeads ?? c.args.numHeads) as number;
    const cached = await decodeInPieces(
        tf, (piece, cache, index) => layer.apply(piece, {cache, cacheUpdateIndex: index, useCausalMask: true}) as
            Tensor[], x, [batch, 2, seq + 2, kvHeads, c.args.keyDim as number], c.feeding);
    await expectClose(cached, full, `MultiHeadAttention ${c.name}`);
    cached.dispose();
    const leaked = tf.memory().numTensors - before;
    tf.dispose([x, full]);
    layer.dispose();
    if (leaked !== 0) fail(`MultiHeadAttention ${c.name}: ${leaked} tensors leaked`);
  };
}

function decoderCheck(normalizeFirst: boolean): LayerCacheCheck {
  return async (tf, lib) => {
    const [batch, seq, features, heads] = [2, 6, 8, 2];
    const layer = lib.layers.transformerDecoder({intermediateDim: 16, numHeads: heads, normalizeFirst});
    const x = tf.tensor3d(randomArray(batch * seq * features, 11), [batch, seq, features]);
    const full = layer.apply(x) as Tensor;
    const cached = await decodeInPieces(
        tf, (piece, cache, index) => layer.apply(piece, {
          selfAttentionCache: cache, selfAttentionCacheUpdateIndex: index,
        } as never) as Tensor[], x, [batch, 2, seq, heads, features / heads], {prompt: 2, index: 'number'});
    await expectClose(cached, full, `TransformerDecoder (normalizeFirst ${normalizeFirst})`);
    tf.dispose([cached, full, x]);
    layer.dispose();
  };
}

/** Per-batch positions: batch b written at index p_b equals a batch-1 call at p_b on the same cache rows. */
const perBatchPositions: LayerCacheCheck = async (tf, lib) => {
  const layer = lib.layers.multiHeadAttention({numHeads: 2, keyDim: 4, rotary: true});
  const [capacity, features] = [8, 6];
  const cache = tf.tensor(randomArray(2 * 2 * capacity * 2 * 4, 3), [2, 2, capacity, 2, 4]);
  const x = tf.tensor3d(randomArray(2 * 1 * features, 5), [2, 1, features]);
  const positions = [2, 5];
  const [out, updated] = layer.apply(x, {cache, cacheUpdateIndex: tf.tensor1d(positions, 'int32')}) as Tensor[];
  for (const b of [0, 1]) {
    const cacheB = tf.slice(cache, [b, 0, 0, 0, 0], [1, 2, capacity, 2, 4]);
    const xB = tf.slice(x, [b, 0, 0], [1, 1, features]);
    const [outB, updatedB] = layer.apply(xB, {cache: cacheB, cacheUpdateIndex: positions[b]}) as Tensor[];
    const outSlice = tf.slice(out, [b, 0, 0], [1, 1, features]);
    const cacheSlice = tf.slice(updated, [b, 0, 0, 0, 0], [1, 2, capacity, 2, 4]);
    await expectClose(outSlice, outB, `per-batch positions: output of batch ${b}`);
    await expectClose(cacheSlice, updatedB, `per-batch positions: cache of batch ${b}`);
    tf.dispose([cacheB, xB, outB, updatedB, outSlice, cacheSlice]);
  }
  tf.dispose([cache, x, out, updated]);
  layer.dispose();
};

/** Without cacheUpdateIndex the cache is used as is: attention over all its rows, the cache returned unchanged. */
const staticCache: LayerCacheCheck = async (tf, lib) => {
  const layer = lib.layers.multiHeadAttention({numHeads: 2, keyDim: 4});
  const [batch, seqK, features] = [2, 5, 6];
  const q = tf.tensor3d(randomArray(batch * 3 * features, 13), [batch, 3, features]);
  const memory = tf.tensor3d(randomArray(batch * seqK * features, 17), [batch, seqK, features]);
  const full = layer.apply(q, {value: memory}) as Tensor;
  // Fill a cache with the memory's keys and values (update mode over the whole capacity, no causal mask) ...
  const empty = tf.zeros([batch, 2, seqK, 2, 4]);
  const [projected, filled] = layer.apply(memory, {cache: empty, cacheUpdateIndex: 0}) as Tensor[];
  // ... then attend to it as is: the value input is ignored.
  const [out, same] = layer.apply(q, {value: q, cache: filled}) as Tensor[];
  await expectClose(out, full, 'static cache: output');
  await expectClose(same, filled, 'static cache: returned cache');
  tf.dispose([q, memory, full, empty, projected, filled, out, same]);
  layer.dispose();
};

export const LAYER_CACHE_CHECKS: Record<string, LayerCacheCheck> = {
  ...Object.fromEntries(MHA_CASES.map((c) => [`MultiHeadAttention cached == full causal pass: ${c.name}`,
                                              mhaCheck(c)])),
  'TransformerDecoder cached == full causal pass (post-norm)': decoderCheck(false),
  'TransformerDecoder cached == full causal pass (normalizeFirst)': decoderCheck(true),
  'MultiHeadAttention: per-batch cacheUpdateIndex [batch]': perBatchPositions,
  'MultiHeadAttention: static cache (no cacheUpdateIndex) is used as is': staticCache,
};
