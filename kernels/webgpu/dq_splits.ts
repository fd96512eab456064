/**
 * How many dQ accumulators (nsplits) the split-dQ backward keeps (attention_backward.ts). Its dK/dV pass runs one
 * workgroup per (split, kv head, batch), each over numKeyTiles / nsplits key tiles, so nsplits sets the pass's
 * parallelism and its extra memory (nsplits · batch · seqQ · heads · headDim floats).
 *
 * The rule: enough workgroups to fill a large GPU — TARGET_WORKGROUPS, four per SM of a 132-SM H100/H200 (the dK/dV
 * tile chosen under Dawn's 48 KiB workgroup-memory limit, 32×32 at headDim 64, takes ~43 KiB: an SM's 228 KiB holds
 * five; every split's workgroup runs to the end of the pass, so one wave with no tail is the aim) — with every
 * split owning the same number of key tiles (nsplits = ceil(tiles / ceil(tiles / wanted))), at most one split per
 * key tile, and capped so that the accumulators stay within MAX_ACCUMULATOR_BYTES and one batch of the `work`
 * buffer fits one storage binding. WebGPU does not report the SM count; a smaller GPU just runs more waves. Not
 * measured yet: the bench's --nsplits flag sweeps it (bench/suite/sections/webgpu_backward.ts).
 * Extra memory traffic of the design: zeroing and reducing nsplits accumulators (2 · nsplits · |dQ|), and one
 * read-add-write of a query tile's dQ rows per visited (key tile, query tile) pair (2 · numKeyTiles · |dQ| dense).
 */

export const TARGET_WORKGROUPS = 528;
export const MAX_ACCUMULATOR_BYTES = 512 * 1024 * 1024;

export interface DqSplitProblem {
  batch: number;
  kvHeads: number;
  numKeyTiles: number;
  /** Floats of one dQ accumulator per batch (seqQ · heads · headDim) and of dK (= dV) per batch. */
  queryFloats: number;
  keyFloats: number;
  /** Bytes one storage binding may hold (maxStorageBufferBindingSize less the offset alignment). */
  bindingRoom: number;
}

/** nsplits by the rule above, or 0 when not even one accumulator fits one binding (use the two-pass design). */
export function chooseDqSplits(p: DqSplitProblem, override: number | null = null): number {
  const fitBinding = Math.floor((p.bindingRoom / 4 - 2 * p.keyFloats) / p.queryFloats);
  const fitBudget = Math.floor(MAX_ACCUMULATOR_BYTES / (4 * p.batch * p.queryFloats));
  const cap = Math.min(p.numKeyTiles, fitBinding, Math.max(1, fitBudget));
  if (cap < 1) return 0;
  if (override != null) return Math.min(override, cap);
  const wanted = Math.min(cap, Math.max(1, Math.ceil(TARGET_WORKGROUPS / (p.batch * p.kvHeads))));
  const tilesPerSplit = Math.ceil(p.numKeyTiles / wanted);
  return Math.ceil(p.numKeyTiles / tilesPerSplit);
}
