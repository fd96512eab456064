/**
 * A tiny decoder-only transformer written with tfjs ops and tf.layers.dense weights: token embedding, pre-norm blocks
 * (RMSNorm → attention with rotary q/k and grouped-query heads → RMSNorm → MLP), a final norm and a vocabulary head.
 *
 * The attention runs three ways, all computing the same function:
 *   full pass   causal flashAttention over the whole sequence (training, and "recompute the prefix" decoding);
 *   cached      the new tokens' k and v are written into a fixed-capacity KV cache with updateKVCache, and their
 *               queries attend to the cache: one query (a decoding step) with keyLengths = tokens so far, several
 *               (the prompt) with a causal pass over the cache's valid prefix;
 *   naive       the same, with tfjs matMul → softmax → matMul (src/layers/naive_attention.ts) instead of the kernels.
 * Rotary positions are the tokens' absolute positions (startIndex = tokens already in the cache), so a cached step
 * sees exactly the q and k the full pass computes.
 */
import * as tf from '@tensorflow/tfjs';
import {flashAttention, rotaryEmbedding, updateKVCache} from '../../src/index.js';
import {naiveAttention} from '../../src/layers/naive_attention.js';

export interface ModelConfig {
  vocabSize: number;
  dim: number;
  layers: number;
  heads: number;
  /** Grouped-query attention: heads share kvHeads key/value heads. */
  kvHeads: number;
  seed: number;
}

export type AttentionImpl = 'flash' | 'naive';

/** Per layer, k and v [batch, capacity, kvHeads, headDim]; `length` rows are filled. */
export interface KVCache {
  k: tf.Tensor4D[];
  v: tf.Tensor4D[];
  length: number;
}

interface Block {
  norm1: tf.Variable;
  wq: tf.layers.Layer;
  wk: tf.layers.Layer;
  wv: tf.layers.Layer;
  wo: tf.layers.Layer;
  norm2: tf.Variable;
  up: tf.layers.Layer;
  down: tf.layers.Layer;
}

const CAUSAL = {windowLeft: -1, windowRight: 0, layout: null};

export class TinyDecoder {
  readonly headDim: number;
  private readonly embedding: tf.Variable;
  private readonly blocks: Block[];
  private readonly finalNorm: tf.Variable;
  private readonly head: tf.layers.Layer;

  constructor(readonly config: ModelConfig) {
    const {vocabSize, dim, layers, heads, kvHeads, seed} = config;
    if (dim % heads !== 0 || heads % kvHeads !== 0 || (dim / heads) % 2 !== 0) {
      throw new Error(`dim ${dim} / heads ${heads} must be an even head size, and heads a multiple of kvHeads`);
    }
    this.headDim = dim / heads;
    let s = seed;
    const dense = (inputDim: number, units: number, activation?: 'relu') => {
      const layer = tf.layers.dense({units, useBias: false, activation,
                                     kernelInitializer: tf.initializers.glorotNormal({seed: s++})});
      layer.build([null, null, inputDim]);
      return layer;
    };
    this.embedding = tf.variable(tf.randomNormal([vocabSize, dim], 0, 0.1, 'float32', s++));
    this.blocks = Array.from({length: layers}, () => ({
      norm1: tf.variable(tf.ones([dim])),
      wq: dense(dim, heads * this.headDim),
      wk: dense(dim, kvHeads * this.headDim),
      wv: dense(dim, kvHeads * this.headDim),
      wo: dense(heads * this.headDim, dim),
      norm2: tf.variable(tf.ones([dim])),
      up: dense(dim, 4 * dim, 'relu'),
      down: dense(4 * dim, dim),
    }));
    this.finalNorm = tf.variable(tf.ones([dim]));
    this.head = dense(dim, vocabSize);
  }

  /** Logits [batch, n, vocab] of `tokens` [batch, n] placed after the cache's `length` tokens (or at 0 without one). */
  forward(tokens: tf.Tensor2D, attention: AttentionImpl, cache: KVCache | null = null):
      {logits: tf.Tensor3D, cache: KVCache | null} {
    const [batch, n] = tokens.shape;
    const start = cache?.length ?? 0;
    const {heads, kvHeads} = this.config;
    const d = this.headDim;
    const newK: tf.Tensor4D[] = [], newV: tf.Tensor4D[] = [];
    let x: tf.Tensor = tf.gather(this.embedding, tokens);  // [batch, n, dim]
    this.blocks.forEach((block, l) => {
      const h = rmsNorm(x, block.norm1);
      const q = rotaryEmbedding(tf.reshape(apply(block.wq, h), [batch, n, heads, d]), {startIndex: start});
      const k = rotaryEmbedding(tf.reshape(apply(block.wk, h), [batch, n, kvHeads, d]), {startIndex: start});
      const v = tf.reshape(apply(block.wv, h), [batch, n, kvHeads, d]) as tf.Tensor4D;
      let attended: tf.Tensor4D;
      if (cache == null) {
        attended = attention === 'flash' ? flashAttention(q, k, v, {causal: true}) :
            naiveAttention(q as tf.Tensor4D, k as tf.Tensor4D, v, CAUSAL, 1 / Math.sqrt(d));
      } else {
        const kCache = updateKVCache(cache.k[l], k, start), vCache = updateKVCache(cache.v[l], v, start);
        newK.push(kCache);
        newV.push(vCache);
        attended = attendToCache(q as tf.Tensor4D, kCache, vCache, start + n, attention);
      }
      x = tf.add(x, apply(block.wo, tf.reshape(attended, [batch, n, heads * d])));
      x = tf.add(x, apply(block.down, apply(block.up, rmsNorm(x, block.norm2))));
    });
    const logits = apply(this.head, rmsNorm(x, this.finalNorm)) as tf.Tensor3D;
    return {logits, cache: cache == null ? null : {k: newK, v: newV, length: start + n}};
  }

  /** An empty cache of `capacity` positions. */
  emptyCache(batch: number, capacity: number): KVCache {
    const shape: [number, number, number, number] = [batch, capacity, this.config.kvHeads, this.headDim];
    return {k: this.blocks.map(() => tf.zeros(shape)), v: this.blocks.map(() => tf.zeros(shape)), length: 0};
  }

  /** Mean next-token cross-entropy of `tokens` [batch, seq + 1] (full causal pass on the flash kernels). */
  loss(tokens: tf.Tensor2D): tf.Scalar {
    const [batch, seqPlusOne] = tokens.shape;
    const inputs = tf.slice(tokens, [0, 0], [batch, seqPlusOne - 1]);
    const targets = tf.slice(tokens, [0, 1], [batch, seqPlusOne - 1]);
    const {logits} = this.forward(inputs, 'flash');
    return tf.losses.softmaxCrossEntropy(tf.oneHot(targets, this.config.vocabSize), logits) as tf.Scalar;
  }

  dispose(): void {
    tf.dispose([this.embedding, this.finalNorm, ...this.blocks.flatMap((b) => [b.norm1, b.norm2])]);
    // The dense layers are applied eagerly (never connected into a model), so their weights are disposed directly.
    for (const layer of [this.head, ...this.blocks.flatMap((b) => [b.wq, b.wk, b.wv, b.wo, b.up, b.down])]) {
      for (const w of layer.weights) w.dispose();
    }
  }
}

function apply(layer: tf.layers.Layer, x: tf.Tensor): tf.Tensor {
  return layer.apply(x) as tf.Tensor;
}

function rmsNorm(x: tf.Tensor, gain: tf.Variable): tf.Tensor {
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), 1e-6))), gain);
}

/**
 * The new queries [batch, n, heads, d], the last of them at position `length` − 1, attend to the cache's first
 * `length` rows. (With the attention ops' queryOffsets this is one call for any n — queryOffsets = length − n,
 * keyLengths = length, as flash_attn_with_kvcache — once every backend's kernels take queryOffsets.)
 */
function attendToCache(q: tf.Tensor4D, kCache: tf.Tensor4D, vCache: tf.Tensor4D, length: number,
                       attention: AttentionImpl): tf.Tensor4D {
  const [batch, n] = q.shape;
  const scale = 1 / Math.sqrt(q.shape[3]);
  if (attention === 'flash' && n === 1) {
    // One query sees every key written so far: no causal mask, the unwritten rows masked by keyLengths.
    return flashAttention(q, kCache, vCache, {keyLengths: new Array(batch).fill(length)});
  }
  // The valid prefix, causal with bottom-right alignment: query i of n sits at position length − n + i.
  const [, , kvHeads, d] = kCache.shape;
  const k = tf.slice(kCache, [0, 0, 0, 0], [batch, length, kvHeads, d]);
  const v = tf.slice(vCache, [0, 0, 0, 0], [batch, length, kvHeads, d]);
  return attention === 'flash' ? flashAttention(q, k, v, {causal: true}) : naiveAttention(q, k, v, CAUSAL, scale);
}
