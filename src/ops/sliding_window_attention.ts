import * as tf from '@tensorflow/tfjs-core';
import {AttentionWithLse, CommonAttentionOptions, runAttention} from './run_attention.js';
import {checkInputs, checkOptions, checkWindow, COMMON_OPTIONS} from './validate.js';

export interface SlidingWindowAttentionOptions extends CommonAttentionOptions {
  /**
   * [left, right] inclusive token counts (FlashAttention's window_size): with d = i + seqK - seqQ, query i sees key j
   * iff d - left <= j <= d + right; -1 is unbounded on that side. A number w means [w, 0].
   */
  windowSize: number | [number, number];
}

/**
 * Local attention: each query sees a band of keys around its (bottom-right aligned) diagonal. Cost O(seq·window).
 *
 * ```js
 * const out = slidingWindowAttention(q, k, v, {windowSize: 256});        // causal band of 257 keys
 * const both = slidingWindowAttention(q, k, v, {windowSize: [128, 128]}); // symmetric band
 * ```
 */
export function slidingWindowAttention(
    q: tf.Tensor, k: tf.Tensor, v: tf.Tensor,
    options: SlidingWindowAttentionOptions&{returnLse: true}): AttentionWithLse;
export function slidingWindowAttention(
    q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, options: SlidingWindowAttentionOptions&{returnLse?: false}): tf.Tensor4D;
/** With a `returnLse` known only at run time: the output or {output, lse}. */
export function slidingWindowAttention(
    q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, options: SlidingWindowAttentionOptions): tf.Tensor4D|AttentionWithLse;
export function slidingWindowAttention(
    q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, options: SlidingWindowAttentionOptions): tf.Tensor4D|AttentionWithLse {
  const shapes = checkInputs(q, k, v);
  if (options?.windowSize === undefined) {
    throw new Error('windowSize must be given (options.windowSize: w or [left, right])');
  }
  checkOptions('slidingWindowAttention', options, [...COMMON_OPTIONS, 'windowSize'], 'windowSize');
  const [windowLeft, windowRight] = checkWindow(options.windowSize);
  return runAttention('sliding', q, k, v, shapes, options, {windowLeft, windowRight, layout: null});
}
