/**
 * The composite attention backward pass (FlashAttention-2 with tfjs ops). Nothing of size seq² is kept from the
 * forward pass: per key tile, for each query tile its transposed schedule lists, the scores are recomputed and
 *   P  = exp(t − lse)                 (0 where masked and on empty rows)
 *   dV += Pᵀ·dO,   dP = dO·Vᵀ,   dS = P∘(dP − D)·dt/ds   with D = rowsum(dO∘O) − dLse
 *   dK += scale·dSᵀ·Q,   dQ += scale·dS·K.
 * On masked tiles dS is set to exactly 0 where P = 0: a masked key's dP = dO·v is NaN when its v holds a NaN or an
 * infinity, and P·NaN would reach the dq and dk of rows that cannot see the key.
 * In grouped rows (see attention_composite_util.ts) a GQA group's query heads share a matrix, so dK and dV come out
 * summed over the group.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {KernelBackend, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';
import {planOf} from '../../src/kernel_names.js';
import {AttentionPlan} from '../../src/plan/plan.js';
import {
  assembleTiles, compositeTiling, consume, fromGroupedRows, groupedRowTiles, keyLengthsMask, queryTilesOfKeyTile,
  rowStatTiles, tileBounds, tileIsMasked, tileScores, wrapInput,
} from './attention_composite_util.js';

/** kernelFunc of the three composite grad kernels: inputs {q, k, v, output, lse, dOutput, dLse, keyLengths}. */
export const compositeAttentionBackward: KernelFunc = ({inputs, attrs, backend}) => {
  const plan = planOf(attrs);
  const names = ['q', 'k', 'v', 'output', 'lse', 'dOutput', 'dLse', 'keyLengths'] as const;
  return tf.tidy(() => {
    const [q, k, v, output, lse, dOutput, dLse, keyLengths] =
        names.map((n) => wrapInput(inputs[n] as TensorInfo, backend as KernelBackend));
    return attentionBackward(plan, {q, k, v, output, lse, dOutput, dLse, keyLengths});
  });
};

export interface AttentionBackwardInputs {
  q: tf.Tensor;
  k: tf.Tensor;
  v: tf.Tensor;
  output: tf.Tensor;
  lse: tf.Tensor;
  dOutput: tf.Tensor;
  dLse: tf.Tensor;
  keyLengths: tf.Tensor;
}

/** Per query tile, what the backward pass reads (grouped rows). A type alias: tf.tidy accepts it as a container. */
type QueryTileInputs = {
  /** scale · q, [batch, kvHeads, rows, D]. */
  scaledQueries: tf.Tensor4D;
  dOutput: tf.Tensor4D;
  /** lse with -Infinity (empty rows) replaced by +Infinity, so that exp(t − lse) is 0 there rather than NaN. */
  lse: tf.Tensor4D;
  /** D = rowsum(dO∘O) − dLse, [batch, kvHeads, rows, 1]. */
  delta: tf.Tensor4D;
};

/** [dq [batch, seqQ, heads, D], dk, dv [batch, seqK, kvHeads, D]] for `plan`. */
export function attentionBackward(plan: AttentionPlan, x: AttentionBackwardInputs): [tf.Tensor4D, tf.Tensor4D,
                                                                                     tf.Tensor4D] {
  const tiling = compositeTiling(plan);
  const {kvHeads} = plan, {blockQ} = tiling;
  // In a tidy of its own: only the per-tile inputs outlive it (not O, dLse or the raw lse tiles).
  const queryTiles: QueryTileInputs[] = tf.tidy(() => {
    const outputs = groupedRowTiles(x.output, kvHeads, blockQ), dLses = rowStatTiles(x.dLse, kvHeads, blockQ);
    const lses = rowStatTiles(x.lse, kvHeads, blockQ), dOutputs = groupedRowTiles(x.dOutput, kvHeads, blockQ);
    return groupedRowTiles(tf.mul(x.q, plan.scale), kvHeads, blockQ).map((scaledQueries, i) => ({
      scaledQueries,
      dOutput: dOutputs[i],
      lse: tf.where(tf.equal(lses[i], -Infinity), tf.fill(lses[i].shape, Infinity), lses[i]),
      delta: tf.sub(rowDot(dOutputs[i], outputs[i]), dLses[i]),
    }));
  });
  const keyTiles = groupedRowTiles(x.k, kvHeads, tiling.blockK);
  const valueTiles = groupedRowTiles(x.v, kvHeads, tiling.blockK);
  const keyLengths = plan.hasKeyLengths ? keyLengthsMask(x.keyLengths, plan.seqK) : null;

  // dS·K summed per query tile over the key tiles (scaled once at the end); null until a key tile contributes.
  const dqSums: Array<tf.Tensor4D | null> = queryTiles.map(() => null);
  const dks: tf.Tensor4D[] = [], dvs: tf.Tensor4D[] = [];
  keyTiles.forEach((keys, keyTile) => {
    let dk: tf.Tensor4D = tf.zerosLike(keys), dv: tf.Tensor4D = tf.zerosLike(keys);
    for (const {tile: queryTile, full} of queryTilesOfKeyTile(tiling.schedule, keyTile)) {
      const bounds = tileBounds(tiling, plan, queryTile, keyTile);
      const prevDk = dk, prevDv = dv, prevDq = dqSums[queryTile];
      // One tidy per tile pair, disposing the sums it replaces: memory stays one tile, not one per pair.
      [dk, dv, dqSums[queryTile]] = tf.tidy(() => {
        const t = queryTiles[queryTile];
        const {scores, softcapDerivative} =
            tileScores(plan, t.scaledQueries, keys, bounds, full, keyLengths, {softcapDerivative: true});
        // Tile-sized temporaries are disposed as soon as they are consumed (see consume).
        const probs = consume(scores, (s) => tf.exp(tf.sub(s, t.lse)));
        const dProbs = tf.matMul(t.dOutput, valueTiles[keyTile], false, true);
        let dScores = consume(dProbs, (dp) => tf.mul(probs, tf.sub(dp, t.delta)));
        if (softcapDerivative != null) {
          dScores = consume(dScores, (ds) => tf.mul(ds, softcapDerivative));
          softcapDerivative.dispose();
        }
        if (tileIsMasked(full, keyLengths)) {
          // Selected, not multiplied: see the header. Where P = 0 the selection takes P itself (+0), which saves a
          // tile of zeros; P = NaN (a NaN score) keeps its NaN.
          dScores = consume(dScores, (ds) => tf.where(tf.notEqual(probs, 0), ds, probs));
        }
        const dqTerm = tf.matMul(dScores, keys) as tf.Tensor4D;
        return [
          tf.add(prevDk, tf.matMul(dScores, t.scaledQueries, true, false)),
          tf.add(prevDv, tf.matMul(probs, t.dOutput, true, false)),
          prevDq == null ? dqTerm : tf.add(prevDq, dqTerm),
        ] as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D];
      });
      tf.dispose([prevDk, prevDv]);
      if (prevDq != null) prevDq.dispose();
    }
    dks.push(dk);
    dvs.push(dv);
  });
  const dqTiles = dqSums.map((sum, i) => sum ?? tf.zerosLike(queryTiles[i].scaledQueries));
  return [
    assembleTiles(dqTiles, (all) => fromGroupedRows(tf.mul(all, plan.scale), plan.groupSize)),
    assembleTiles(dks, (all) => fromGroupedRows(all, 1)),
    assembleTiles(dvs, (all) => fromGroupedRows(all, 1)),
  ];
}

/**
 * Row-wise dot products [..., rows, D]·[..., rows, D] → [..., rows, 1], as a batched matMul rather than mul + sum:
 * D = rowsum(dO∘O) is subtracted from dP = dO·Vᵀ, and where a row sees one key (O = v exactly) the two must cancel.
 * Computing both with matMul gives them the same accumulation (on cpu, bit-identical), instead of a few-ulp residue
 * that would show up as a spurious gradient.
 */
function rowDot(a: tf.Tensor4D, b: tf.Tensor4D): tf.Tensor4D {
  const [batch, heads, rows, dim] = a.shape;
  const n = batch * heads * rows;
  const dots = tf.matMul(tf.reshape(a, [n, 1, dim]), tf.reshape(b, [n, dim, 1]));
  return tf.reshape(dots, [batch, heads, rows, 1]);
}
