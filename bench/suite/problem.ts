/**
 * A benchmark case turned into the AttentionPlan (the library's own semantics) and, for sparse cases, its
 * BlockLayout (random, seeded: the same on every machine and in every process). Env-agnostic, and free of the
 * kernels (the suite's parent process counts FLOPs with it without loading any backend).
 */
import {BlockLayout, createLayout} from '../../src/patterns/block_layout.js';
import {mulberry32} from '../../src/patterns/builders.js';
import {AttentionPlan, makePlan} from '../../src/plan/plan.js';
import {BenchCase} from './cases.js';

export interface CasePlan {
  plan: AttentionPlan;
  layout: BlockLayout | null;
}

/**
 * Block layout with about `density` of its blocks on: each query block keeps its diagonal block (so no row is
 * empty) and every other block is on with the probability that makes the expected total `density`.
 */
export function randomLayout(seq: number, blockSize: number, density: number, seed = 1): BlockLayout {
  const n = Math.ceil(seq / blockSize);
  const rand = mulberry32(seed);
  const p = n === 1 ? 1 : Math.min(1, Math.max(0, (density * n - 1) / (n - 1)));
  return createLayout(1, n, n, blockSize, (_h, qb, kb) => qb === kb || rand() < p);
}

export function casePlan(c: BenchCase): CasePlan {
  const layout = c.op === 'sparse' ? randomLayout(c.seq, c.blockSize!, c.density!) : null;
  const windowLeft = c.op === 'sliding' ? c.window! : -1;
  const windowRight = c.op === 'causal' || c.op === 'sliding' ? 0 : -1;
  const kind = c.op === 'sliding' ? 'sliding' : c.op === 'sparse' ? 'sparse' : 'flash';
  const plan = makePlan({
    kind, batch: c.batch, seqQ: c.seq, seqK: c.seq, heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim,
    scale: 1 / Math.sqrt(c.headDim), softcap: 0, windowLeft, windowRight, layout, hasKeyLengths: false,
  });
  return {plan, layout};
}

/**
 * Whether the naive composition takes an additive mask: every masked op does (a sparse layout's mask even at
 * density 1, as a user of the naive path would pass it); dense ones don't.
 */
export function needsMask(c: BenchCase): boolean {
  return c.op !== 'flash' && c.op !== 'gqa';
}
