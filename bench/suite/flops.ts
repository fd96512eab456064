/**
 * FLOP counts of attention, three ways:
 *   dense:   4·B·H·Sq·Sk·D, the dense-equivalent forward (two matmuls, 2 FLOPs per multiply-add). Every TFLOP/s
 *            figure called "dense-equivalent" divides this by the time, whatever the mask skips.
 *   visited: the work of the (query tile, key tile) pairs the block schedule visits at a reference 64×64 tiling
 *            (tiles clipped to the sequence), i.e. what a block-skipping kernel really computes.
 *   visible: the (query, key) pairs the mask lets through (the useful work, a lower bound).
 * Backward ≈ 2.5× forward (FlashAttention-2's convention: 5 matmuls vs 2), so forward+backward = 3.5× forward.
 */
import {AttentionPlan, windowKeyRange} from '../../src/plan/plan.js';
import {getSchedule} from '../../src/plan/schedule.js';

export const BACKWARD_FACTOR = 2.5;
export const REFERENCE_TILE = 64;

export interface FlopCounts {
  dense: number;
  visited: number;
  visible: number;
}

/** Forward FLOPs of `plan`; multiply by (1 + BACKWARD_FACTOR) for forward+backward. */
export function forwardFlops(plan: AttentionPlan, tile = REFERENCE_TILE): FlopCounts {
  const perPair = 4 * plan.headDim * plan.batch;
  const dense = perPair * plan.heads * plan.seqQ * plan.seqK;
  const s = getSchedule(plan, tile, tile);
  let visitedPairs = 0;
  for (let h = 0; h < s.numHeads; h++) {
    for (let qt = 0; qt < s.numQueryTiles; qt++) {
      const rows = Math.min(tile, plan.seqQ - qt * tile);
      const row = h * s.numQueryTiles + qt;
      for (let r = s.rowRunStart[row]; r < s.rowRunStart[row + 1]; r++) {
        const first = s.rowRuns[3 * r], count = s.rowRuns[3 * r + 1];
        const cols = Math.min((first + count) * tile, plan.seqK) - first * tile;
        visitedPairs += rows * cols;
      }
    }
  }
  const headsPerMaskHead = plan.heads / s.numHeads;
  return {dense, visited: perPair * headsPerMaskHead * visitedPairs, visible: perPair * visiblePairs(plan)};
}

/** Visible (query, key) pairs summed over heads. */
function visiblePairs(plan: AttentionPlan): number {
  const layout = plan.layout;
  let pairs = 0;
  const maskHeads = layout == null ? 1 : layout.numHeads;
  for (let h = 0; h < maskHeads; h++) {
    for (let i = 0; i < plan.seqQ; i++) {
      const [lo, hi] = windowKeyRange(plan, i);
      if (lo > hi) continue;
      if (layout == null) {
        pairs += hi - lo + 1;
        continue;
      }
      const bs = layout.blockSize, base = (h * layout.numQueryBlocks + Math.floor(i / bs)) * layout.numKeyBlocks;
      for (let kb = Math.floor(lo / bs); kb <= Math.floor(hi / bs); kb++) {
        if (layout.mask[base + kb] !== 0) pairs += Math.min(hi, kb * bs + bs - 1) - Math.max(lo, kb * bs) + 1;
      }
    }
  }
  return pairs * plan.heads / maskHeads;
}
