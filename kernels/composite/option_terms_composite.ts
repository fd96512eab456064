/**
 * The plan's options (queryOffsets, mask, bias, ALiBi, segment ids, dropout) on the composite path, per tile and in
 * grouped rows [batch, kvHeads, rows * group, keys] (see attention_composite_util.ts), built from tfjs ops:
 *   - optionVisibility: the per-batch window (per-batch offsets), the mask, the segment ids and a −Infinity bias, as a
 *     bool tile that the tile's mask ANDs in;
 *   - scoreTerms: bias + ALiBi, added to the softcapped scores;
 *   - dropoutScales: the Philox keep mask (src/plan/philox.ts, computed on the host from the seed alone: no tensor is
 *     read back) times keepScale;
 *   - biasGradTile: a tile of dS summed over the bias's broadcast axes (dBias).
 * Only slices of one tile are ever materialized (the mask and bias keep their broadcast shapes), as for the scores.
 */
import * as tf from '@tensorflow/tfjs-core';
import {dropoutKeepRow} from '../../src/plan/philox.js';
import {AttentionPlan, PairOperand} from '../../src/plan/plan.js';
import type {TileBounds} from './attention_composite_util.js';

/** The option inputs of one call, reshaped once. A type alias: tf.tidy accepts it as a container. */
export type OptionTensors = {
  /** Per-batch query offsets clamped to [offsetMin, offsetMax], float32 [batch, 1, 1, 1] (plan.hasQueryOffsets). */
  offsets: tf.Tensor4D | null;
  /** The mask as [batch | 1, heads | 1, seqQ, seqK] (its own dtype). */
  mask: tf.Tensor4D | null;
  /** The bias as [batch | 1, heads | 1, seqQ, seqK]. */
  bias: tf.Tensor4D | null;
  /** ALiBi slopes as [batch | 1, kvHeads, 1, group]. */
  slopes: tf.Tensor4D | null;
  /** Segment ids int32 [batch, seqQ] and [batch, seqK]. */
  queryIds: tf.Tensor2D | null;
  keyIds: tf.Tensor2D | null;
};

/** Whether the plan has per-element conditions beyond the window and layout: then every tile is partial. */
export function hasOptionMask(plan: AttentionPlan): boolean {
  return plan.hasQueryOffsets || plan.mask != null || plan.bias != null || plan.hasSegments;
}

function pairAs4d(t: tf.Tensor, operand: PairOperand, plan: AttentionPlan): tf.Tensor4D {
  const lead = operand.shape.length === 4 ? operand.shape.slice(0, 2) :
      operand.shape.length === 3 ? [operand.shape[0], 1] : [1, 1];
  return tf.reshape(t, [lead[0], lead[1], plan.seqQ, plan.seqK]);
}

export function optionTensors(plan: AttentionPlan, inputs: {
  queryOffsets: tf.Tensor, mask: tf.Tensor, bias: tf.Tensor, alibiSlopes: tf.Tensor, queryIds: tf.Tensor,
  keyIds: tf.Tensor,
}): OptionTensors {
  return {
    offsets: plan.hasQueryOffsets ?
        tf.reshape(tf.clipByValue(tf.cast(inputs.queryOffsets, 'float32'), plan.offsetMin, plan.offsetMax),
                   [plan.batch, 1, 1, 1]) :
        null,
    mask: plan.mask == null ? null : pairAs4d(inputs.mask, plan.mask, plan),
    bias: plan.bias == null ? null : pairAs4d(inputs.bias, plan.bias, plan),
    slopes: plan.alibi == null ? null :
        tf.reshape(inputs.alibiSlopes, [plan.alibi.batchStride === 0 ? 1 : plan.batch, plan.kvHeads, 1,
                                        plan.groupSize]),
    queryIds: plan.hasSegments ? inputs.queryIds as tf.Tensor2D : null,
    keyIds: plan.hasSegments ? inputs.keyIds as tf.Tensor2D : null,
  };
}

/** A pair tile [x, heads | 1, rows, keys] in grouped rows: [x, kvHeads | 1, rows * group, keys]. */
function pairToGroupedRows(t: tf.Tensor4D, plan: AttentionPlan): tf.Tensor4D {
  const [x, heads, rows, keys] = t.shape, group = plan.groupSize;
  if (heads === plan.heads && heads > 1) {
    const split = tf.reshape(t, [x, plan.kvHeads, group, rows, keys]);
    return tf.reshape(tf.transpose(split, [0, 1, 3, 2, 4]), [x, plan.kvHeads, rows * group, keys]);
  }
  if (group === 1) return t;
  // One head for all: each query row repeats over the group's heads.
  const repeated = tf.tile(tf.reshape(t, [x, 1, rows, 1, keys]), [1, 1, 1, group, 1]);
  return tf.reshape(repeated, [x, 1, rows * group, keys]);
}

function pairTile(t: tf.Tensor4D, plan: AttentionPlan, {q0, q1, k0, k1}: TileBounds): tf.Tensor4D {
  return pairToGroupedRows(tf.slice(t, [0, 0, q0, k0], [-1, -1, q1 - q0, k1 - k0]), plan);
}

/** Query row of each grouped row of the tile, float32 [1, 1, rows * group, 1]. */
function rowPositions(plan: AttentionPlan, {q0, q1}: TileBounds): tf.Tensor4D {
  const group = plan.groupSize, rows = new Float32Array((q1 - q0) * group);
  for (let r = 0; r < rows.length; r++) rows[r] = q0 + Math.floor(r / group);
  return tf.tensor4d(rows, [1, 1, rows.length, 1]);
}

/** Key position pos_i = i + offset of each grouped row: [batch | 1, 1, rows * group, 1]. */
function queryPositions(plan: AttentionPlan, options: OptionTensors, bounds: TileBounds): tf.Tensor4D {
  const rows = rowPositions(plan, bounds);
  return options.offsets == null ? tf.add(rows, plan.diagonalOffset) : tf.add(rows, options.offsets);
}

function keyPositions({k0, k1}: TileBounds): tf.Tensor4D {
  return tf.reshape(tf.range(k0, k1, 1, 'float32'), [1, 1, 1, k1 - k0]);
}

/**
 * The options' element conditions on one tile, bool, broadcastable to [batch, kvHeads, rows * group, keys]; null when
 * the plan has none. Per-batch offsets: the window at each batch's own offset (the host mask has the union).
 */
export function optionVisibility(plan: AttentionPlan, options: OptionTensors, bounds: TileBounds): tf.Tensor | null {
  if (!hasOptionMask(plan)) return null;
  return tf.tidy(() => {
    const parts: tf.Tensor[] = [];
    if (options.offsets != null && (plan.windowLeft >= 0 || plan.windowRight >= 0)) {
      const pos = queryPositions(plan, options, bounds), keys = keyPositions(bounds);
      if (plan.windowLeft >= 0) parts.push(tf.greaterEqual(keys, tf.sub(pos, plan.windowLeft)));
      if (plan.windowRight >= 0) parts.push(tf.lessEqual(keys, tf.add(pos, plan.windowRight)));
    }
    if (options.mask != null) {
      // Visible iff truthy: non-zero and not NaN (NaN != 0 is true, so NaN is excluded explicitly).
      const m = tf.cast(pairTile(options.mask, plan, bounds), 'float32');
      parts.push(tf.logicalAnd(tf.notEqual(m, 0), tf.logicalNot(tf.isNaN(m))));
    }
    if (options.bias != null) parts.push(tf.notEqual(pairTile(options.bias, plan, bounds), -Infinity));
    if (options.queryIds != null) {
      const {q0, q1, k0, k1} = bounds, group = plan.groupSize, rows = q1 - q0;
      const q = tf.slice(options.queryIds, [0, q0], [-1, rows]);
      const qRows = tf.reshape(tf.tile(tf.reshape(q, [plan.batch, rows, 1]), [1, 1, group]),
                               [plan.batch, 1, rows * group, 1]);
      const kCols = tf.reshape(tf.slice(options.keyIds!, [0, k0], [-1, k1 - k0]), [plan.batch, 1, 1, k1 - k0]);
      parts.push(tf.equal(qRows, kCols));
    }
    if (parts.length === 0) return tf.ones([1, 1, 1, 1], 'bool');
    return parts.reduce((a, b) => tf.logicalAnd(a, b));
  });
}

/** bias + ALiBi (−slope·|pos_i − j|) of one tile, broadcastable to the scores tile; null without either. */
export function scoreTerms(plan: AttentionPlan, options: OptionTensors, bounds: TileBounds): tf.Tensor | null {
  if (options.bias == null && options.slopes == null) return null;
  return tf.tidy(() => {
    let terms: tf.Tensor | null = options.bias == null ? null : pairTile(options.bias, plan, bounds);
    if (options.slopes != null) {
      const {q0, q1} = bounds, rows = q1 - q0;
      const [slopeBatch, kvHeads, , group] = options.slopes.shape;
      // [batch | 1, kvHeads, rows * group, 1]: row r of a kv head's group is query head kvHead·group + r mod group.
      const slopes = tf.reshape(tf.tile(options.slopes, [1, 1, rows, 1]), [slopeBatch, kvHeads, rows * group, 1]);
      const distance = tf.abs(tf.sub(queryPositions(plan, options, bounds), keyPositions(bounds)));
      const alibi = tf.neg(tf.mul(slopes, distance));
      terms = terms == null ? alibi : tf.add(terms, alibi);
    }
    return terms!;
  });
}

/**
 * Dropout of one tile: keepScale where Philox keeps (b, h, i, j), 0 where it drops, float32 [batch, kvHeads,
 * rows * group, keys]. Computed on the host from the seed (the counter is (floor(j/4), i, h, b)).
 */
export function dropoutScales(plan: AttentionPlan, {q0, q1, k0, k1}: TileBounds): tf.Tensor4D {
  const d = plan.dropout!, group = plan.groupSize, rows = (q1 - q0) * group, keys = k1 - k0;
  const values = new Float32Array(plan.batch * plan.kvHeads * rows * keys);
  const keep = new Uint8Array(keys);
  for (let b = 0; b < plan.batch; b++) {
    for (let kvHead = 0; kvHead < plan.kvHeads; kvHead++) {
      for (let r = 0; r < rows; r++) {
        const h = kvHead * group + (r % group), i = q0 + Math.floor(r / group);
        dropoutKeepRow(d, b, h, i, k0, k1, keep);
        const o = ((b * plan.kvHeads + kvHead) * rows + r) * keys;
        for (let c = 0; c < keys; c++) values[o + c] = keep[c] === 1 ? d.keepScale : 0;
      }
    }
  }
  return tf.tensor4d(values, [plan.batch, plan.kvHeads, rows, keys]);
}

/**
 * dS of one tile in grouped rows [batch, kvHeads, rows * group, keys] → [batch | 1, heads | 1, rows, keys]: back to
 * (batch, head, row) order, summed over the bias's broadcast axes.
 */
export function biasGradTile(plan: AttentionPlan, dt: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => {
    const [batch, kvHeads, groupedRows, keys] = dt.shape, group = plan.groupSize, rows = groupedRows / group;
    const split = tf.reshape(dt, [batch, kvHeads, rows, group, keys]);
    let grad = tf.reshape(tf.transpose(split, [0, 1, 3, 2, 4]), [batch, plan.heads, rows, keys]) as tf.Tensor4D;
    const bias = plan.bias!;
    if (bias.batchStride === 0) grad = tf.sum(grad, 0, true);
    if (bias.headStride === 0) grad = tf.sum(grad, 1, true);
    return grad;
  });
}

/**
 * Assembles dBias from its tiles (tiles[queryTile][keyTile], null where the pair was never visited: zeros), in the
 * bias's own shape. Disposes the tiles.
 */
export function assembleBiasGrad(plan: AttentionPlan, tiles: Array<Array<tf.Tensor4D | null>>, blockQ: number,
                                 blockK: number): tf.Tensor {
  const bias = plan.bias!;
  const result = tf.tidy(() => {
    const batch = bias.batchStride === 0 ? 1 : plan.batch, heads = bias.headStride === 0 ? 1 : plan.heads;
    const rows = tiles.map((row, qt) => {
      const q0 = qt * blockQ, height = Math.min(blockQ, plan.seqQ - q0);
      const parts = row.map((t, kt) => t ?? tf.zeros([batch, heads, height, Math.min(blockK, plan.seqK - kt * blockK)]));
      return parts.length === 1 ? parts[0] : tf.concat(parts, 3);
    });
    const all = rows.length === 1 ? rows[0] : tf.concat(rows, 2);
    return tf.reshape(all, [...bias.shape]);
  });
  tiles.forEach((row) => tf.dispose(row.filter((t): t is tf.Tensor4D => t != null)));
  return result;
}
