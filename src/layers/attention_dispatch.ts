/**
 * The one place where a layer's attention call picks its implementation: the library's kernels for everything but
 * returned scores, else an exact materialized path with the same semantics.
 *
 * On the kernels, Keras's arguments become the ops' options:
 *  - useCausalMask (top-left: query i sees key j <= i) → `causal: true` (with `queryOffsets: 0`, or
 *    min(0, seqK − seqQ) when the layer is causal too, for the flash spec when seqQ != seqK);
 *  - attentionMask, the query mask and the value/key masks (Keras's `_compute_attention_mask`) → one bool `mask`
 *    [batch | 1, 1, seqQ, seqK] (top-left causal is folded into it when one of them is present);
 *  - dropout in training → `dropout: {rate, seed}` on the probabilities inside the kernel, a fresh seed per call
 *    (the layer's `seed` + its call count, or a random one).
 * Only `returnScores` (Keras's return_attention_scores), and the layer's 'naive' spec, materialize the
 * [batch, heads, seqQ, seqK] matrix.
 *
 * Cached decoding (`queryOffsets`, keras_hub's CachedMultiHeadAttention): the queries are new tokens whose keys sit at
 * rows queryOffsets[b] … of a KV cache. Query row i is at key position queryOffsets[b] + i, so causal (the layer's or
 * useCausalMask: with positions known, both alignments mean the same) is j <= queryOffsets[b] + i and windows are
 * measured from there; the kernels take it as their queryOffsets option (flash_attn_with_kvcache's cache_seqlens with
 * keyLengths), no mask is materialized. Keras masks still join as the bool mask; a row they leave empty is opened to
 * the keys the structure (causal, keyLengths) lets it see, not to the unwritten rows of the cache.
 *
 * Fully masked rows. Keras masks scores by adding -1e9 (keras.layers.Softmax; ops.dot_product_attention uses
 * where(mask, scores, large negative)), so a query row that Keras's masks leave without any key gets a uniform
 * softmax, i.e. the mean of the values — where the kernels give 0. Such rows are found on the device
 * (`rowEmpty = !any(mask, -1)`, no readback), their mask row is opened to every key and their query row is zeroed:
 * all their scores are then 0 and the kernel's softmax is uniform over the keys, Keras's answer (dropout applies to
 * it as in Keras). Rows emptied by the layer's own structure (our `causal`, windows, sparse layouts, keyLengths)
 * give 0, as the kernels do, and a Keras-empty row stays within that structure.
 */
import * as tf from '@tensorflow/tfjs-core';
import {makePlan} from '../plan/plan.js';
import type {AttentionPrecision} from '../plan/precision.js';
import {KernelExtras, ResolvedAttention} from './attention_spec.js';
import {structuralVisibility} from './naive_attention.js';

/** The large negative number Keras adds to masked scores (float32). */
export const KERAS_MASKED_SCORE = -1e9;

export interface LayerAttentionOptions {
  scale: number;
  softcap: number;
  /** The layer's own attention (flash / sliding / sparse / naive) and its `causal` (bottom-right) flag. */
  attention: ResolvedAttention;
  /** Keras's attentionMask: bool-like [batch | 1, seqQ, seqK], true = may attend. */
  attentionMask?: tf.Tensor;
  /** Keras mask of the query, bool-like [batch, seqQ]. */
  queryMask?: tf.Tensor;
  /** Keras masks of value and key ANDed, bool-like [batch, seqK]. */
  keyMask?: tf.Tensor;
  /** Keras's useCausalMask: query i sees key j iff j <= i (top-left aligned). */
  causalTopLeft?: boolean;
  /** Our keyLengths: keys at positions >= keyLengths[b] are masked (structure: empty rows give 0). */
  keyLengths?: tf.Tensor1D;
  /**
   * Cached decoding: query row i of batch b sits at key position queryOffsets[b] + i (a number for every batch or
   * int32 [batch]); causal then means j <= queryOffsets[b] + i. Not with sparse specs (their layouts are per block).
   */
  queryOffsets?: number | tf.Tensor1D;
  dropoutRate: number;
  /** Seed of this call's dropout (integer); a random one when absent. */
  seed?: number;
  training: boolean;
  returnScores: boolean;
  /** The ops' precision option (absent: the ATTENTION_PRECISION flag); the materialized path runs fp32. */
  precision?: AttentionPrecision;
}

export interface LayerAttentionResult {
  /** [batch, seqQ, heads, headDim] */
  output: tf.Tensor4D;
  /** [batch, heads, seqQ, seqK] probabilities (before dropout), when returnScores. */
  scores?: tf.Tensor4D;
}

/**
 * q [b, seqQ, heads, d], k and v [b, seqK, kvHeads, d] (kvHeads divides heads) → attention output with Keras's
 * masking semantics: on the kernels unless the scores are returned or the spec is 'naive'.
 */
export function runLayerAttention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, opts: LayerAttentionOptions):
    LayerAttentionResult {
  if (opts.attention.spec === 'naive' || opts.returnScores) return runMaterializedPath(q, k, v, opts);
  return {output: runKernelPath(q, k, v, opts)};
}

/** Keras's masks as the kernels take them: the query with Keras-empty rows zeroed, and the opened bool mask. */
interface KerasMasking {
  q: tf.Tensor4D;
  /** bool [batch | 1, 1, seqQ, seqK], or null when no Keras mask tensor is needed. */
  mask: tf.Tensor | null;
}

/**
 * Keras's visibility (attentionMask ∧ query mask ∧ key mask ∧, when `causalInMask`, top-left causal) with the rows it
 * leaves empty opened to every key and their queries zeroed (uniform softmax, see the file comment).
 */
function kerasMasking(q: tf.Tensor4D, seqK: number, opts: LayerAttentionOptions, causalInMask: boolean):
    KerasMasking {
  const [batch, seqQ] = q.shape;
  const parts: tf.Tensor[] = [];
  if (opts.attentionMask != null) {
    const m = opts.attentionMask;
    parts.push(tf.reshape(tf.notEqual(m, 0), [m.rank === 3 ? m.shape[0] : 1, 1, seqQ, seqK]));
  }
  if (opts.queryMask != null) parts.push(tf.reshape(tf.notEqual(opts.queryMask, 0), [batch, 1, seqQ, 1]));
  if (opts.keyMask != null) parts.push(tf.reshape(tf.notEqual(opts.keyMask, 0), [batch, 1, 1, seqK]));
  if (causalInMask && opts.causalTopLeft) {
    const i = tf.reshape(tf.range(0, seqQ, 1, 'int32'), [1, 1, seqQ, 1]);
    const j = tf.reshape(tf.range(0, seqK, 1, 'int32'), [1, 1, 1, seqK]);
    parts.push(tf.lessEqual(j, i));
  }
  if (parts.length === 0) return {q, mask: null};
  const rows = Math.max(...parts.map((part) => part.shape[0]));
  const visible = tf.broadcastTo(parts.reduce((a, b) => tf.logicalAnd(a, b)), [rows, 1, seqQ, seqK]);
  const rowEmpty = tf.logicalNot(tf.any(visible, -1, true));                     // [batch | 1, 1, seqQ, 1]
  const rowKept = tf.cast(tf.reshape(tf.logicalNot(rowEmpty), [rows, seqQ, 1, 1]), q.dtype);
  const zeroed = tf.mul(q, rowKept) as tf.Tensor4D;
  // Only a query mask: every opened row sees every key, so no mask is needed at all.
  const queryMaskOnly = opts.attentionMask == null && opts.keyMask == null && !(causalInMask && opts.causalTopLeft);
  const mask = queryMaskOnly ? null : tf.logicalOr(visible, rowEmpty);
  return {q: zeroed, mask};
}

/** This call's dropout seed: the given one folded into the ops' [0, 2^53), else a random one. */
function dropoutSeed(seed: number | undefined): number {
  const range = 2 ** 53;
  if (seed == null) return Math.floor(Math.random() * range);
  const folded = seed % range;  // (seed % range + range) % range would round odd seeds above 2^53
  return folded < 0 ? folded + range : folded;
}

function runKernelPath(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, opts: LayerAttentionOptions): tf.Tensor4D {
  return tf.tidy(() => {
    const [, seqQ] = q.shape;
    const seqK = k.shape[1];
    const hasKerasTensors = opts.attentionMask != null || opts.queryMask != null || opts.keyMask != null;
    const extras: KernelExtras = opts.precision == null ? {} : {precision: opts.precision};
    let causal = opts.attention.causal;
    if (opts.queryOffsets != null) {
      // Cached decoding: positions are known, causal is j <= queryOffsets + i on the kernels (no mask tensor).
      checkOffsetsSpec(opts);
      extras.queryOffsets = opts.queryOffsets;
      causal = causal || opts.causalTopLeft === true;
      const masking = kerasMasking(q, seqK, opts, false);
      if (masking.mask != null) extras.mask = masking.mask;
      if (opts.training && opts.dropoutRate > 0) {
        extras.dropout = {rate: opts.dropoutRate, seed: dropoutSeed(opts.seed)};
      }
      return opts.attention.run(masking.q, k, v, opts.scale, opts.softcap, opts.keyLengths, causal, extras);
    }
    // Top-left causal as the kernels' causal flag, unless a Keras mask tensor is there (then it joins that tensor:
    // a Keras-empty row is opened to all keys, which the causal flag would cut) or the spec's own window / layout
    // would move with queryOffsets.
    let causalInMask = false;
    if (opts.causalTopLeft && !hasKerasTensors && seqQ === seqK) {
      causal = true;
    } else if (opts.causalTopLeft && !hasKerasTensors && opts.attention.spec === 'flash') {
      extras.queryOffsets = opts.attention.causal ? Math.min(0, seqK - seqQ) : 0;
      causal = true;
    } else {
      causalInMask = opts.causalTopLeft === true;
    }
    const masking = kerasMasking(q, seqK, opts, causalInMask);
    if (masking.mask != null) extras.mask = masking.mask;
    if (opts.training && opts.dropoutRate > 0) extras.dropout = {rate: opts.dropoutRate, seed: dropoutSeed(opts.seed)};
    return opts.attention.run(masking.q, k, v, opts.scale, opts.softcap, opts.keyLengths, causal, extras);
  });
}

/** Cached decoding runs the dense and sliding specs (a block layout has no meaning for a query offset). */
function checkOffsetsSpec(opts: LayerAttentionOptions): void {
  const spec = opts.attention.spec;
  if (typeof spec === 'object' && spec.type === 'sparse') {
    throw new Error('a KV cache (cache with cacheUpdateIndex) does not support the sparse attention spec: use ' +
                    "'flash', 'naive' or {type: 'sliding'}");
  }
}

/**
 * The kernels' structure with query offsets, as a bool tensor [b, 1, seqQ, seqK]: query i of batch b at position
 * p = queryOffsets[b] + i sees key j iff j < keyLengths[b], and, when causal, j <= p, and within the sliding window
 * [p − left, p + right].
 */
function offsetVisibility(batch: number, seqQ: number, seqK: number, opts: LayerAttentionOptions): tf.Tensor {
  checkOffsetsSpec(opts);
  const causal = opts.attention.causal || opts.causalTopLeft === true;
  const {windowLeft, windowRight} = opts.attention.mask(seqQ, seqK, 1, causal);
  const offsets = typeof opts.queryOffsets === 'number' ? tf.fill([batch], opts.queryOffsets, 'int32') :
                                                           opts.queryOffsets!;
  const position = tf.add(tf.reshape(offsets, [batch, 1, 1, 1]),
                          tf.reshape(tf.range(0, seqQ, 1, 'int32'), [1, 1, seqQ, 1]));  // [b, 1, Tq, 1]
  const j = tf.reshape(tf.range(0, seqK, 1, 'int32'), [1, 1, 1, seqK]);
  let visible: tf.Tensor = tf.cast(tf.ones([batch, 1, seqQ, seqK]), 'bool');
  if (windowRight >= 0) visible = tf.logicalAnd(visible, tf.lessEqual(j, tf.add(position, tf.scalar(windowRight, 'int32'))));
  if (windowLeft >= 0) visible = tf.logicalAnd(visible, tf.greaterEqual(j, tf.sub(position, tf.scalar(windowLeft, 'int32'))));
  if (opts.keyLengths != null) {
    visible = tf.logicalAnd(visible, tf.less(j, tf.reshape(opts.keyLengths, [batch, 1, 1, 1])));
  }
  return visible;
}

/** [b, s, kvHeads, d] → [b, s, heads, d]: query head h reads kv head floor(h / (heads / kvHeads)). */
function expandHeads(x: tf.Tensor4D, heads: number): tf.Tensor4D {
  const [b, s, kvHeads, d] = x.shape;
  if (kvHeads === heads) return x;
  return tf.reshape(tf.tile(x, [1, 1, 1, heads / kvHeads]), [b, s, heads, d]) as tf.Tensor4D;
}

/**
 * The exact materialized path, the kernels' semantics in tfjs ops: scores of the Keras-masked query (empty rows
 * zeroed and opened, as on the kernels), the layer's own structure ∧ Keras's visibility as -1e9 (rows it empties are
 * 0), softmax, dropout on the probabilities in training (tf.dropout: same rate, not the kernels' Philox stream),
 * probabilities · v. Returns the probabilities before dropout as the scores, as Keras does.
 */
function runMaterializedPath(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, opts: LayerAttentionOptions):
    LayerAttentionResult {
  let scores: tf.Tensor4D | undefined;
  const output = tf.tidy(() => {
    const [batch, seqQ, heads, headDim] = q.shape;
    const [, seqK, kvHeads] = k.shape;
    let structure: tf.Tensor;  // [1|b, H|1, Tq, Tk]
    if (opts.queryOffsets != null) {
      structure = offsetVisibility(batch, seqQ, seqK, opts);
    } else {
      const plan = makePlan({
        kind: 'flash', batch, seqQ, seqK, heads, kvHeads, headDim, scale: opts.scale, softcap: opts.softcap,
        ...opts.attention.mask(seqQ, seqK, heads), hasKeyLengths: opts.keyLengths != null,
      });
      structure = tf.notEqual(structuralVisibility(plan, opts.keyLengths), 0);
    }
    const masking = kerasMasking(q, seqK, opts, opts.queryOffsets == null);  // mask [1|b, 1, Tq, Tk]
    const visible = masking.mask == null ? structure : tf.logicalAnd(structure, masking.mask);
    const bias = tf.where(visible, tf.scalar(0), tf.scalar(KERAS_MASKED_SCORE));
    const rowScale = tf.cast(tf.any(visible, -1, true), 'float32');  // rows the structure empties give 0
    const probabilities = probabilitiesOf(masking.q, k, opts.scale, opts.softcap, bias, rowScale);
    if (opts.returnScores) scores = tf.keep(probabilities);
    const dropped = opts.training && opts.dropoutRate > 0 ?
        tf.dropout(probabilities, opts.dropoutRate, undefined, opts.seed) : probabilities;
    const vh = tf.transpose(expandHeads(v, heads), [0, 2, 1, 3]);
    return tf.transpose(tf.matMul(dropped, vh), [0, 2, 1, 3]) as tf.Tensor4D;
  });
  return {output, scores};
}

/** softmax(scale·q·kᵀ (softcapped) + bias) · rowScale as [b, heads, seqQ, seqK]. */
function probabilitiesOf(q: tf.Tensor4D, k: tf.Tensor4D, scale: number, softcap: number, bias: tf.Tensor,
                         rowScale: tf.Tensor): tf.Tensor4D {
  return tf.tidy(() => {
    const heads = q.shape[2];
    const qh = tf.transpose(q, [0, 2, 1, 3]);
    const kh = tf.transpose(expandHeads(k, heads), [0, 2, 1, 3]);
    let scores = tf.mul(tf.matMul(qh, kh, false, true), scale);
    if (softcap > 0) scores = tf.mul(tf.tanh(tf.div(scores, softcap)), softcap);
    return tf.mul(tf.softmax(tf.add(scores, bias)), rowScale) as tf.Tensor4D;
  });
}
