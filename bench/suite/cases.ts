/**
 * What the suite measures: benchmark cases (one op at one shape) and the sweeps that produce them.
 * Env-agnostic (no node imports): the browser bundle uses it too.
 */

/** The op variants raced against tfjs's naive composition. */
export type OpName = 'flash' | 'causal' | 'sliding' | 'sparse' | 'gqa';
export const ALL_OPS: OpName[] = ['flash', 'causal', 'sliding', 'sparse', 'gqa'];

export type Mode = 'forward' | 'backward';
/** 'ours' = this library's op, 'naive' = src/layers/naive_attention.ts, 'ort' = ONNX Runtime Web's MultiHeadAttention. */
export type Impl = 'ours' | 'naive' | 'ort';

export interface BenchCase {
  /** Unique within a run, e.g. "sliding-w256/D64/S1024". */
  id: string;
  /** The case without its sweep variable (seq for most, density for the sparse sweep): one line in a plot. */
  series: string;
  op: OpName;
  batch: number;
  seq: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  /** sliding: causal band of `window` keys before the diagonal (windowSize w = [w, 0]). */
  window?: number;
  /** sparse: fraction of (query block, key block) pairs that are on (random, seeded, diagonal always on). */
  density?: number;
  /** sparse: layout block size. */
  blockSize?: number;
}

export interface SweepConfig {
  ops: OpName[];
  seqs: number[];
  headDims: number[];
  batch: number;
  heads: number;
  /** kv heads of the gqa cases (heads / kvHeads query heads share one kv head). */
  gqaKvHeads: number;
  window: number;
  /** The sparse density sweep runs at this seq (the largest of `seqs` that is <= it). */
  sparseSeq: number;
  densities: number[];
  sparseBlockSize: number;
}

export const QUICK_SWEEP: SweepConfig = {
  ops: ALL_OPS,
  seqs: [64, 256],
  headDims: [64],
  batch: 1,
  heads: 2,
  gqaKvHeads: 1,
  window: 32,
  sparseSeq: 256,
  densities: [0.25, 1],
  sparseBlockSize: 32,
};

export const DEFAULT_SWEEP: SweepConfig = {
  ops: ALL_OPS,
  seqs: [256, 512, 1024, 2048, 4096, 8192],
  headDims: [64, 128],
  batch: 1,
  heads: 8,
  gqaKvHeads: 2,
  window: 256,
  sparseSeq: 2048,
  densities: [0.05, 0.1, 0.25, 0.5, 1],
  sparseBlockSize: 64,
};

/**
 * Expands a sweep into cases, ordered so that each series grows in cost (the runner cuts a series off once one of
 * its sizes is too slow). flash/causal run at every head dim; sliding, gqa and the sparse density sweep at the first.
 */
export function buildCases(s: SweepConfig): BenchCase[] {
  const cases: BenchCase[] = [];
  const base = {batch: s.batch, heads: s.heads, kvHeads: s.heads};
  const d0 = s.headDims[0];
  for (const op of s.ops) {
    if (op === 'sparse') {
      const seq = Math.max(...s.seqs.filter((n) => n <= s.sparseSeq), Math.min(...s.seqs));
      for (const density of [...s.densities].sort((a, b) => a - b)) {
        cases.push({
          ...base, op, seq, headDim: d0, density, blockSize: s.sparseBlockSize,
          id: `sparse-bs${s.sparseBlockSize}/D${d0}/S${seq}/d${density}`, series: `sparse-bs${s.sparseBlockSize}/D${d0}/S${seq}`,
        });
      }
      continue;
    }
    const dims = op === 'flash' || op === 'causal' ? s.headDims : [d0];
    for (const headDim of dims) {
      for (const seq of [...s.seqs].sort((a, b) => a - b)) {
        const c: BenchCase = {...base, op, seq, headDim, id: '', series: ''};
        let name: string = op;
        if (op === 'sliding') {
          c.window = s.window;
          name = `sliding-w${s.window}`;
        }
        if (op === 'gqa') {
          c.kvHeads = s.gqaKvHeads;
          name = `gqa-h${s.heads}kv${s.gqaKvHeads}`;
        }
        c.series = `${name}/D${headDim}`;
        c.id = `${c.series}/S${seq}`;
        cases.push(c);
      }
    }
  }
  return cases;
}

/** Human-readable shape, e.g. "B1 S1024 H8/2 D64". */
export function describeShape(c: BenchCase): string {
  const heads = c.kvHeads === c.heads ? `H${c.heads}` : `H${c.heads}/${c.kvHeads}`;
  return `B${c.batch} S${c.seq} ${heads} D${c.headDim}`;
}
