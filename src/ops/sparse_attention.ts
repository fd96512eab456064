import * as tf from '@tensorflow/tfjs-core';
import {BlockLayout} from '../patterns/block_layout.js';
import {AttentionWithLse, CommonAttentionOptions, runAttention} from './run_attention.js';
import {checkBoolean, checkInputs, checkLayout, checkOptions, COMMON_OPTIONS} from './validate.js';

export interface SparseAttentionOptions extends CommonAttentionOptions {
  /** Which (query block, key block) pairs attend; from patterns.* for these seqQ, seqK. */
  layout: BlockLayout;
  /** Also apply the bottom-right causal mask, element-wise. */
  causal?: boolean;
}

/**
 * Block-sparse attention: query block qb sees key block kb iff layout block (qb, kb) is on (for the head's layout
 * head). Cost is proportional to the number of on blocks.
 *
 * ```js
 * const layout = patterns.bigBird(seq, seq, 64, {windowBlocks: 3, globalBlocks: 1, randomBlocks: 2, seed: 1});
 * const out = sparseAttention(q, k, v, {layout, causal: true});
 * ```
 */
export function sparseAttention(
    q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, options: SparseAttentionOptions&{returnLse: true}): AttentionWithLse;
export function sparseAttention(
    q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, options: SparseAttentionOptions&{returnLse?: false}): tf.Tensor4D;
/** With a `returnLse` known only at run time: the output or {output, lse}. */
export function sparseAttention(
    q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, options: SparseAttentionOptions): tf.Tensor4D|AttentionWithLse;
export function sparseAttention(
    q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, options: SparseAttentionOptions): tf.Tensor4D|AttentionWithLse {
  const shapes = checkInputs(q, k, v);
  if (options === undefined) throw new Error('options.layout must be given (a BlockLayout from patterns.*)');
  checkOptions('sparseAttention', options, [...COMMON_OPTIONS, 'layout', 'causal'], 'layout');
  const layout = checkLayout(options.layout, shapes);
  const causal = checkBoolean('causal', options.causal);
  return runAttention('sparse', q, k, v, shapes, options, {windowLeft: -1, windowRight: causal ? 0 : -1, layout});
}
