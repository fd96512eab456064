import * as tf from '@tensorflow/tfjs-core';
import {AttentionWithLse, CommonAttentionOptions, runAttention} from './run_attention.js';
import {checkBoolean, checkInputs, checkOptions, COMMON_OPTIONS} from './validate.js';

export interface FlashAttentionOptions extends CommonAttentionOptions {
  /** Query i sees key j iff j <= i + seqK - seqQ (bottom-right aligned, as FlashAttention >= 2.1). */
  causal?: boolean;
}

/**
 * Exact attention softmax(scale·q·kᵀ)·v in O(seq) memory.
 *
 * q: [batch, seqQ, heads, headDim]; k, v: [batch, seqK, kvHeads, headDim] with heads % kvHeads == 0 (GQA/MQA:
 * query head h reads kv head floor(h / (heads / kvHeads))). Returns [batch, seqQ, heads, headDim], or
 * {output, lse} with `returnLse: true`. A query row that sees no key outputs 0 (lse -Infinity).
 *
 * ```js
 * const out = flashAttention(q, k, v, {causal: true});
 * ```
 */
export function flashAttention(
    q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, options: FlashAttentionOptions&{returnLse: true}): AttentionWithLse;
export function flashAttention(
    q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, options?: FlashAttentionOptions&{returnLse?: false}): tf.Tensor4D;
/** With a `returnLse` known only at run time: the output or {output, lse}. */
export function flashAttention(
    q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, options?: FlashAttentionOptions): tf.Tensor4D|AttentionWithLse;
export function flashAttention(
    q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, options: FlashAttentionOptions = {}): tf.Tensor4D|AttentionWithLse {
  const shapes = checkInputs(q, k, v);
  checkOptions('flashAttention', options, [...COMMON_OPTIONS, 'causal'], null);
  const causal = checkBoolean('causal', options.causal);
  return runAttention('flash', q, k, v, shapes, options, {windowLeft: -1, windowRight: causal ? 0 : -1, layout: null});
}
