/**
 * The attention semantics, written once. Every op builds an AttentionPlan; every backend executes one.
 *
 * Query row `i` of batch `b` sits at key position `pos = i + offset(b)`, where offset(b) is queryOffsets[b] when the
 * op was given per-batch offsets (hasQueryOffsets: read from the int32 `queryOffsets` kernel input and clamped to
 * [offsetMin, offsetMax]) and diagonalOffset otherwise (default seqK - seqQ: bottom-right alignment, FlashAttention
 * >= 2.1; 0 is Keras/SDPA's top-left alignment).
 *
 * Visibility of key `j` for query `i` (0-based), head `h`, batch `b` is the AND of:
 *   - window: (windowLeft < 0 || j >= pos - windowLeft) && (windowRight < 0 || j <= pos + windowRight);
 *     causal is the window [-1, 0]; dense attention is [-1, -1].
 *   - layout (sparse only): layout block (floor(i / bs), floor(j / bs)) of layout head `h % numHeads` is on.
 *   - padding: j < keyLengths[b] when the op was given keyLengths (dynamic, so checked by the kernels; a key block
 *     at or past keyLengths[b] is skipped, the one containing it is treated as partial).
 *   - mask: mask[b, h, i, j] != 0 (broadcast by index, see PairOperand) when the op was given a mask.
 *   - segments: queryIds[b, i] == keyIds[b, j] when the op was given segmentIds.
 * Scores: s = scale·q·k; then softcap·tanh(s / softcap) when softcap > 0; then + bias[b, h, i, j] (a bias of
 * -Infinity masks) and - alibiSlope[b, h]·|pos - j|; then every mask above sets the score to -Infinity.
 * P = softmax over the row. With dropout, O = (P ∘ Z / (1 - rate))·V where Z is the Philox keep mask of
 * src/plan/philox.ts; lse is that of the scores (dropout does not change it).
 * A row that sees no key outputs 0 and has lse = -Infinity (its gradients are 0).
 */
import {BlockLayout} from '../patterns/block_layout.js';
import {DropoutPlan} from './philox.js';
import type {AttentionPrecision} from './precision.js';

/**
 * How a mask or bias of shape [seqQ, seqK], [batch, seqQ, seqK] or [batch | 1, heads | 1, seqQ, seqK] is indexed:
 * element (b, h, i, j) is at b·batchStride + h·headStride + i·seqK + j (a stride is 0 on a broadcast axis).
 */
export interface PairOperand {
  /** The tensor's own shape (the gradient of a bias has it). */
  readonly shape: readonly number[];
  readonly batchStride: number;
  readonly headStride: number;
  /** The tensor's dtype: masks may be bool, int32 or float32 (non-zero = may attend); a bias is float32. */
  readonly dtype: 'bool' | 'int32' | 'float32';
}

export type AttentionKind = 'flash' | 'sliding' | 'sparse';

export interface AttentionPlan {
  readonly kind: AttentionKind;
  readonly batch: number;
  readonly seqQ: number;
  readonly seqK: number;
  readonly heads: number;
  readonly kvHeads: number;
  /** Query heads per kv head (GQA group size): query head h reads kv head floor(h / groupSize). */
  readonly groupSize: number;
  readonly headDim: number;
  readonly scale: number;
  /** 0 means no softcap. */
  readonly softcap: number;
  /** Visible keys lie in [diag - windowLeft, diag + windowRight]; -1 is unbounded on that side. */
  readonly windowLeft: number;
  readonly windowRight: number;
  readonly layout: BlockLayout | null;
  /** Whether the kernel must also mask keys at positions >= keyLengths[b]. */
  readonly hasKeyLengths: boolean;
  /** The static query offset: query i sits at key position i + diagonalOffset (default seqK - seqQ). */
  readonly diagonalOffset: number;
  /** Per-batch offsets come from the `queryOffsets` input (int32 [batch]), clamped to [offsetMin, offsetMax]. */
  readonly hasQueryOffsets: boolean;
  /** Bounds of every batch's offset (both diagonalOffset without per-batch offsets): the schedule covers them all. */
  readonly offsetMin: number;
  readonly offsetMax: number;
  /** Boolean mask input (`mask`), or null. */
  readonly mask: PairOperand | null;
  /** Additive float32 bias input (`bias`), or null. */
  readonly bias: PairOperand | null;
  /** ALiBi slopes input (`alibiSlopes`, float32 [batch | 1, heads]): slope of (b, h) at b·batchStride + h. */
  readonly alibi: {readonly batchStride: number} | null;
  /** Segment ids inputs `queryIds` int32 [batch, seqQ] and `keyIds` int32 [batch, seqK]. */
  readonly hasSegments: boolean;
  /** Dropout on the probabilities (Philox keep mask), or null. */
  readonly dropout: DropoutPlan | null;
  /** Requested matrix-product precision (src/plan/precision.ts); backends record which path they ran. */
  readonly precision: AttentionPrecision;
  /** Identifies the static mask (window, offsets, layout contents, sizes): equal keys give equal schedules. */
  readonly maskKey: string;
}

export const MAX_HEAD_DIM = 256;

/** The sizes of one attention call: q [batch, seqQ, heads, headDim], k and v [batch, seqK, kvHeads, headDim]. */
export interface AttentionShapes {
  batch: number;
  seqQ: number;
  seqK: number;
  heads: number;
  kvHeads: number;
  headDim: number;
}

export interface PlanInput extends AttentionShapes {
  kind: AttentionKind;
  scale: number;
  softcap: number;
  windowLeft: number;
  windowRight: number;
  layout: BlockLayout | null;
  hasKeyLengths: boolean;
  /** Static query offset (default seqK - seqQ). */
  queryOffset?: number;
  /** Per-batch offsets from the queryOffsets input, within [offsetMin, offsetMax]. */
  queryOffsetRange?: [number, number] | null;
  mask?: PairOperand | null;
  bias?: PairOperand | null;
  alibi?: {batchStride: number} | null;
  hasSegments?: boolean;
  dropout?: DropoutPlan | null;
  precision?: AttentionPrecision;
}

export function makePlan(p: PlanInput): AttentionPlan {
  const layoutKey = p.layout == null ? 'none' :
      `${p.layout.blockSize}x${p.layout.numHeads}x${p.layout.numQueryBlocks}x${p.layout.numKeyBlocks}#${
          hashBytes(p.layout.mask)}`;
  const {queryOffset, queryOffsetRange, ...rest} = p;
  const diagonalOffset = queryOffset ?? p.seqK - p.seqQ;
  const [offsetMin, offsetMax] = queryOffsetRange ?? [diagonalOffset, diagonalOffset];
  return {
    ...rest,
    groupSize: p.heads / p.kvHeads,
    diagonalOffset,
    hasQueryOffsets: queryOffsetRange != null,
    offsetMin,
    offsetMax,
    mask: p.mask ?? null,
    bias: p.bias ?? null,
    alibi: p.alibi ?? null,
    hasSegments: p.hasSegments ?? false,
    dropout: p.dropout ?? null,
    precision: p.precision ?? 'highest',
    maskKey: `${p.seqQ},${p.seqK},${p.windowLeft},${p.windowRight},${offsetMin},${offsetMax},${layoutKey}`,
  };
}

/** Offsets that query tensors may hold are clamped to [-seqQ, seqK] (no readback); numbers must lie there. */
export function queryOffsetBounds(seqQ: number, seqK: number): [number, number] {
  return [-seqQ, seqK];
}

/** Inclusive range of keys the window lets a query at key position `pos` see, clipped to [0, seqK - 1]. */
export function windowKeyRangeAt(plan: AttentionPlan, pos: number): [number, number] {
  const lo = plan.windowLeft < 0 ? 0 : Math.max(0, pos - plan.windowLeft);
  const hi = plan.windowRight < 0 ? plan.seqK - 1 : Math.min(plan.seqK - 1, pos + plan.windowRight);
  return [lo, hi];
}

/**
 * Inclusive range of keys the window may let query `i` see for some batch (the union over [offsetMin, offsetMax];
 * exact without per-batch offsets), clipped to [0, seqK - 1] (may be empty: lo > hi).
 */
export function windowKeyRange(plan: AttentionPlan, i: number): [number, number] {
  return [windowKeyRangeAt(plan, i + plan.offsetMin)[0], windowKeyRangeAt(plan, i + plan.offsetMax)[1]];
}

/** Keys the window lets query `i` see in every batch (the intersection over the offsets; may be empty). */
export function windowKeyRangeInAllBatches(plan: AttentionPlan, i: number): [number, number] {
  return [windowKeyRangeAt(plan, i + plan.offsetMax)[0], windowKeyRangeAt(plan, i + plan.offsetMin)[1]];
}

/** Options a plan may use beyond causal/window/layout/keyLengths; a backend declares which of them it executes. */
export type PlanFeature = 'queryOffsets' | 'mask' | 'bias' | 'alibi' | 'segments' | 'dropout';
export const PLAN_FEATURES: readonly PlanFeature[] = ['queryOffsets', 'mask', 'bias', 'alibi', 'segments', 'dropout'];

/** The options this plan uses (a static queryOffsets other than the default counts as 'queryOffsets'). */
export function planFeatures(plan: AttentionPlan): PlanFeature[] {
  const used: PlanFeature[] = [];
  if (plan.hasQueryOffsets || plan.diagonalOffset !== plan.seqK - plan.seqQ) used.push('queryOffsets');
  if (plan.mask != null) used.push('mask');
  if (plan.bias != null) used.push('bias');
  if (plan.alibi != null) used.push('alibi');
  if (plan.hasSegments) used.push('segments');
  if (plan.dropout != null) used.push('dropout');
  return used;
}

/** Whether scores get an additive term (bias or ALiBi), so even fully visible tiles need per-element work. */
export function hasScoreBias(plan: AttentionPlan): boolean {
  return plan.bias != null || plan.alibi != null;
}

/**
 * Element-level visibility from the static parts of the plan (window at the static offset, layout), without
 * keyLengths, per-batch offsets, mask and segments (which are data). The reference for partial blocks.
 */
export function isVisible(plan: AttentionPlan, h: number, i: number, j: number): boolean {
  if (j < 0 || j >= plan.seqK) return false;
  const [lo, hi] = windowKeyRangeAt(plan, i + plan.diagonalOffset);
  if (j < lo || j > hi) return false;
  const layout = plan.layout;
  if (layout == null) return true;
  const bs = layout.blockSize;
  const lh = h % layout.numHeads;
  return layout.mask[(lh * layout.numQueryBlocks + Math.floor(i / bs)) * layout.numKeyBlocks + Math.floor(j / bs)] !==
      0;
}

/** Head index into the layout for query head h. */
export function layoutHead(plan: AttentionPlan, h: number): number {
  return plan.layout == null ? 0 : h % plan.layout.numHeads;
}

/** Number of mask heads a schedule has: 1 unless the layout differs per head. */
export function scheduleHeads(plan: AttentionPlan): number {
  return plan.layout == null ? 1 : plan.layout.numHeads;
}

function hashBytes(bytes: Uint8Array): string {
  // FNV-1a, 32-bit, twice with different seeds to make collisions negligible for cache keys.
  let a = 0x811c9dc5, b = 0x01000193 ^ bytes.length;
  for (let i = 0; i < bytes.length; i++) {
    a = Math.imul(a ^ bytes[i], 0x01000193);
    b = Math.imul(b ^ bytes[i] ^ (i & 0xff), 0x5bd1e995);
  }
  return (a >>> 0).toString(36) + (b >>> 0).toString(36);
}
