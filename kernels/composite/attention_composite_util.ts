/**
 * Pieces shared by the composite attention executors (forward: attention_composite.ts, backward:
 * attention_grad_composite.ts), built only from public tfjs ops so they run on any backend.
 *
 * Layout: the executors work on "grouped rows" [batch, kvHeads, seq * groupSize, headDim], where row
 * `i * groupSize + g` holds query i of query head `kvHead * groupSize + g`. Every query head that shares a kv head
 * then sits in one matrix, so one batched matMul against that kv head's keys serves the whole GQA group, and
 * Pᵀ·dO / dSᵀ·Q sum over the group for free.
 *
 * Tiles: queries are walked in tiles of blockQ rows and keys in tiles of blockK, following the plan's block schedule
 * (tiles absent from it are never computed; "full" tiles get no element mask). A scores tile holds
 * batch * heads * blockQ * blockK floats, bounded by TILE_ELEMENT_BUDGET: memory is O(seq · tile), never seq².
 */
import * as tf from '@tensorflow/tfjs-core';
import type {KernelBackend, TensorInfo} from '@tensorflow/tfjs-core';
import {layoutBlockOn} from '../../src/patterns/block_layout.js';
import {AttentionPlan, layoutHead, windowKeyRange} from '../../src/plan/plan.js';
import {BlockSchedule, forEachTileInCol, forEachTileInRow, getSchedule} from '../../src/plan/schedule.js';
import type {SupportedFeatures} from '../attention_kernel_func.js';
import {hasOptionMask, OptionTensors, optionTensors, optionVisibility, scoreTerms} from './option_terms_composite.js';

/** The options (PlanFeature) the composite kernels execute, forward and backward. */
export const SUPPORTED: SupportedFeatures = ['queryOffsets', 'mask', 'bias', 'alibi', 'segments', 'dropout'];

/**
 * Whether value/key splits of partial tiles take prefix sums (rows see one contiguous window of keys) rather than the
 * tile's visibility matrix (layouts, and the options' element conditions).
 */
export function splitsWithPrefix(plan: AttentionPlan): boolean {
  return plan.layout == null && !hasOptionMask(plan);
}

/** Keys per key tile (fewer when seqK is shorter, so that a short sequence is one full tile). */
export const COMPOSITE_BLOCK_K = 256;
/** Largest query tile; smaller when batch * heads is large (see TILE_ELEMENT_BUDGET). */
export const COMPOSITE_MAX_BLOCK_Q = 256;
const COMPOSITE_MIN_BLOCK_Q = 16;
/** Elements of one [batch, heads, blockQ, blockK] scores tile: 4M floats = 16 MiB per temporary. */
const TILE_ELEMENT_BUDGET = 1 << 22;

export interface CompositeTiling {
  blockQ: number;
  blockK: number;
  schedule: BlockSchedule;
}

/** Tile sizes for a plan and the plan's schedule at those sizes (cached by getSchedule). */
export function compositeTiling(plan: AttentionPlan): CompositeTiling {
  const blockK = Math.min(COMPOSITE_BLOCK_K, plan.seqK);
  const rowsInBudget = TILE_ELEMENT_BUDGET / (plan.batch * plan.heads * blockK);
  const pow2 = 2 ** Math.floor(Math.log2(Math.max(1, rowsInBudget)));
  const blockQ = Math.min(plan.seqQ, Math.max(COMPOSITE_MIN_BLOCK_Q, Math.min(COMPOSITE_MAX_BLOCK_Q, pow2)));
  return {blockQ, blockK, schedule: getSchedule(plan, blockQ, blockK)};
}

/**
 * A kernel input as a Tensor sharing its data. engine.makeTensorFromTensorInfo adds no backend reference, yet
 * disposing the wrapper removes one; take one first (as tfjs's Identity kernel does) so that disposing the wrapper,
 * e.g. at the end of the executor's tidy, leaves the caller's tensor intact.
 */
export function wrapInput(info: TensorInfo, backend: KernelBackend): tf.Tensor {
  backend.incRef(info.dataId);
  return tf.engine().makeTensorFromTensorInfo(info, backend);
}

/**
 * The option inputs the plan uses, wrapped (wrapInput) and reshaped for the tiles (optionTensors); null when the plan
 * has none of them.
 */
export function wrapOptionInputs(
    plan: AttentionPlan, inputs: Record<'queryOffsets' | 'mask' | 'bias' | 'alibiSlopes' | 'queryIds' | 'keyIds',
                                        TensorInfo>, backend: KernelBackend): OptionTensors | null {
  if (!plan.hasQueryOffsets && plan.mask == null && plan.bias == null && plan.alibi == null && !plan.hasSegments) {
    return null;
  }
  const wrap = (used: boolean, t: TensorInfo) => used ? wrapInput(t, backend) : tf.zeros([1]);
  return optionTensors(plan, {
    queryOffsets: wrap(plan.hasQueryOffsets, inputs.queryOffsets), mask: wrap(plan.mask != null, inputs.mask),
    bias: wrap(plan.bias != null, inputs.bias), alibiSlopes: wrap(plan.alibi != null, inputs.alibiSlopes),
    queryIds: wrap(plan.hasSegments, inputs.queryIds), keyIds: wrap(plan.hasSegments, inputs.keyIds),
  });
}

/**
 * [batch, seq, heads, D] → consecutive tiles of `tileLength` positions (the last may be shorter), each in grouped
 * rows [batch, kvHeads, length * group, D] with group = heads / kvHeads. The split is taken on a seq-major copy,
 * where every tile is one contiguous range (the cpu backend copies that with one subarray instead of per element).
 * Only the tiles outlive the call, not the intermediate copies.
 */
export function groupedRowTiles(x: tf.Tensor, kvHeads: number, tileLength: number): tf.Tensor4D[] {
  return tf.tidy(() => seqMajorToGroupedRowTiles(tf.transpose(x, [1, 0, 2, 3]), kvHeads, tileLength));
}

/** A per-row statistic [batch, heads, seq] (lse, dLse) → tiles [batch, kvHeads, length * group, 1]. */
export function rowStatTiles(x: tf.Tensor, kvHeads: number, tileLength: number): tf.Tensor4D[] {
  const [batch, heads, seq] = x.shape;
  return tf.tidy(() => seqMajorToGroupedRowTiles(
                     tf.reshape(tf.transpose(x, [2, 0, 1]), [seq, batch, heads, 1]), kvHeads, tileLength));
}

function seqMajorToGroupedRowTiles(x: tf.Tensor, kvHeads: number, tileLength: number): tf.Tensor4D[] {
  const [seq, batch, heads, dim] = x.shape;
  const group = heads / kvHeads;
  const lengths: number[] = [];
  for (let start = 0; start < seq; start += tileLength) lengths.push(Math.min(tileLength, seq - start));
  return tf.split(x, lengths, 0).map((tile, i) => {
    const headMajor = tf.transpose(tf.reshape(tile, [lengths[i], batch, kvHeads, group * dim]), [1, 2, 0, 3]);
    return tf.reshape(headMajor, [batch, kvHeads, lengths[i] * group, dim]);
  });
}

/** Grouped rows [batch, kvHeads, seq * group, D] → [batch, seq, kvHeads * group, D]. */
export function fromGroupedRows(x: tf.Tensor, group: number): tf.Tensor4D {
  const [batch, kvHeads, rows, dim] = x.shape;
  const seq = rows / group;
  const seqMajor = tf.transpose(tf.reshape(x, [batch, kvHeads, seq, group * dim]), [0, 2, 1, 3]);
  return tf.reshape(seqMajor, [batch, seq, kvHeads * group, dim]);
}

/** A row statistic in grouped rows [batch, kvHeads, seq * group, 1] → [batch, kvHeads * group, seq]. */
export function rowStatFromGroupedRows(x: tf.Tensor, group: number): tf.Tensor3D {
  const [batch, kvHeads, rows] = x.shape;
  const seq = rows / group;
  const headMajor = tf.transpose(tf.reshape(x, [batch, kvHeads, seq, group]), [0, 1, 3, 2]);
  return tf.reshape(headMajor, [batch, kvHeads * group, seq]);
}

/**
 * Concatenates tiles along axis 2 and maps the result (e.g. fromGroupedRows), disposing the tiles and intermediate
 * copies right away so that they do not stack up on the outputs' memory peak.
 */
export function assembleTiles<T extends tf.Tensor>(tiles: tf.Tensor[], finish: (all: tf.Tensor) => T): T {
  const result = tf.tidy(() => finish(tf.concat(tiles, 2)));
  tf.dispose(tiles);
  return result;
}

export interface TileVisit {
  tile: number;
  /** Every (row, key) pair of the tile is visible for every mask head: no element mask needed. */
  full: boolean;
}

/**
 * Key tiles query tile `queryTile` visits for any mask head, in increasing order. All heads are computed in one
 * batched op, so a tile visited by only some mask heads (per-head layouts) is partial: the mask hides it from the
 * others.
 */
export function keyTilesOfQueryTile(plan: AttentionPlan, s: BlockSchedule, queryTile: number): TileVisit[] {
  return unionOverHeads(plan, s, (h, fn) => forEachTileInRow(s, h, queryTile, fn));
}

/** Query tiles visiting key tile `keyTile` for any mask head (the transpose, for dK/dV), in increasing order. */
export function queryTilesOfKeyTile(plan: AttentionPlan, s: BlockSchedule, keyTile: number): TileVisit[] {
  return unionOverHeads(plan, s, (h, fn) => forEachTileInCol(s, h, keyTile, fn));
}

/** Tiles are full only if full for every mask head and the plan has no per-element option (hasOptionMask). */
function unionOverHeads(plan: AttentionPlan, s: BlockSchedule,
                        forEach: (head: number, fn: (tile: number, full: boolean) => void) => void): TileVisit[] {
  const partialOnly = hasOptionMask(plan);
  const fullHeads = new Map<number, number>();
  for (let h = 0; h < s.numHeads; h++) {
    forEach(h, (tile, full) => fullHeads.set(tile, (fullHeads.get(tile) ?? 0) + (full ? 1 : 0)));
  }
  return [...fullHeads.entries()].sort((a, b) => a[0] - b[0])
      .map(([tile, count]) => ({tile, full: !partialOnly && count === s.numHeads}));
}

/** Query rows [q0, q1) × keys [k0, k1): one (query tile, key tile) pair. */
export interface TileBounds {
  q0: number;
  q1: number;
  k0: number;
  k1: number;
}

export function tileBounds(tiling: CompositeTiling, plan: AttentionPlan, queryTile: number, keyTile: number):
    TileBounds {
  const q0 = queryTile * tiling.blockQ, k0 = keyTile * tiling.blockK;
  return {q0, q1: Math.min(q0 + tiling.blockQ, plan.seqQ), k0, k1: Math.min(k0 + tiling.blockK, plan.seqK)};
}

/**
 * Visibility of a partial tile from the window and layout (host metadata, uploaded, never read back): a bool tensor,
 * true where the key is visible, of the scores tile's full shape [batch, kvHeads, rows * group, keys] in grouped-row
 * order. Built whole on the host: tf.where would broadcast a [1, 1, rows, keys] mask with a Tile kernel, which costs
 * more than the tile's matMul on wasm (~70 ns per element). keyLengths are not included (see KeyLengthsMask).
 */
export function tileVisibility(plan: AttentionPlan, {q0, q1, k0, k1}: TileBounds): tf.Tensor4D {
  const {layout, groupSize: group} = plan;
  const maskKvHeads = layout != null && layout.numHeads > 1 ? plan.kvHeads : 1;
  const rows = (q1 - q0) * group, keys = k1 - k0;
  const visible = new Uint8Array(maskKvHeads * rows * keys);
  for (let i = q0; i < q1; i++) {
    const [lo, hi] = windowKeyRange(plan, i);
    const first = Math.max(lo, k0), last = Math.min(hi, k1 - 1);
    if (first > last) continue;
    for (let kvHead = 0; kvHead < maskKvHeads; kvHead++) {
      for (let g = 0; g < group; g++) {
        const rowStart = ((kvHead * (q1 - q0) + i - q0) * group + g) * keys - k0;
        if (layout == null) {
          visible.fill(1, rowStart + first, rowStart + last + 1);
          continue;
        }
        const bs = layout.blockSize, lh = layoutHead(plan, kvHead * group + g);
        for (let kb = Math.floor(first / bs); kb <= Math.floor(last / bs); kb++) {
          if (!layoutBlockOn(layout, lh, Math.floor(i / bs), kb)) continue;
          visible.fill(1, rowStart + Math.max(first, kb * bs), rowStart + Math.min(last, kb * bs + bs - 1) + 1);
        }
      }
    }
  }
  // Repeat the mask over batch (and over kv heads when it does not depend on them).
  const perBatch = plan.kvHeads * rows * keys;
  const full = new Uint8Array(plan.batch * perBatch);
  for (let kvHead = 0; kvHead < plan.kvHeads; kvHead++) {
    full.set(maskKvHeads === 1 ? visible : visible.subarray(kvHead * rows * keys, (kvHead + 1) * rows * keys),
             kvHead * rows * keys);
  }
  for (let b = 1; b < plan.batch; b++) full.copyWithin(b * perBatch, 0, perBatch);
  return tf.tensor4d(full, [plan.batch, plan.kvHeads, rows, keys], 'bool');
}

/**
 * The keyLengths mask, kept on device: no value is read back (backends stay asynchronous); as a consequence every key
 * tile is computed and masked, even one wholly past keyLengths[b].
 */
export interface KeyLengthsMask {
  /** keyLengths as int32 [batch, 1, 1, 1]. */
  lengths: tf.Tensor4D;
  /** [batch, 1, 1, seqK] bool: key j < keyLengths[b]. */
  visibility: tf.Tensor4D;
}

export function keyLengthsMask(keyLengths: tf.Tensor, seqK: number): KeyLengthsMask {
  const lengths = tf.reshape(keyLengths, [keyLengths.shape[0], 1, 1, 1]) as tf.Tensor4D;
  const positions = tf.reshape(tf.range(0, seqK, 1, 'int32'), [1, 1, 1, seqK]);
  return {lengths, visibility: tf.less(positions, lengths)};
}

/**
 * Bool [batch, m, n] = left[b, i] ∧ right[b, j], for bool left [batch, m, 1] and right [batch, 1, n], as an outer
 * product of 0/1 floats (a matMul, exact). This is how a keyLengths mask reaches a tile's full shape: tf.where would
 * broadcast it with a Tile kernel (several times slower on wasm; on cpu, a data read), and a broadcasting comparison
 * of host key positions with keyLengths [batch, 1, 1, 1] is as slow on wasm.
 */
export function outerAnd(left: tf.Tensor3D, right: tf.Tensor3D): tf.Tensor3D {
  return tf.tidy(() => tf.greater(tf.matMul(tf.cast(left, 'float32'), tf.cast(right, 'float32')), 0));
}

/** Bool [batch, rows, keys]: key k0 + j < keyLengths[b], repeated over `rows`. */
export function keysBelowLengths(mask: KeyLengthsMask, rows: number, k0: number, keys: number): tf.Tensor3D {
  return tf.tidy(() => {
    const batch = mask.visibility.shape[0];
    const row = tf.reshape(tf.slice(mask.visibility, [0, 0, 0, k0], [-1, 1, 1, keys]), [batch, 1, keys]);
    return outerAnd(tf.ones([batch, rows, 1], 'bool'), row as tf.Tensor3D);
  });
}

export interface TileScores {
  /** Final scores t [batch, kvHeads, rows * group, keys]: -Infinity where masked (unless the mask is deferred). */
  scores: tf.Tensor4D;
  /** dt/ds = 1 − tanh², the softcap's derivative (absent without softcap or when not asked for). */
  softcapDerivative?: tf.Tensor4D;
  /** The element mask (bool, full shape), when asked for (or deferred) and the tile is masked. */
  visible?: tf.Tensor4D;
}

/** What tileScores returns besides the scores. */
export interface TileScoreExtras {
  softcapDerivative?: boolean;
  visible?: boolean;
  /** Return the scores unmasked with `visible`, for the caller to apply (the backward masks t − lse instead). */
  deferMask?: boolean;
}

/**
 * Whether a tile's scores get an element mask (see tileMask): partial tiles, and every tile when keyLengths apply
 * (they are on device, so no tile is known to lie wholly before keyLengths[b]). Only masked tiles hold masked keys,
 * whose probability is 0 and whose value must not reach the row (0·NaN = 0·Infinity = NaN).
 */
export function tileIsMasked(full: boolean, keyLengths: KeyLengthsMask | null): boolean {
  return !full || keyLengths != null;
}

/** Which scores of a tile to keep (bool, the scores' full shape), or null when all of them are visible. */
function tileMask(plan: AttentionPlan, bounds: TileBounds, full: boolean, keyLengths: KeyLengthsMask | null,
                  options: OptionTensors | null): tf.Tensor | null {
  if (!tileIsMasked(full, keyLengths)) return null;
  const {q0, q1, k0, k1} = bounds;
  if (full) {
    const rows = (q1 - q0) * plan.groupSize;
    return tf.tidy(() => tf.reshape(keysBelowLengths(keyLengths!, plan.kvHeads * rows, k0, k1 - k0),
                                    [plan.batch, plan.kvHeads, rows, k1 - k0]));
  }
  return tf.tidy(() => {
    let visible: tf.Tensor = tileVisibility(plan, bounds);
    // logicalAnd broadcasts the [batch, 1, 1, keys] slice inside its kernel: the result has the full shape.
    if (keyLengths != null) {
      visible = tf.logicalAnd(visible, tf.slice(keyLengths.visibility, [0, 0, 0, k0], [-1, 1, 1, k1 - k0]));
    }
    const fromOptions = options == null ? null : optionVisibility(plan, options, bounds);
    return fromOptions == null ? visible : tf.logicalAnd(visible, fromOptions);
  });
}

/**
 * fn(x) in a tidy of its own, then disposes x: along a chain of tile-sized ops this keeps one intermediate alive
 * instead of the whole chain (tfjs has no in-place ops), which sets the executors' memory peak.
 */
export function consume<T extends tf.Tensor>(x: tf.Tensor, fn: (x: tf.Tensor) => T): T {
  const y = tf.tidy(() => fn(x));
  x.dispose();
  return y;
}

/**
 * Scores of one tile: t = softcap·tanh(s/softcap) (or s), s = (scale·q)·kᵀ, plus the options' bias and ALiBi terms,
 * then masked. `scaledQueries` already carries the scale (one multiply per query tile instead of one per scores
 * tile). `keyLengths` is keyLengthsMask's result when the plan has keyLengths; `options` the option inputs (null
 * when the plan has none).
 */
export function tileScores(
    plan: AttentionPlan, scaledQueries: tf.Tensor4D, keys: tf.Tensor4D, bounds: TileBounds, full: boolean,
    keyLengths: KeyLengthsMask | null, options: OptionTensors | null, extras: TileScoreExtras = {}): TileScores {
  let scores: tf.Tensor = tf.matMul(scaledQueries, keys, false, true);
  let softcapDerivative: tf.Tensor4D | undefined;
  if (plan.softcap > 0) {
    const capped = consume(scores, (s) => tf.tanh(tf.mul(s, 1 / plan.softcap)));
    if (extras.softcapDerivative) softcapDerivative = tf.tidy(() => tf.sub<tf.Tensor4D>(1, tf.square(capped)));
    scores = consume(capped, (c) => tf.mul(c, plan.softcap));
  }
  const terms = options == null ? null : scoreTerms(plan, options, bounds);
  if (terms != null) {
    scores = consume(scores, (s) => tf.add(s, terms));
    terms.dispose();
  }
  const visible = tileMask(plan, bounds, full, keyLengths, options);
  if (visible != null && extras.deferMask) {
    return {scores: scores as tf.Tensor4D, softcapDerivative, visible: visible as tf.Tensor4D};
  }
  if (visible != null) {
    // Selected, not added as a -Infinity bias: a NaN or +Infinity score of a masked key must not leak into the row
    // (NaN + -Infinity = NaN, Infinity + -Infinity = NaN).
    scores = consume(scores, (s) => tf.where(visible, s, tf.fill(s.shape, -Infinity)));
    if (extras.visible) return {scores: scores as tf.Tensor4D, softcapDerivative, visible: visible as tf.Tensor4D};
    visible.dispose();
  }
  return {scores: scores as tf.Tensor4D, softcapDerivative};
}

/**
 * A value or key tile split for partial tiles, where a product with P (forward, P·V) or dS (backward, dS·K) must skip
 * masked keys: their P and dS are 0, and a plain matMul would turn 0·NaN and 0·Infinity into NaN in rows that cannot
 * see the key. `finite` is the tile with NaN and ±Infinity replaced by 0, for P·finite; `nonFinite` codes per element
 * which infinities it holds, NaN counting as both (+Inf + -Inf = NaN): (x is +Infinity or NaN) + HIT_BASE · (x is
 * -Infinity or NaN). The codes of the keys a row's mask lets it see are summed (visibleHits) and put back as
 * ±Infinity or NaN. A type alias: tf.tidy accepts it as a container.
 */
export type SplitValues = {
  finite: tf.Tensor4D;
  nonFinite: tf.Tensor4D;
  /**
   * Plans without a layout: nonFinite summed over the keys before each position, [batch, kvHeads, keys + 1, D]
   * (prefix[j] = Σ_{j' < j} nonFinite[j']), so that a row seeing a contiguous key range sums its codes with two
   * gathers (visibleHits) instead of a matMul.
   */
  prefix?: tf.Tensor4D;
};

/**
 * Weight of the -Infinity count in `nonFinite`. Counts are at most blockK ≤ COMPOSITE_BLOCK_K per tile, so the two
 * counts never mix, and every sum of codes over a tile's keys stays an integer below 2^24: exact in fp32, in any
 * summation order (matMul, cumsum) and in differences of such sums.
 */
export const HIT_BASE = 2 * COMPOSITE_BLOCK_K;

/**
 * x [batch, seqK, kvHeads, D] (v, or k in the backward) with the rows of keys past keyLengths[b] set to 0. Those keys
 * are masked for every row of batch b, and they are a full tile's only masked keys: with their values 0, done once,
 * O(seqK · D), a full tile's plain P·V (or dS·K) skips them (0·0 instead of 0·NaN) with no per-row work, no split and
 * no extra matMul.
 */
export function zeroPaddingKeys(x: tf.Tensor, keyLengths: KeyLengthsMask): tf.Tensor {
  return tf.tidy(() => {
    const [batch, seqK, kvHeads, dim] = x.shape;
    // [batch, 1, seqK] → [batch, seqK, kvHeads·D]: key along rows this time.
    const keysVisible = tf.transpose(keysBelowLengths(keyLengths, 1, 0, seqK), [0, 2, 1]) as tf.Tensor3D;
    const visible = outerAnd(keysVisible, tf.ones([batch, 1, kvHeads * dim], 'bool'));
    return tf.where(tf.reshape(visible, x.shape), x, tf.zerosLike(x));
  });
}

export function splitNonFinite(values: tf.Tensor4D, withPrefix: boolean): SplitValues {
  return tf.tidy(() => {
    const nan = tf.isNaN(values);
    const up = tf.logicalOr(nan, tf.equal(values, Infinity)), down = tf.logicalOr(nan, tf.equal(values, -Infinity));
    const nonFinite = tf.add<tf.Tensor4D>(tf.cast(up, 'float32'), tf.mul(tf.cast(down, 'float32'), HIT_BASE));
    const [batch, kvHeads, , dim] = values.shape;
    return {
      finite: tf.where(tf.isFinite(values), values, tf.zerosLike(values)),
      nonFinite,
      prefix: withPrefix ? tf.concat4d([tf.zeros([batch, kvHeads, 1, dim]), tf.cumsum<tf.Tensor4D>(nonFinite, 2)], 2) :
                           undefined,
    };
  });
}

/**
 * The codes (see SplitValues) of the keys each row of a partial tile sees, summed: [batch, kvHeads, rows, D]. With a
 * layout, a matMul of the tile's mask (0/1, `visible`, consumed) against nonFinite. Without one, a row sees a
 * contiguous key range, its window, whose sum is prefix[end] − prefix[start]: two gathers of O(rows · D), no matMul.
 * keyLengths need no care here: the rows of keys past keyLengths[b] are already 0 (zeroPaddingKeys), so their codes
 * are 0.
 */
export function visibleHits(plan: AttentionPlan, bounds: TileBounds, split: SplitValues,
                            visible: tf.Tensor4D | undefined): tf.Tensor4D {
  if (visible != null) return consume(visible, (m) => tf.matMul(tf.cast(m, 'float32'), split.nonFinite));
  const {q0, q1, k0, k1} = bounds;
  const group = plan.groupSize, rows = (q1 - q0) * group, keys = k1 - k0;
  const starts = new Int32Array(rows), ends = new Int32Array(rows);
  for (let i = q0; i < q1; i++) {
    const [first, last] = windowKeyRange(plan, i);
    const start = Math.min(Math.max(first - k0, 0), keys), end = Math.max(Math.min(last + 1 - k0, keys), start);
    starts.fill(start, (i - q0) * group, (i - q0 + 1) * group);
    ends.fill(end, (i - q0) * group, (i - q0 + 1) * group);
  }
  return tf.tidy(() => {
    const prefix = split.prefix!;
    return tf.sub(tf.gather(prefix, tf.tensor1d(ends, 'int32'), 2), tf.gather(prefix, tf.tensor1d(starts, 'int32'), 2));
  });
}

/**
 * The transpose of visibleHits, for dK = dSᵀ·Q: per key of a partial tile, the codes (see SplitValues) of the query
 * rows that see it, summed: [batch, kvHeads, keys, D], from a split of the query tile (grouped rows). With a layout, a
 * matMul of the tile's mask (not consumed) against nonFinite. Without one, the rows whose window holds key j are
 * contiguous (a window's ends never decrease from one row to the next): prefix[end] − prefix[start] over the rows, two
 * gathers. keyLengths are not applied here (the caller zeroes the dk of keys past keyLengths[b]).
 */
export function visibleRowHits(plan: AttentionPlan, bounds: TileBounds, split: SplitValues,
                               visible: tf.Tensor4D | undefined): tf.Tensor4D {
  if (visible != null) return tf.tidy(() => tf.matMul(tf.cast(visible, 'float32'), split.nonFinite, true, false));
  const {q0, q1, k0, k1} = bounds;
  const group = plan.groupSize, keys = k1 - k0;
  const starts = new Int32Array(keys), ends = new Int32Array(keys);
  // [first, next): the rows with hi >= j and lo <= j, both ends advancing with j.
  let first = q0, next = q0;
  for (let j = k0; j < k1; j++) {
    while (first < q1 && windowKeyRange(plan, first)[1] < j) first++;
    while (next < q1 && windowKeyRange(plan, next)[0] <= j) next++;
    starts[j - k0] = (first - q0) * group;
    ends[j - k0] = (Math.max(first, next) - q0) * group;
  }
  return tf.tidy(() => {
    const prefix = split.prefix!;
    return tf.sub(tf.gather(prefix, tf.tensor1d(ends, 'int32'), 2), tf.gather(prefix, tf.tensor1d(starts, 'int32'), 2));
  });
}
