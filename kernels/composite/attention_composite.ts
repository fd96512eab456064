/**
 * The composite attention forward pass (FlashAttention-2 with tfjs ops): per query tile, walk the key tiles its
 * schedule lists with an online softmax — running row max m, running sum l, accumulator acc — so no tensor larger
 * than a [batch, heads, blockQ, blockK] scores tile ever exists. Serves FlashAttention, SlidingWindowAttention and
 * SparseAttention alike: they differ only in their plan.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {KernelBackend, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';
import {planOf} from '../../src/kernel_names.js';
import {AttentionPlan} from '../../src/plan/plan.js';
import {
  assembleTiles, compositeTiling, CompositeTiling, consume, fromGroupedRows, groupedRowTiles, keyLengthsVisibility,
  keyTilesOfQueryTile, rowStatFromGroupedRows, tileBounds, tileScores, wrapInput,
} from './attention_composite_util.js';

/** kernelFunc of the three composite forward kernels: inputs {q, k, v, keyLengths}, outputs [output, lse]. */
export const compositeAttentionForward: KernelFunc = ({inputs, attrs, backend}) => {
  const plan = planOf(attrs);
  const names = ['q', 'k', 'v', 'keyLengths'] as const;
  return tf.tidy(() => {
    // Wrappers are disposed by this tidy; outputs are returned as Tensors, which the engine uses as they are.
    const [q, k, v, keyLengths] = names.map((n) => wrapInput(inputs[n] as TensorInfo, backend as KernelBackend));
    return attentionForward(plan, q, k, v, keyLengths);
  });
};

/** [output [batch, seqQ, heads, D], lse [batch, heads, seqQ]] for `plan`. */
export function attentionForward(
    plan: AttentionPlan, q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, keyLengths: tf.Tensor): [tf.Tensor4D, tf.Tensor3D] {
  const tiling = compositeTiling(plan);
  const queryTiles = tf.tidy(() => groupedRowTiles(tf.mul(q, plan.scale), plan.kvHeads, tiling.blockQ));
  const keyTiles = groupedRowTiles(k, plan.kvHeads, tiling.blockK);
  const valueTiles = groupedRowTiles(v, plan.kvHeads, tiling.blockK);
  const keyVisibility = plan.hasKeyLengths ? keyLengthsVisibility(keyLengths, plan.seqK) : null;

  const outputs: tf.Tensor4D[] = [], lses: tf.Tensor4D[] = [];
  queryTiles.forEach((queries, queryTile) => {
    const [output, lse] = tf.tidy(() => queryTileForward(plan, tiling, queryTile, queries, keyTiles, valueTiles,
                                                        keyVisibility));
    outputs.push(output);
    lses.push(lse);
  });
  return [
    assembleTiles(outputs, (all) => fromGroupedRows(all, plan.groupSize)),
    assembleTiles(lses, (all) => rowStatFromGroupedRows(all, plan.groupSize)),
  ];
}

// A type alias, not an interface: tf.tidy accepts it as a TensorContainer.
type SoftmaxState = {
  /** Running row max of the scores seen so far, [batch, kvHeads, rows, 1]; -Infinity while a row saw no key. */
  max: tf.Tensor4D;
  /** Running Σ exp(t − max), [batch, kvHeads, rows, 1]. */
  sum: tf.Tensor4D;
  /** Running Σ exp(t − max)·v, [batch, kvHeads, rows, D]. */
  acc: tf.Tensor4D;
};

/** [output, lse] of one query tile in grouped rows: [batch, kvHeads, rows, D] and [batch, kvHeads, rows, 1]. */
function queryTileForward(
    plan: AttentionPlan, tiling: CompositeTiling, queryTile: number, queries: tf.Tensor4D, keyTiles: tf.Tensor4D[],
    valueTiles: tf.Tensor4D[], keyVisibility: tf.Tensor4D | null): [tf.Tensor4D, tf.Tensor4D] {
  let state: SoftmaxState | null = null;
  for (const {tile, full} of keyTilesOfQueryTile(tiling.schedule, queryTile)) {
    const bounds = tileBounds(tiling, plan, queryTile, tile);
    const previous: SoftmaxState | null = state;
    // Each step in its own tidy, disposing the previous state: memory stays one tile, not one per key tile.
    state = tf.tidy(() => {
      const {scores} = tileScores(plan, queries, keyTiles[tile], bounds, full, keyVisibility, false);
      return onlineSoftmaxStep(previous, scores, valueTiles[tile]);
    });
    if (previous != null) tf.dispose([previous.max, previous.sum, previous.acc]);
  }
  const [batch, kvHeads, rows, dim] = queries.shape;
  if (state == null) {
    // The schedule lists no key tile: every row of the tile is empty.
    return [tf.zeros([batch, kvHeads, rows, dim]), tf.fill([batch, kvHeads, rows, 1], -Infinity)];
  }
  // Empty rows have sum 0 and acc 0: a reciprocal of 0 there (not Infinity, which would give 0·Inf = NaN) makes their
  // output exactly 0, and lse = -Infinity + log(0) = -Infinity. The division is done on the row statistic only.
  const {acc, sum, max} = state;
  const inverseSum = tf.where(tf.equal(sum, 0), tf.zerosLike(sum), tf.reciprocal(sum));
  return [tf.mul(acc, inverseSum), tf.add(max, tf.log(sum))];
}

/**
 * Folds one scores tile into the running softmax state (all ops broadcast over the row statistics). Consumes
 * (disposes) `scores`.
 */
function onlineSoftmaxStep(previous: SoftmaxState | null, scores: tf.Tensor4D, values: tf.Tensor4D): SoftmaxState {
  const tileMax = tf.max<tf.Tensor4D>(scores, -1, true);
  const max = previous == null ? tileMax : tf.maximum<tf.Tensor4D>(previous.max, tileMax);
  // A row that has seen only masked keys keeps max = -Infinity; subtracting 0 instead keeps exp(-Inf - -Inf) = NaN
  // out: its probabilities exp(-Inf) = 0 and its rescale factor exp(-Inf) = 0.
  const shift = tf.where(tf.equal(max, -Infinity), tf.zerosLike(max), max);
  const probs = consume(scores, (s) => tf.exp(tf.sub(s, shift)));
  const tileSum = tf.sum<tf.Tensor4D>(probs, -1, true);
  const tileAcc = tf.matMul(probs, values) as tf.Tensor4D;
  if (previous == null) return {max, sum: tileSum, acc: tileAcc};
  const rescale = tf.exp(tf.sub(previous.max, shift));
  return {
    max,
    sum: tf.add(tf.mul(previous.sum, rescale), tileSum) as tf.Tensor4D,
    acc: tf.add(tf.mul(previous.acc, rescale), tileAcc) as tf.Tensor4D,
  };
}
