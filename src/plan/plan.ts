/**
 * The attention semantics, written once. Every op builds an AttentionPlan; every backend executes one.
 *
 * Visibility of key `j` for query `i` (0-based), head `h`, batch `b`:
 *   - window (bottom-right aligned, FlashAttention >= 2.1): with `diag = i + seqK - seqQ`,
 *       (windowLeft < 0 || j >= diag - windowLeft) && (windowRight < 0 || j <= diag + windowRight)
 *     causal is the window [-1, 0]; dense attention is [-1, -1].
 *   - layout (sparse only): layout block (floor(i / bs), floor(j / bs)) of layout head `h % numHeads` is on.
 *   - padding: j < keyLengths[b] when the op was given keyLengths (dynamic, so checked by the kernels; a key block
 *     at or past keyLengths[b] is skipped, the one containing it is treated as partial).
 * Scores are `s = scale * q·k`, then `softcap * tanh(s / softcap)` when softcap > 0, then masked.
 * A row that sees no key outputs 0 and has lse = -Infinity.
 */
import {BlockLayout} from '../patterns/block_layout.js';

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
  /** seqK - seqQ: query i is aligned with key i + diagonalOffset. */
  readonly diagonalOffset: number;
  /** Identifies the mask (window, layout contents, sizes): equal keys give equal schedules. */
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
}

export function makePlan(p: PlanInput): AttentionPlan {
  const layoutKey = p.layout == null ? 'none' :
      `${p.layout.blockSize}x${p.layout.numHeads}x${p.layout.numQueryBlocks}x${p.layout.numKeyBlocks}#${
          hashBytes(p.layout.mask)}`;
  return {
    ...p,
    groupSize: p.heads / p.kvHeads,
    diagonalOffset: p.seqK - p.seqQ,
    maskKey: `${p.seqQ},${p.seqK},${p.windowLeft},${p.windowRight},${layoutKey}`,
  };
}

/** Inclusive range of keys the window lets query `i` see, clipped to [0, seqK - 1] (may be empty: lo > hi). */
export function windowKeyRange(plan: AttentionPlan, i: number): [number, number] {
  const diag = i + plan.diagonalOffset;
  const lo = plan.windowLeft < 0 ? 0 : Math.max(0, diag - plan.windowLeft);
  const hi = plan.windowRight < 0 ? plan.seqK - 1 : Math.min(plan.seqK - 1, diag + plan.windowRight);
  return [lo, hi];
}

/** Element-level visibility, without keyLengths (which are per batch). The reference for partial blocks. */
export function isVisible(plan: AttentionPlan, h: number, i: number, j: number): boolean {
  if (j < 0 || j >= plan.seqK) return false;
  const [lo, hi] = windowKeyRange(plan, i);
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
