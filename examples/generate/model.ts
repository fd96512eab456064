/**
 * A tiny decoder-only transformer built from the library's layers: token embedding, pre-norm blocks (RMSNorm →
 * MultiHeadAttention with rotary q/k, grouped-query heads and a causal mask → RMSNorm → MLP), a final norm and a
 * vocabulary head.
 *
 * Decoding uses the layer's KV cache, keras_hub's CachedMultiHeadAttention way: per block one cache tensor
 * [batch, 2, capacity, kvHeads, headDim]; `mha.apply(x, {cache, cacheUpdateIndex, useCausalMask: true})` writes the
 * new tokens' keys and values at cacheUpdateIndex (updateKVCache) and attends to the cache's valid prefix on the
 * kernels (queryOffsets + keyLengths, no mask tensor), returning [output, newCache]. Rotary positions are the tokens'
 * absolute positions (cacheUpdateIndex + i), so a cached step sees exactly the q and k of the full pass.
 *
 * `attention: 'naive'` makes the same model with the layers' naive spec (tfjs matMul → softmax → matMul); withAttention
 * builds such a twin sharing every weight.
 */
import * as tf from '@tensorflow/tfjs';
import {layers} from '../../src/index.js';

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

/** Per block, the layer's cache [batch, 2, capacity, kvHeads, headDim]; `length` positions are filled. */
export interface KVCache {
  layers: tf.Tensor[];
  length: number;
}

interface Block {
  norm1: tf.Variable;
  attention: layers.MultiHeadAttention;
  norm2: tf.Variable;
  up: tf.layers.Layer;
  down: tf.layers.Layer;
}

export class TinyDecoder {
  readonly headDim: number;
  private readonly embedding: tf.Variable;
  private readonly blocks: Block[];
  private readonly finalNorm: tf.Variable;
  private readonly head: tf.layers.Layer;

  constructor(readonly config: ModelConfig, readonly attention: AttentionImpl = 'flash', shareWith?: TinyDecoder) {
    const {vocabSize, dim, heads, kvHeads, seed} = config;
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
    const mha = (shared?: layers.MultiHeadAttention) => {
      const layer = layers.multiHeadAttention({
        numHeads: heads, numKeyValueHeads: kvHeads, keyDim: this.headDim, useBias: false, rotary: true, attention,
        kernelInitializer: tf.initializers.glorotNormal({seed: s++}),
      });
      tf.tidy(() => {
        layer.apply(tf.zeros([1, 1, dim]));  // builds its weights
      });
      if (shared != null) layer.setWeights(shared.getWeights());
      return layer;
    };
    if (shareWith != null) {
      // A twin: the same variables and dense layers, attention layers of another spec with copied weights.
      this.embedding = shareWith.embedding;
      this.finalNorm = shareWith.finalNorm;
      this.head = shareWith.head;
      this.blocks = shareWith.blocks.map((b) => ({...b, attention: mha(b.attention)}));
      return;
    }
    this.embedding = variableOf(tf.randomNormal([vocabSize, dim], 0, 0.1, 'float32', s++));
    this.blocks = Array.from({length: config.layers}, () => ({
      norm1: variableOf(tf.ones([dim])),
      attention: mha(),
      norm2: variableOf(tf.ones([dim])),
      up: dense(dim, 4 * dim, 'relu'),
      down: dense(4 * dim, dim),
    }));
    this.finalNorm = variableOf(tf.ones([dim]));
    this.head = dense(dim, vocabSize);
  }

  /** The same model (shared weights) with another attention implementation. */
  withAttention(attention: AttentionImpl): TinyDecoder {
    return new TinyDecoder(this.config, attention, this);
  }

  /**
   * Logits [batch, n, vocab] of `tokens` [batch, n]: one causal pass, or, with a cache, the tokens placed after its
   * `length` positions (and the updated cache).
   */
  forward(tokens: tf.Tensor2D, cache: KVCache | null = null): {logits: tf.Tensor3D, cache: KVCache | null} {
    const n = tokens.shape[1];
    const updated: tf.Tensor[] = [];
    let x: tf.Tensor = tf.gather(this.embedding, tokens);  // [batch, n, dim]
    this.blocks.forEach((block, l) => {
      const h = rmsNorm(x, block.norm1);
      let attended: tf.Tensor;
      if (cache == null) {
        attended = block.attention.apply(h, {useCausalMask: true}) as tf.Tensor;
      } else {
        const [out, layerCache] = block.attention.apply(h, {
          cache: cache.layers[l], cacheUpdateIndex: cache.length, useCausalMask: true,
        }) as tf.Tensor[];
        attended = out;
        updated.push(layerCache);
      }
      x = tf.add(x, attended);
      x = tf.add(x, apply(block.down, apply(block.up, rmsNorm(x, block.norm2))));
    });
    const logits = apply(this.head, rmsNorm(x, this.finalNorm)) as tf.Tensor3D;
    return {logits, cache: cache == null ? null : {layers: updated, length: cache.length + n}};
  }

  /** An empty cache of `capacity` positions. */
  emptyCache(batch: number, capacity: number): KVCache {
    const shape = [batch, 2, capacity, this.config.kvHeads, this.headDim];
    return {layers: this.blocks.map(() => tf.zeros(shape)), length: 0};
  }

  /** Mean next-token cross-entropy of `tokens` [batch, seq + 1] (one causal pass). */
  loss(tokens: tf.Tensor2D): tf.Scalar {
    const [batch, seqPlusOne] = tokens.shape;
    const inputs = tf.slice(tokens, [0, 0], [batch, seqPlusOne - 1]);
    const targets = tf.slice(tokens, [0, 1], [batch, seqPlusOne - 1]);
    const {logits} = this.forward(inputs);
    return tf.losses.softmaxCrossEntropy(tf.oneHot(targets, this.config.vocabSize), logits) as tf.Scalar;
  }

  /** Disposes this model's own weights (a twin's attention layers only: the rest belongs to the original). */
  dispose(twin = false): void {
    for (const b of this.blocks) b.attention.dispose();
    if (twin) return;
    tf.dispose([this.embedding, this.finalNorm, ...this.blocks.flatMap((b) => [b.norm1, b.norm2])]);
    // The dense layers are applied eagerly (never connected into a model), so their weights are disposed directly.
    for (const layer of [this.head, ...this.blocks.flatMap((b) => [b.up, b.down])]) {
      for (const w of layer.weights) w.dispose();
    }
  }
}

/** A variable holding `initial` (which is then disposed: the variable keeps its own reference to the data). */
function variableOf(initial: tf.Tensor): tf.Variable {
  const v = tf.variable(initial);
  initial.dispose();
  return v;
}

function apply(layer: tf.layers.Layer, x: tf.Tensor): tf.Tensor {
  return layer.apply(x) as tf.Tensor;
}

function rmsNorm(x: tf.Tensor, gain: tf.Variable): tf.Tensor {
  return tf.mul(tf.mul(x, tf.rsqrt(tf.add(tf.mean(tf.square(x), -1, true), 1e-6))), gain);
}
