/**
 * The composite attention forward pass (FlashAttention-2 with tfjs ops): per query tile, walk the key tiles its
 * schedule lists with an online softmax — running row max m, running sum l, accumulator acc — so no tensor larger
 * than a [batch, heads, blockQ, blockK] scores tile ever exists. Serves FlashAttention, SlidingWindowAttention and
 * SparseAttention alike: they differ only in their plan.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {KernelBackend, TensorInfo} from '@tensorflow/tfjs-core';
import {AttentionPlan} from '../../src/plan/plan.js';
import type {AttentionInputs} from '../attention_kernel_func.js';
import {
  assembleTiles, compositeTiling, CompositeTiling, consume, fromGroupedRows, groupedRowTiles, HIT_BASE, KeyLengthsMask,
  keyLengthsMask, keyTilesOfQueryTile, rowStatFromGroupedRows, splitNonFinite, SplitValues, tileBounds, tileScores,
  splitsWithPrefix, visibleHits, wrapInput, wrapOptionInputs, zeroPaddingKeys,
} from './attention_composite_util.js';
import {dropoutScales, OptionTensors} from './option_terms_composite.js';

/** The composite forward executor: [output [batch, seqQ, heads, D], lse [batch, heads, seqQ]] for `plan`. */
export function runAttentionForward(backend: KernelBackend, plan: AttentionPlan, inputs: AttentionInputs):
    TensorInfo[] {
  // Wrappers are disposed by this tidy; outputs are returned as Tensors, which the engine uses as they are.
  return tf.tidy(() => {
    const [q, k, v, keyLengths] = [inputs.q, inputs.k, inputs.v, inputs.keyLengths].map((t) => wrapInput(t, backend));
    return attentionForward(plan, q, k, v, keyLengths, wrapOptionInputs(plan, inputs, backend));
  });
}

function attentionForward(
    plan: AttentionPlan, q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, keyLengths: tf.Tensor,
    options: OptionTensors | null): [tf.Tensor4D, tf.Tensor3D] {
  const tiling = compositeTiling(plan);
  const queryTiles = tf.tidy(() => groupedRowTiles(tf.mul(q, plan.scale), plan.kvHeads, tiling.blockQ));
  const keyTiles = groupedRowTiles(k, plan.kvHeads, tiling.blockK);
  const keyLengthMask = plan.hasKeyLengths ? keyLengthsMask(keyLengths, plan.seqK) : null;
  const valueTiles: ValueTile[] = tf.tidy(() => {
    // With keyLengths, values of keys past keyLengths[b] are set to 0 once (see zeroPaddingKeys).
    // Value tiles that some partial (query tile, key tile) pair reads are split once, for all their query tiles.
    const partial = new Set<number>();
    queryTiles.forEach((_, queryTile) => {
      for (const {tile, full} of keyTilesOfQueryTile(plan, tiling.schedule, queryTile)) if (!full) partial.add(tile);
    });
    const maskedV = keyLengthMask == null ? v : zeroPaddingKeys(v, keyLengthMask);
    return groupedRowTiles(maskedV, plan.kvHeads, tiling.blockK).map((values, tile) => ({
      values,
      split: partial.has(tile) ? splitNonFinite(values, splitsWithPrefix(plan)) : undefined,
    }));
  });

  const outputs: tf.Tensor4D[] = [], lses: tf.Tensor4D[] = [];
  queryTiles.forEach((queries, queryTile) => {
    const [output, lse] = tf.tidy(() => queryTileForward(plan, tiling, queryTile, queries, keyTiles, valueTiles,
                                                        keyLengthMask, options));
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

/** What the (query tile, key tile) pairs of one key tile multiply their probabilities with. */
type ValueTile = {
  /** For full tiles: v (with the values of keys past keyLengths[b] set to 0 when the plan has keyLengths). */
  values: tf.Tensor4D;
  /** For partial tiles (present when some query tile has one with this key tile). */
  split?: SplitValues;
};

/**
 * P·V of a partial tile as if masked keys were skipped: P·finite, then ±Infinity or NaN where the row sees keys with
 * infinities in that column (`hits`, see visibleHits): NaN where both signs are hit (or a NaN), else that infinity,
 * as IEEE sums would give.
 */
function withInfinities(acc: tf.Tensor4D, hits: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => {
    const up = tf.greater(tf.mod(hits, HIT_BASE), 0), down = tf.greaterEqual(hits, HIT_BASE);
    const shape = acc.shape;
    const upValue = tf.where(down, tf.fill(shape, NaN), tf.fill(shape, Infinity));
    return tf.where(up, upValue, tf.where(down, tf.fill(shape, -Infinity), acc)) as tf.Tensor4D;
  });
}

/** [output, lse] of one query tile in grouped rows: [batch, kvHeads, rows, D] and [batch, kvHeads, rows, 1]. */
function queryTileForward(
    plan: AttentionPlan, tiling: CompositeTiling, queryTile: number, queries: tf.Tensor4D, keyTiles: tf.Tensor4D[],
    valueTiles: ValueTile[], keyLengths: KeyLengthsMask | null, options: OptionTensors | null):
    [tf.Tensor4D, tf.Tensor4D] {
  let state: SoftmaxState | null = null;
  for (const {tile, full} of keyTilesOfQueryTile(plan, tiling.schedule, queryTile)) {
    const bounds = tileBounds(tiling, plan, queryTile, tile);
    const previous: SoftmaxState | null = state;
    // Each step in its own tidy, disposing the previous state: memory stays one tile, not one per key tile.
    state = tf.tidy(() => {
      const {values, split} = valueTiles[tile];
      // Layout tiles keep their mask for visibleHits.
      const extras = {visible: !full && split!.prefix == null};
      const {scores, visible} = tileScores(plan, queries, keyTiles[tile], bounds, full, keyLengths, options, extras);
      // Dropout: P·V takes P∘Z·keepScale, the row sums take P (lse is that of every probability).
      const dropout = plan.dropout == null ? null : dropoutScales(plan, bounds);
      const dropped = (probs: tf.Tensor4D) => dropout == null ? probs : tf.mul(probs, dropout);
      if (full) return onlineSoftmaxStep(previous, scores, (probs) => tf.matMul(dropped(probs), values));
      const hits = visibleHits(plan, bounds, split!, visible);
      return onlineSoftmaxStep(
          previous, scores, (probs) => withInfinities(tf.matMul(dropped(probs), split!.finite), hits));
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
 * (disposes) `scores`. `probsTimesValues` is P·V, split on partial tiles. An infinite or NaN acc element carries
 * through the rescale (Infinity·rescale stays Infinity for rescale > 0) as it would in one long sum.
 */
function onlineSoftmaxStep(previous: SoftmaxState | null, scores: tf.Tensor4D,
                           probsTimesValues: (probs: tf.Tensor4D) => tf.Tensor4D): SoftmaxState {
  const tileMax = tf.max<tf.Tensor4D>(scores, -1, true);
  const max = previous == null ? tileMax : tf.maximum<tf.Tensor4D>(previous.max, tileMax);
  // A row that has seen only masked keys keeps max = -Infinity; subtracting 0 instead keeps exp(-Inf - -Inf) = NaN
  // out: its probabilities exp(-Inf) = 0 and its rescale factor exp(-Inf) = 0.
  const shift = tf.where(tf.equal(max, -Infinity), tf.zerosLike(max), max);
  const probs = consume(scores, (s) => tf.exp(tf.sub(s, shift)));
  const tileSum = tf.sum<tf.Tensor4D>(probs, -1, true);
  const tileAcc = probsTimesValues(probs as tf.Tensor4D);
  if (previous == null) return {max, sum: tileSum, acc: tileAcc};
  const rescale = tf.exp(tf.sub(previous.max, shift));
  return {
    max,
    sum: tf.add(tf.mul(previous.sum, rescale), tileSum) as tf.Tensor4D,
    acc: tf.add(tf.mul(previous.acc, rescale), tileAcc) as tf.Tensor4D,
  };
}
