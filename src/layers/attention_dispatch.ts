/**
 * The one place where a layer's attention call picks its implementation: the library's kernels when nothing needs
 * the probability matrix, else an exact materialized path with Keras's semantics.
 *
 * Kernels run when there is no explicit attentionMask, no dropout in training, no returned scores, and any causal
 * mask is Keras's top-left one with seqQ == seqK (then equal to the kernels' bottom-right causal). Keras padding
 * masks map onto the kernels too: a key/value mask that is right padding with at least one valid key per row
 * becomes keyLengths, and a query mask is applied to the kernel output afterwards (a masked query row in Keras sees
 * no key, and Keras's softmax then gives it the mean of all values; see below).
 *
 * Switching to the kernels' coming options is local to `chooseKernelPath` and `runKernelPath`:
 *  - `mask` (bool [batch, seqQ, seqK]) → pass `kerasVisible` straight to the kernel instead of materializing;
 *  - `queryOffsets: 0` with `causal: true` → Keras's top-left causal for seqQ != seqK;
 *  - `dropout: {rate, seed}` → dropout on the probabilities in the kernel, in training.
 * Only `returnScores` has to keep the materialized path.
 *
 * Fully masked rows. Keras masks scores by adding -1e9 (keras.layers.Softmax, and ops.dot_product_attention uses
 * where(mask, scores, -1e9)), so a query row whose Keras mask is all false gets a uniform softmax: the mean of all
 * values. We reproduce that for rows emptied by Keras masks (attentionMask, useCausalMask, query/key/value masks).
 * Rows emptied by the layer's own structure (our `causal`, windows, sparse layouts, keyLengths) give 0, as the
 * kernels do.
 */
import * as tf from '@tensorflow/tfjs-core';
import {makePlan} from '../plan/plan.js';
import {ResolvedAttention} from './attention_spec.js';
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
  dropoutRate: number;
  seed?: number;
  training: boolean;
  returnScores: boolean;
}

export interface LayerAttentionResult {
  /** [batch, seqQ, heads, headDim] */
  output: tf.Tensor4D;
  /** [batch, heads, seqQ, seqK] probabilities (before dropout), when returnScores. */
  scores?: tf.Tensor4D;
}

/**
 * q [b, seqQ, heads, d], k and v [b, seqK, kvHeads, d] (kvHeads divides heads) → attention output with Keras's
 * masking semantics, on the kernels when `chooseKernelPath` allows it.
 */
export function runLayerAttention(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, opts: LayerAttentionOptions):
    LayerAttentionResult {
  const keyLengths = chooseKernelPath(q, k, opts);
  if (keyLengths !== false) return {output: runKernelPath(q, k, v, opts, keyLengths)};
  return runMaterializedPath(q, k, v, opts);
}

/**
 * keyLengths for the kernel path (undefined: no padding), or false when the call needs the materialized path. Reads
 * the key mask back to test that it is right padding; where that read is not possible synchronously (webgpu in
 * node) the materialized path runs.
 */
function chooseKernelPath(q: tf.Tensor4D, k: tf.Tensor4D, opts: LayerAttentionOptions): tf.Tensor1D | undefined |
    false {
  const [batch, seqQ] = q.shape;
  const seqK = k.shape[1];
  if (opts.attention.spec === 'naive' || opts.returnScores || opts.attentionMask != null) return false;
  if (opts.training && opts.dropoutRate > 0) return false;
  if (opts.causalTopLeft && seqQ !== seqK) return false;
  if (opts.keyMask == null) return opts.keyLengths;
  if (opts.keyLengths != null) return false;
  let values: Int32Array;
  try {
    values = tf.tidy(() => tf.cast(tf.notEqual(opts.keyMask!, 0), 'int32')).dataSync() as Int32Array;
  } catch {
    return false;
  }
  const lengths: number[] = [];
  for (let b = 0; b < batch; b++) {
    let length = 0;
    while (length < seqK && values[b * seqK + length] !== 0) length++;
    for (let j = length; j < seqK; j++) if (values[b * seqK + j] !== 0) return false;  // not right padding
    if (length === 0) return false;  // a fully masked batch row: Keras's uniform rows, materialized
    lengths.push(length);
  }
  return tf.tensor1d(lengths, 'int32');
}

function runKernelPath(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, opts: LayerAttentionOptions,
                       keyLengths?: tf.Tensor1D): tf.Tensor4D {
  return tf.tidy(() => {
    const causal = opts.attention.causal || opts.causalTopLeft === true;
    const output = opts.attention.run(q, k, v, opts.scale, opts.softcap, keyLengths, causal);
    if (opts.queryMask == null) return output;
    // Masked query rows see no key in Keras: the uniform softmax gives the mean of all values (per kv head).
    const [batch, seqQ, heads] = q.shape;
    const meanValue = expandHeads(tf.mean(v, 1, true) as tf.Tensor4D, heads);
    const rowVisible = tf.reshape(tf.notEqual(opts.queryMask, 0), [batch, seqQ, 1, 1]);
    return tf.where(rowVisible, output, tf.broadcastTo(meanValue, output.shape));
  });
}

/** [b, s, kvHeads, d] → [b, s, heads, d]: query head h reads kv head floor(h / (heads / kvHeads)). */
function expandHeads(x: tf.Tensor4D, heads: number): tf.Tensor4D {
  const [b, s, kvHeads, d] = x.shape;
  if (kvHeads === heads) return x;
  return tf.reshape(tf.tile(x, [1, 1, 1, heads / kvHeads]), [b, s, heads, d]) as tf.Tensor4D;
}

/**
 * Keras's Keras mask (attentionMask ∧ query mask ∧ key mask ∧ top-left causal) as bool [batch | 1, 1, seqQ, seqK],
 * or null when the call has none.
 */
function kerasVisibility(batch: number, seqQ: number, seqK: number, opts: LayerAttentionOptions): tf.Tensor | null {
  const parts: tf.Tensor[] = [];
  if (opts.attentionMask != null) {
    const m = opts.attentionMask;
    parts.push(tf.reshape(tf.notEqual(m, 0), [m.rank === 3 ? m.shape[0] : 1, 1, seqQ, seqK]));
  }
  if (opts.queryMask != null) parts.push(tf.reshape(tf.notEqual(opts.queryMask, 0), [batch, 1, seqQ, 1]));
  if (opts.keyMask != null) parts.push(tf.reshape(tf.notEqual(opts.keyMask, 0), [batch, 1, 1, seqK]));
  if (opts.causalTopLeft) {
    const i = tf.reshape(tf.range(0, seqQ, 1, 'int32'), [1, 1, seqQ, 1]);
    const j = tf.reshape(tf.range(0, seqK, 1, 'int32'), [1, 1, 1, seqK]);
    parts.push(tf.lessEqual(j, i));
  }
  if (parts.length === 0) return null;
  return parts.reduce((a, b) => tf.logicalAnd(a, b));
}

/**
 * The exact materialized path: scores, Keras's masking (-1e9, so Keras-masked rows are uniform), the layer's own
 * structure (rows it empties are 0), softmax, dropout on the probabilities in training, probabilities · v.
 */
function runMaterializedPath(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, opts: LayerAttentionOptions):
    LayerAttentionResult {
  let scores: tf.Tensor4D | undefined;
  const output = tf.tidy(() => {
    const [batch, seqQ, heads, headDim] = q.shape;
    const [, seqK, kvHeads] = k.shape;
    const plan = makePlan({
      kind: 'flash', batch, seqQ, seqK, heads, kvHeads, headDim, scale: opts.scale, softcap: opts.softcap,
      ...opts.attention.mask(seqQ, seqK, heads), hasKeyLengths: opts.keyLengths != null,
    });
    const structure = tf.notEqual(structuralVisibility(plan, opts.keyLengths), 0);  // [1|b, H|1, Tq, Tk]
    const keras = kerasVisibility(batch, seqQ, seqK, opts);                            // [1|b, 1, Tq, Tk]
    const visible = keras == null ? structure : tf.logicalAnd(structure, keras);
    const bias = tf.where(visible, tf.scalar(0), tf.scalar(KERAS_MASKED_SCORE));
    // Rows the structure empties give 0; rows only Keras masks empty stay uniform (Keras's answer).
    let rowScale: tf.Tensor = tf.any(visible, -1, true);
    if (keras != null) rowScale = tf.logicalOr(rowScale, tf.logicalNot(tf.any(keras, -1, true)));
    const probabilities = probabilitiesOf(q, k, opts.scale, opts.softcap, bias, tf.cast(rowScale, 'float32'));
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
