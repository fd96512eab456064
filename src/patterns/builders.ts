/**
 * BlockLayout builders. Each takes (seqQ, seqK, blockSize, params) and returns a layout of
 * ceil(seqQ/blockSize) × ceil(seqK/blockSize) blocks. "Diagonal block" of query block qb means the key block holding
 * the key aligned (bottom-right, like causal masks) with the last query of qb: floor((last + seqK - seqQ) / bs).
 */
import {BlockLayout, checkNonNegativeInt, checkPositiveInt, createLayout} from './block_layout.js';

interface Grid {
  qBlocks: number;
  kBlocks: number;
  /** Diagonal key block of each query block (may be < 0 or >= kBlocks when seqQ > seqK). */
  diag: (qb: number) => number;
}

function grid(seqQ: number, seqK: number, blockSize: number): Grid {
  checkPositiveInt('seqQ', seqQ);
  checkPositiveInt('seqK', seqK);
  checkPositiveInt('blockSize', blockSize);
  const qBlocks = Math.ceil(seqQ / blockSize), kBlocks = Math.ceil(seqK / blockSize);
  const diag = (qb: number) => Math.floor((Math.min(qb * blockSize + blockSize, seqQ) - 1 + seqK - seqQ) / blockSize);
  return {qBlocks, kBlocks, diag};
}

/** Builder params must be an object; omitted params read as {} (required fields then fail their own checks). */
function paramsOf<T extends object>(builder: string, params: T | undefined): T {
  if (params === undefined) return {} as T;
  if (params === null || typeof params !== 'object' || Array.isArray(params)) {
    throw new Error(`${builder}: params must be an object, got ${params === null ? 'null' : typeof params}`);
  }
  return params;
}

function isBlockLayout(x: unknown): x is BlockLayout {
  const l = x as BlockLayout;
  return l != null && typeof l === 'object' && l.mask instanceof Uint8Array && Number.isInteger(l.blockSize);
}

function heads(numHeads: number | undefined): number {
  const n = numHeads ?? 1;
  checkPositiveInt('numHeads', n);
  return n;
}

/**
 * From a [layoutHeads][queryBlocks][keyBlocks] array of 0/1 or booleans (a [queryBlocks][keyBlocks] array is taken
 * as one layout head).
 */
export function fromBlockMask(
    mask: ArrayLike<ArrayLike<ArrayLike<number | boolean>>> | ArrayLike<ArrayLike<number | boolean>>,
    blockSize: number): BlockLayout {
  checkPositiveInt('blockSize', blockSize);
  if (mask == null || typeof mask !== 'object' || mask.length === 0) {
    throw new Error('mask must be a non-empty [layoutHeads][queryBlocks][keyBlocks] array of 0/1 or booleans');
  }
  const m3 = (typeof (mask[0] as ArrayLike<unknown>)?.[0] === 'object' ? mask : [mask]) as
      ArrayLike<ArrayLike<ArrayLike<number | boolean>>>;
  const numHeads = m3.length, qBlocks = m3[0]?.length ?? 0, kBlocks = m3[0]?.[0]?.length ?? 0;
  if (qBlocks === 0 || kBlocks === 0) throw new Error('mask must have at least one query block and one key block');
  for (let h = 0; h < numHeads; h++) {
    if (m3[h]?.length !== qBlocks) throw new Error(`mask[${h}] must have ${qBlocks} query blocks`);
    for (let qb = 0; qb < qBlocks; qb++) {
      const row = m3[h][qb];
      if (row?.length !== kBlocks) throw new Error(`mask[${h}][${qb}] must have ${kBlocks} key blocks`);
      for (let kb = 0; kb < kBlocks; kb++) {
        const x = row[kb];
        if (x !== 0 && x !== 1 && x !== true && x !== false) {
          throw new Error(`mask[${h}][${qb}][${kb}] must be 0, 1, true or false, got ${String(x)}`);
        }
      }
    }
  }
  return createLayout(numHeads, qBlocks, kBlocks, blockSize, (h, qb, kb) => Boolean(m3[h][qb][kb]));
}

export interface LocalParams {
  /** Key blocks before the diagonal block (default 1). */
  leftBlocks?: number;
  /** Key blocks after the diagonal block (default 0: causal-like band). */
  rightBlocks?: number;
}

/** A band of blocks around the diagonal block: kb in [diag - leftBlocks, diag + rightBlocks]. */
export function local(seqQ: number, seqK: number, blockSize: number, params?: LocalParams): BlockLayout {
  const g = grid(seqQ, seqK, blockSize);
  params = paramsOf('local', params);
  const left = params.leftBlocks ?? 1, right = params.rightBlocks ?? 0;
  checkNonNegativeInt('leftBlocks', left);
  checkNonNegativeInt('rightBlocks', right);
  return createLayout(1, g.qBlocks, g.kBlocks, blockSize, (_h, qb, kb) => {
    const d = g.diag(qb);
    return kb >= d - left && kb <= d + right;
  });
}

export interface StridedParams {
  /** Every stride-th key block counting back (and forward) from the diagonal block is on. */
  stride: number;
  /** Also a local band of this many blocks before the diagonal block (default 0). */
  localBlocks?: number;
}

/** Sparse Transformer's strided pattern at block level: (diag - kb) % stride == 0, plus an optional local band. */
export function strided(seqQ: number, seqK: number, blockSize: number, params: StridedParams): BlockLayout {
  const g = grid(seqQ, seqK, blockSize);
  params = paramsOf<StridedParams>('strided', params);
  checkPositiveInt('stride', params.stride);
  const localBlocks = params.localBlocks ?? 0;
  checkNonNegativeInt('localBlocks', localBlocks);
  return createLayout(1, g.qBlocks, g.kBlocks, blockSize, (_h, qb, kb) => {
    const d = g.diag(qb);
    return (d - kb) % params.stride === 0 || (kb <= d && kb >= d - localBlocks);
  });
}

export interface FixedParams {
  /** Segment length in blocks (Sparse Transformer's l / blockSize). */
  blocksPerSegment: number;
  /** The last `summaryBlocks` blocks of every segment are seen by all queries (Sparse Transformer's c; default 1). */
  summaryBlocks?: number;
}

/** Sparse Transformer's fixed pattern: a query block sees its own segment and every segment's summary blocks. */
export function fixed(seqQ: number, seqK: number, blockSize: number, params: FixedParams): BlockLayout {
  const g = grid(seqQ, seqK, blockSize);
  params = paramsOf<FixedParams>('fixed', params);
  const l = params.blocksPerSegment;
  checkPositiveInt('blocksPerSegment', l);
  const c = params.summaryBlocks ?? 1;
  checkPositiveInt('summaryBlocks', c);
  if (c > l) throw new Error(`summaryBlocks (${c}) must be at most blocksPerSegment (${l})`);
  return createLayout(1, g.qBlocks, g.kBlocks, blockSize, (_h, qb, kb) => {
    const d = Math.max(0, g.diag(qb));
    return Math.floor(kb / l) === Math.floor(d / l) || kb % l >= l - c;
  });
}

export interface BigBirdParams {
  /** Width of the sliding band in blocks, centred on the diagonal block (default 3). */
  windowBlocks?: number;
  /** The first globalBlocks key blocks are seen by every query, and the first globalBlocks query blocks see all. */
  globalBlocks?: number;
  /** Random key blocks per query block (default 2), drawn with `seed`. */
  randomBlocks?: number;
  seed?: number;
  /** Layout heads: 1 (default) or the op's heads, each with its own random blocks. */
  numHeads?: number;
}

/** BigBird: window + global + random blocks (seeded, reproducible). */
export function bigBird(seqQ: number, seqK: number, blockSize: number, params?: BigBirdParams): BlockLayout {
  const g = grid(seqQ, seqK, blockSize);
  params = paramsOf('bigBird', params);
  const w = params.windowBlocks ?? 3, glob = params.globalBlocks ?? 1, r = params.randomBlocks ?? 2;
  checkNonNegativeInt('windowBlocks', w);
  checkNonNegativeInt('globalBlocks', glob);
  checkNonNegativeInt('randomBlocks', r);
  const numHeads = heads(params.numHeads);
  const rand = mulberry32(params.seed ?? 0);
  const random = new Set<number>();
  for (let h = 0; h < numHeads; h++) {
    for (let qb = 0; qb < g.qBlocks; qb++) {
      for (let i = 0; i < Math.min(r, g.kBlocks); i++) {
        random.add((h * g.qBlocks + qb) * g.kBlocks + Math.floor(rand() * g.kBlocks));
      }
    }
  }
  const half = Math.floor(w / 2);
  return createLayout(numHeads, g.qBlocks, g.kBlocks, blockSize, (h, qb, kb) => {
    const d = g.diag(qb);
    return (w > 0 && kb >= d - half && kb <= d + (w - 1 - half)) || kb < glob || qb < glob ||
        random.has((h * g.qBlocks + qb) * g.kBlocks + kb);
  });
}

export interface LongformerParams {
  /** Blocks on each side of the diagonal block (default 1). */
  windowBlocks?: number;
  /** Indices of global blocks: every query sees them and, as query blocks, they see every key (default [0]). */
  globalBlocks?: number[];
}

/** Longformer: a symmetric sliding band plus global blocks. */
export function longformer(seqQ: number, seqK: number, blockSize: number, params?: LongformerParams): BlockLayout {
  const g = grid(seqQ, seqK, blockSize);
  params = paramsOf('longformer', params);
  const w = params.windowBlocks ?? 1;
  checkNonNegativeInt('windowBlocks', w);
  const globalBlocks = params.globalBlocks ?? [0];
  if (!Array.isArray(globalBlocks)) {
    throw new Error(`globalBlocks must be an array of non-negative integers, got ${JSON.stringify(globalBlocks)}`);
  }
  const globals = new Set(globalBlocks);
  for (const b of globals) checkNonNegativeInt('globalBlocks[]', b);
  return createLayout(1, g.qBlocks, g.kBlocks, blockSize, (_h, qb, kb) => {
    const d = g.diag(qb);
    return Math.abs(kb - d) <= w || globals.has(kb) || globals.has(qb);
  });
}

function combine(name: string, layouts: BlockLayout[], op: (a: boolean, b: boolean) => boolean): BlockLayout {
  if (layouts.length === 0) throw new Error(`${name} needs at least one layout`);
  const first = layouts[0];
  let numHeads = 1;
  layouts.forEach((l, i) => {
    if (!isBlockLayout(l)) throw new Error(`${name}: layouts[${i}] must be a BlockLayout (from patterns.*)`);
  });
  layouts.forEach((l, i) => {
    if (l.blockSize !== first.blockSize || l.numQueryBlocks !== first.numQueryBlocks ||
        l.numKeyBlocks !== first.numKeyBlocks) {
      throw new Error(`${name}: layouts[${i}] must have blockSize ${first.blockSize} and ${first.numQueryBlocks}x${
          first.numKeyBlocks} blocks like layouts[0], got blockSize ${l.blockSize}, ${l.numQueryBlocks}x${
          l.numKeyBlocks}`);
    }
    if (l.numHeads !== 1) {
      if (numHeads !== 1 && numHeads !== l.numHeads) {
        throw new Error(`${name}: layouts[${i}] has ${l.numHeads} heads, others have ${numHeads}`);
      }
      numHeads = l.numHeads;
    }
  });
  const {numQueryBlocks: qn, numKeyBlocks: kn} = first;
  return createLayout(numHeads, qn, kn, first.blockSize, (h, qb, kb) => {
    let on = layouts[0].mask[((h % layouts[0].numHeads) * qn + qb) * kn + kb] !== 0;
    for (let i = 1; i < layouts.length; i++) {
      on = op(on, layouts[i].mask[((h % layouts[i].numHeads) * qn + qb) * kn + kb] !== 0);
    }
    return on;
  });
}

/** Blocks on in any of the layouts (same blockSize and block counts; 1-head layouts broadcast over heads). */
export function union(...layouts: BlockLayout[]): BlockLayout {
  return combine('union', layouts, (a, b) => a || b);
}

/** Blocks on in every one of the layouts. */
export function intersect(...layouts: BlockLayout[]): BlockLayout {
  return combine('intersect', layouts, (a, b) => a && b);
}

/** Small deterministic PRNG (mulberry32). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
