/**
 * The cpu forward executor shared by FlashAttention, SlidingWindowAttention and SparseAttention: tiled online softmax
 * (FlashAttention) over the key tiles the plan's block schedule lists. The ops differ only through the plan.
 *
 * Per (batch, kv head) K and Vᵀ are gathered once into contiguous arrays; per (query head, query tile) the query rows
 * are gathered, then each scheduled key tile does S = Q·Kᵀ, scale and softcap, the per-element mask (partial tiles
 * only), the online-softmax update and acc += P·V. No seqQ × seqK buffer is ever allocated.
 *
 * Decode shapes (issue 18: seqQ ≤ DECODE_MAX_QUERIES in one query tile, GQA): the query rows of every query head of a
 * kv head are stacked into one tile (groupSize · seqQ rows) and walk the key tiles once, so each K and V element is
 * read once per kv head instead of once per query head. Only where every head of the group sees the same keys (no
 * per-head layout, mask, bias, ALiBi, segments or dropout); the arithmetic per row is the same either way.
 */
import type {MathBackendCPU} from '@tensorflow/tfjs-backend-cpu';
import type {TensorInfo} from '@tensorflow/tfjs-core';
import type {AttentionPlan} from '../../src/plan/plan.js';
import type {AttentionInputs} from '../attention_kernel_func.js';
import {
  finalScores, gatherHead, gatherHeadTransposed, gatherQueryTile, gemmABt, readAttentionInputs,
} from './attention_cpu_util.js';
import {OptionOperands} from './option_operands_cpu.js';
import {KeyTileWalk} from './schedule_walk_cpu.js';

export function runAttentionForward(backend: MathBackendCPU, plan: AttentionPlan, inputs: AttentionInputs):
    TensorInfo[] {
  const {q: qv, k: kv, v: vv, keyLens} = readAttentionInputs(backend, plan, inputs);
  const {batch: B, seqQ: Sq, seqK: Sk, heads: H, kvHeads: Hk, headDim: D, groupSize: G, scale, softcap} = plan;
  const ops = new OptionOperands(backend, plan, inputs);
  const walk = new KeyTileWalk(plan, ops);
  const {hasScoreTerms, dropout} = ops;
  // With dropout, dropped probabilities are zeroed before P·V and kept ones scaled at the end (the row sum, and so
  // lse, is that of every probability).
  const kept = dropout == null ? null : new Uint8Array(walk.blockQ * walk.blockK);
  const outScale = dropout == null ? 1 : dropout.keepScale;
  const {blockQ, blockK} = walk;
  const {numQueryTiles} = walk.schedule;

  // Decode shapes stack the G query heads of a kv head into one tile (see above): `stack` heads per tile.
  const stack = stacksQueryHeads(plan, walk, ops) ? G : 1;
  const tileRows = blockQ * stack;
  const out = new Float32Array(B * Sq * H * D);
  const lse = new Float32Array(B * H * Sq).fill(-Infinity);
  const kc = new Float32Array(Sk * D);      // K of one kv head, [seqK, D]
  const vt = new Float32Array(D * Sk);      // V of one kv head, transposed: [D, seqK]
  const qTile = new Float32Array(tileRows * D);
  const acc = new Float64Array(tileRows * D);
  const s = new Float64Array(tileRows * blockK);  // scores of one tile
  const p = new Float32Array(tileRows * blockK);  // their exp(score − running max)
  const rowMax = new Float64Array(tileRows), rowSum = new Float64Array(tileRows);

  for (let b = 0; b < B; b++) {
    const keyLen = keyLens[b];
    if (keyLen === 0) continue;  // every row is empty: output 0, lse -Infinity
    for (let hk = 0; hk < Hk; hk++) {
      gatherHead(kv, plan, b, hk, keyLen, kc);
      gatherHeadTransposed(vv, plan, b, hk, keyLen, vt);
      for (let h0 = hk * G; h0 < (hk + 1) * G; h0 += stack) {
        for (let qt = 0; qt < numQueryTiles; qt++) {
          // The tile: rows [q0, q0 + rows) of query heads h0 … h0 + stack − 1, head by head (rows · stack in all).
          if (!walk.startQueryTile(b, h0, qt, keyLen)) continue;  // this tile sees no key
          const {q0, rows} = walk, all = rows * stack;
          for (let e = 0; e < stack; e++) gatherQueryTile(qv, plan, b, h0 + e, q0, rows, qTile.subarray(e * rows * D));
          rowMax.fill(-Infinity);
          rowSum.fill(0);
          acc.fill(0);
          while (walk.nextKeyTile()) {
            const {k0, c0, c1, masked} = walk, n = c1 - c0;
            gemmABt(qTile, 0, D, kc, (k0 + c0) * D, D, s, c0, blockK, all, n, D, false);
            finalScores(s, blockK, all, c0, c1, scale, softcap);
            if (hasScoreTerms) walk.addScoreTerms(s, blockK);
            // Stacked heads see the same keys (stacksQueryHeads): each head's rows take the same mask.
            if (masked) for (let e = 0; e < stack; e++) walk.mask(s.subarray(e * rows * blockK), blockK);
            onlineSoftmaxUpdate(s, p, blockK, all, c0, c1, rowMax, rowSum, acc, D);
            if (kept != null) dropProbabilities(walk, p, kept, blockK, rows, c0, c1);
            if (masked) {
              accumulateVisiblePV(p, blockK, vt, k0, Sk, acc, D, all, c0, c1);
            } else {
              gemmABt(p, c0, blockK, vt, k0 + c0, Sk, acc, 0, D, all, D, n, true);
            }
          }
          for (let r = 0; r < all; r++) {
            const sum = rowSum[r];
            if (sum === 0) continue;  // the row saw no key
            const h = h0 + Math.floor(r / rows), i = q0 + r % rows;
            const o = ((b * Sq + i) * H + h) * D, inv = outScale / sum;
            for (let d = 0, a = r * D; d < D; d++) out[o + d] = acc[a + d] * inv;
            lse[(b * H + h) * Sq + i] = rowMax[r] + Math.log(sum);
          }
        }
      }
    }
  }
  return [
    backend.makeTensorInfo([B, Sq, H, D], 'float32', out),
    backend.makeTensorInfo([B, H, Sq], 'float32', lse),
  ];
}

/** Longest query block whose GQA heads the forward stacks into one tile (issue 18: decode steps of 1…16 rows). */
export const DECODE_MAX_QUERIES = 16;

/**
 * Whether the forward stacks the query heads of each kv head into one tile: a decode shape (seqQ ≤
 * DECODE_MAX_QUERIES, one query tile, groupSize > 1) whose heads all see the same keys (no per-head layout, no
 * per-element options, no bias / ALiBi terms, no dropout).
 */
export function stacksQueryHeads(
    plan: AttentionPlan, walk: Pick<KeyTileWalk, 'schedule'>,
    ops: Pick<OptionOperands, 'elementWise' | 'hasScoreTerms' | 'dropout'>): boolean {
  return plan.groupSize > 1 && plan.seqQ <= DECODE_MAX_QUERIES && walk.schedule.numQueryTiles === 1 &&
      walk.schedule.numHeads === 1 && !ops.elementWise && !ops.hasScoreTerms && ops.dropout == null;
}

/** Zeroes the dropped elements of p (columns [c0, c1) of the current tile), after they entered the row sums. */
function dropProbabilities(
    walk: KeyTileWalk, p: Float32Array, kept: Uint8Array, ld: number, rows: number, c0: number, c1: number): void {
  walk.keepMask(kept, ld);
  for (let r = 0; r < rows; r++) {
    for (let i = r * ld + c0, e = r * ld + c1; i < e; i++) if (kept[i] === 0) p[i] = 0;
  }
}

/**
 * acc[r] += Σ_c p[r, c]·v[c] over columns [c0, c1) of a masked tile, skipping p = 0: a masked key's value must not
 * reach the row (0·NaN and 0·Inf are NaN). vt is V transposed ([D, Sk], row stride Sk). Masked tiles are the few on
 * the mask's edges, so this plain loop costs little next to the blocked gemm of full tiles.
 */
function accumulateVisiblePV(
    p: Float32Array, ld: number, vt: Float32Array, k0: number, Sk: number, acc: Float64Array, D: number,
    rows: number, c0: number, c1: number): void {
  for (let r = 0; r < rows; r++) {
    for (let c = c0; c < c1; c++) {
      const pc = p[r * ld + c];
      if (pc === 0) continue;
      for (let d = 0, a = r * D, vo = k0 + c; d < D; d++, vo += Sk) acc[a + d] += pc * vt[vo];
    }
  }
}

/**
 * For columns [c0, c1) of each row: p = exp(score − running max) (0 where masked), updating the running max and sum
 * and rescaling the row's accumulator when the max grows.
 */
function onlineSoftmaxUpdate(
    s: Float64Array, p: Float32Array, ld: number, rows: number, c0: number, c1: number, rowMax: Float64Array,
    rowSum: Float64Array, acc: Float64Array, D: number): void {
  for (let r = 0; r < rows; r++) {
    const start = r * ld + c0, end = r * ld + c1;
    // A NaN score (NaN in q or in a visible key) must make the row NaN, not vanish from the max.
    let tileMax = -Infinity;
    for (let c = start; c < end; c++) if (s[c] > tileMax || s[c] !== s[c]) tileMax = s[c];
    if (tileMax === -Infinity) {  // nothing visible in this row of the tile
      for (let c = start; c < end; c++) p[c] = 0;
      continue;
    }
    const oldMax = rowMax[r];
    const newMax = tileMax > oldMax || tileMax !== tileMax ? tileMax : oldMax;
    let sum = 0;
    for (let c = start; c < end; c++) {
      const e = Math.fround(Math.exp(s[c] - newMax));  // the sum must match the P that is multiplied with V
      p[c] = e;
      sum += e;
    }
    if (newMax !== oldMax && oldMax !== -Infinity) {
      const alpha = Math.exp(oldMax - newMax);
      rowSum[r] = rowSum[r] * alpha + sum;
      for (let a = r * D, e = a + D; a < e; a++) acc[a] *= alpha;
    } else {
      rowSum[r] += sum;
    }
    rowMax[r] = newMax;
  }
}
