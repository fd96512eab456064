/**
 * The composite attention backward pass (FlashAttention-2 with tfjs ops). Nothing of size seq² is kept from the
 * forward pass: per key tile, for each query tile its transposed schedule lists, the scores are recomputed and
 *   P  = exp(t − lse)                 (0 where masked and on empty rows)
 *   dV += Pᵀ·dO,   dP = dO·Vᵀ,   dS = P∘(dP − D)·dt/ds   with D = rowsum(dO∘O) − dLse
 *   dK += scale·dSᵀ·Q,   dQ += scale·dS·K.
 * Masked keys reach no row (NaN/Inf semantics, RELIABILITY.md). On masked tiles the mask is applied to t − lse (so P
 * is exactly 0 at a masked key even in a row whose lse is NaN), dS is set to exactly 0 at masked keys (a masked key's
 * dP = dO·v is NaN when its v holds a NaN or an infinity, and P·NaN would reach dq and dk), and on partial tiles dQ
 * is dS·K over K with its NaN/±Infinity elements zeroed, then NaN where the row sees such an element (a visible
 * non-finite k makes the row's dS NaN, or its P and dS 0 with a -Infinity score: the reference's 0·Infinity = NaN).
 * Keys past keyLengths[b] (the masked keys of full tiles) have their k zeroed once. Empty rows get dq = 0.
 * The mirror for q in dK = dSᵀ·Q: an empty row's q is zeroed there, partial tiles take dSᵀ·Q over Q with its NaN/±Infinity
 * elements zeroed (a row with such a q is NaN, so its dS already makes dk NaN at every key it sees) and, with softcap
 * (where that row stays finite and its dS is 0), NaN where the key sees such an element; keys past keyLengths[b] get
 * dk = 0.
 * In grouped rows (see attention_composite_util.ts) a GQA group's query heads share a matrix, so dK and dV come out
 * summed over the group.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {KernelBackend, TensorInfo} from '@tensorflow/tfjs-core';
import {AttentionPlan} from '../../src/plan/plan.js';
import type {AttentionGradInputs} from '../attention_kernel_func.js';
import {
  assembleTiles, compositeTiling, consume, fromGroupedRows, groupedRowTiles, keyLengthsMask, queryTilesOfKeyTile,
  outerAnd, rowStatTiles, splitNonFinite, splitsWithPrefix, tileBounds, tileScores, visibleHits, visibleRowHits,
  wrapInput, wrapOptionInputs, zeroPaddingKeys,
} from './attention_composite_util.js';
import {assembleBiasGrad, biasGradTile, dropoutScales, OptionTensors} from './option_terms_composite.js';

/** The composite backward executor: [dq [batch, seqQ, heads, D], dk, dv [batch, seqK, kvHeads, D]] for `plan`. */
export function runAttentionBackward(backend: KernelBackend, plan: AttentionPlan, inputs: AttentionGradInputs):
    TensorInfo[] {
  const names = ['q', 'k', 'v', 'output', 'lse', 'dOutput', 'dLse', 'keyLengths'] as const;
  return tf.tidy(() => {
    const [q, k, v, output, lse, dOutput, dLse, keyLengths] = names.map((n) => wrapInput(inputs[n], backend));
    return attentionBackward(plan, {q, k, v, output, lse, dOutput, dLse, keyLengths},
                             wrapOptionInputs(plan, inputs, backend));
  });
}

interface BackwardInputs {
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
  /**
   * scaledQueries with the empty rows zeroed, for dK = dSᵀ·Q: an empty row contributes nothing, and its dS = 0 times
   * an infinite q would be NaN. (Not for the scores: 0·Infinity there would make a NaN score of a -Infinity one.)
   */
  dkQueries: tf.Tensor4D;
  dOutput: tf.Tensor4D;
  /** lse with -Infinity (empty rows) replaced by +Infinity, so that exp(t − lse) is 0 there rather than NaN. */
  lse: tf.Tensor4D;
  /** Rows that saw no key (lse -Infinity), bool [batch, kvHeads, rows, 1]: their dq is 0. */
  empty: tf.Tensor4D;
  /** D = rowsum(dO∘O) − dLse, [batch, kvHeads, rows, 1]. */
  delta: tf.Tensor4D;
};

/** [dq, dk, dv], and dBias (the bias's shape) when the plan has a bias. */
function attentionBackward(plan: AttentionPlan, x: BackwardInputs, options: OptionTensors | null): tf.Tensor[] {
  const tiling = compositeTiling(plan);
  const {kvHeads} = plan, {blockQ} = tiling;
  // In a tidy of its own: only the per-tile inputs outlive it (not O, dLse or the raw lse tiles).
  const queryTiles: QueryTileInputs[] = tf.tidy(() => {
    const outputs = groupedRowTiles(x.output, kvHeads, blockQ), dLses = rowStatTiles(x.dLse, kvHeads, blockQ);
    const lses = rowStatTiles(x.lse, kvHeads, blockQ), dOutputs = groupedRowTiles(x.dOutput, kvHeads, blockQ);
    return groupedRowTiles(tf.mul(x.q, plan.scale), kvHeads, blockQ).map((scaledQueries, i) => {
      const empty = tf.equal(lses[i], -Infinity) as tf.Tensor4D;
      return {
        scaledQueries,
        dkQueries: zeroRows(scaledQueries, empty),
        dOutput: dOutputs[i],
        lse: tf.where(empty, tf.fill(lses[i].shape, Infinity), lses[i]),
        empty,
        delta: tf.sub(rowDot(dOutputs[i], outputs[i]), dLses[i]),
      };
    });
  });
  const keyLengths = plan.hasKeyLengths ? keyLengthsMask(x.keyLengths, plan.seqK) : null;
  // With keyLengths, k of keys past keyLengths[b] is set to 0 once (see zeroPaddingKeys).
  const keyTiles = tf.tidy(() => groupedRowTiles(keyLengths == null ? x.k : zeroPaddingKeys(x.k, keyLengths), kvHeads,
                                                 tiling.blockK));
  const valueTiles = groupedRowTiles(x.v, kvHeads, tiling.blockK);

  // dS·K summed per query tile over the key tiles (scaled once at the end); null until a key tile contributes.
  const dqSums: Array<tf.Tensor4D | null> = queryTiles.map(() => null);
  const dks: tf.Tensor4D[] = [], dvs: tf.Tensor4D[] = [];
  // With a bias: its gradient per (query tile, key tile), dS before the softcap and scale chain, summed over the
  // bias's broadcast axes (biasGradTile).
  const dBiasTiles: Array<Array<tf.Tensor4D | null>> | null = plan.bias == null ? null :
      queryTiles.map(() => keyTiles.map(() => null));
  const withPrefix = splitsWithPrefix(plan);
  keyTiles.forEach((keys, keyTile) => {
    let dk: tf.Tensor4D = tf.zerosLike(keys), dv: tf.Tensor4D = tf.zerosLike(keys);
    const visits = queryTilesOfKeyTile(plan, tiling.schedule, keyTile);
    // For dS·K on partial tiles, split once per key tile (see SplitValues).
    const split = visits.some((visit) => !visit.full) ? splitNonFinite(keys, withPrefix) : null;
    for (const {tile: queryTile, full} of visits) {
      const bounds = tileBounds(tiling, plan, queryTile, keyTile);
      const prevDk = dk, prevDv = dv, prevDq = dqSums[queryTile];
      // One tidy per tile pair, disposing the sums it replaces: memory stays one tile, not one per pair.
      let dBiasTile: tf.Tensor4D | null = null;
      [dk, dv, dqSums[queryTile]] = tf.tidy(() => {
        const t = queryTiles[queryTile];
        // Masked tiles (visible != null): the mask is applied to t − lse, not to t, so that P is exactly 0 at a masked
        // key whatever the row's lse (exp(-Infinity − NaN) would be NaN): as many ops as masking t.
        const {scores, softcapDerivative, visible} = tileScores(
            plan, t.scaledQueries, keys, bounds, full, keyLengths, options, {softcapDerivative: true, deferMask: true});
        // Tile-sized temporaries are disposed as soon as they are consumed (see consume).
        const probs = consume(scores, (s) => visible == null ? tf.exp(tf.sub(s, t.lse)) :
            tf.exp(tf.where(visible, tf.sub(s, t.lse), tf.fill(s.shape, -Infinity))));
        // Dropout: dP = (dO·Vᵀ)∘Z·keepScale, and dV takes (P∘Z·keepScale)ᵀ·dO.
        const dropout = plan.dropout == null ? null : dropoutScales(plan, bounds);
        let dProbs = tf.matMul(t.dOutput, valueTiles[keyTile], false, true) as tf.Tensor4D;
        if (dropout != null) dProbs = consume(dProbs, (dp) => tf.mul(dp, dropout));
        let dScores = consume(dProbs, (dp) => tf.mul(probs, tf.sub(dp, t.delta)));
        if (dBiasTiles != null) {
          // The gradient of the final score (= of the bias), 0 at masked keys; kept out of this tidy.
          dBiasTile = tf.keep(biasGradTile(
              plan, (visible == null ? dScores : tf.where(visible, dScores, probs)) as tf.Tensor4D));
        }
        if (softcapDerivative != null) {
          dScores = consume(dScores, (ds) => tf.mul(ds, softcapDerivative));
          softcapDerivative.dispose();
        }
        if (visible != null) {
          // Selected, not multiplied: see the header. At masked keys the selection takes P itself (+0 there), which
          // saves a tile of zeros.
          dScores = consume(dScores, (ds) => tf.where(visible, ds, probs));
        }
        let dqTerm: tf.Tensor4D, dkTerm: tf.Tensor4D;
        if (full) {
          dqTerm = tf.matMul(dScores, keys) as tf.Tensor4D;
          dkTerm = tf.matMul(dScores, t.dkQueries, true, false) as tf.Tensor4D;
        } else {
          const layoutMask = withPrefix ? undefined : visible;
          const queries = t.dkQueries;
          // A row whose q holds a NaN or an infinity is NaN unless softcap keeps it finite (with dS = 0 there).
          const querySplit = plan.softcap > 0 ? splitNonFinite(queries, withPrefix) : null;
          const finiteQueries = querySplit?.finite ?? tf.where(tf.isFinite(queries), queries, tf.zerosLike(queries));
          dkTerm = tf.matMul(dScores, finiteQueries, true, false) as tf.Tensor4D;
          if (querySplit != null) {
            const rowHits = visibleRowHits(plan, bounds, querySplit, layoutMask);
            dkTerm = tf.where(tf.greater(rowHits, 0), tf.fill(dkTerm.shape, NaN), dkTerm) as tf.Tensor4D;
          }
          // Layout tiles sum the codes with their mask (consumed); windows with prefix sums.
          const hits = visibleHits(plan, bounds, split!, layoutMask);
          const product = tf.matMul(dScores, split!.finite) as tf.Tensor4D;
          dqTerm = tf.where(tf.greater(hits, 0), tf.fill(product.shape, NaN), product) as tf.Tensor4D;
        }
        return [
          tf.add(prevDk, dkTerm),
          tf.add(prevDv, tf.matMul(dropout == null ? probs : tf.mul(probs, dropout), t.dOutput, true, false)),
          prevDq == null ? dqTerm : tf.add(prevDq, dqTerm),
        ] as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D];
      });
      tf.dispose([prevDk, prevDv]);
      if (prevDq != null) prevDq.dispose();
      if (dBiasTiles != null) dBiasTiles[queryTile][keyTile] = dBiasTile;
    }
    if (split != null) tf.dispose([split.finite, split.nonFinite, ...(split.prefix == null ? [] : [split.prefix])]);
    dks.push(dk);
    dvs.push(dv);
  });
  // An empty row's dS is 0, but 0·k is NaN at an infinite k whose score was -Infinity: its dq is set to 0.
  const dqTiles = dqSums.map((sum, i) => sum == null ? tf.zerosLike(queryTiles[i].scaledQueries) :
      consume(sum, (s) => zeroRows(s as tf.Tensor4D, queryTiles[i].empty)));
  const dBias = dBiasTiles == null ? [] : [assembleBiasGrad(plan, dBiasTiles, blockQ, tiling.blockK)];
  return [
    assembleTiles(dqTiles, (all) => fromGroupedRows(tf.mul(all, plan.scale), plan.groupSize)),
    // The dk of keys past keyLengths[b] is 0: full tiles multiply their dS = 0 by q, which may be NaN.
    assembleTiles(dks, (all) => keyLengths == null ? fromGroupedRows(all, 1) :
                                    zeroPaddingKeys(fromGroupedRows(all, 1), keyLengths) as tf.Tensor4D),
    assembleTiles(dvs, (all) => fromGroupedRows(all, 1)),
    ...dBias,
  ];
}

/** x [batch, kvHeads, rows, D] with the rows where `rows` [batch, kvHeads, rows, 1] is true set to 0. */
function zeroRows(x: tf.Tensor4D, rows: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => {
    // The condition reaches x's shape through outerAnd (tf.where would broadcast it with a Tile kernel: on cpu, a data
    // read; logicalAnd's broadcast measured 3x slower on wasm).
    const [batch, heads, n, dim] = x.shape;
    const r = tf.reshape(rows, [batch * heads, n, 1]) as tf.Tensor3D;
    const elements = tf.reshape(outerAnd(r, tf.ones([batch * heads, 1, dim], 'bool')), x.shape);
    return tf.where(elements, tf.zerosLike(x), x) as tf.Tensor4D;
  });
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
