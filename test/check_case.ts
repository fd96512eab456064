/**
 * Runs one shared case on the current tfjs backend and measures it against the float64 reference.
 * Environment-agnostic: takes the tfjs module and the library module as arguments, so a browser page can run it
 * against the bundle users load, and node can run it against the sources.
 */
import type * as tfType from '@tensorflow/tfjs-core';
import type * as libType from '../src/index.js';
import type {BlockLayout} from '../src/patterns/block_layout.js';
import {makeDropoutPlan} from '../src/plan/philox.js';
import type {AttentionCase, BiasSpec, LayoutSpec, MaskSpec, PairShape} from './cases.js';
import {RefPairOperand, RefProblem, referenceBackward, referenceForward} from './reference.js';

export type Tf = typeof tfType;
export type Lib = typeof libType;

export interface CaseResult {
  name: string;
  seed: number;
  /** max |actual − expected| / max(max |expected|, 1e-3) per quantity; lse compares finite entries only. */
  errors: {output: number; lse: number; dq: number; dk: number; dv: number; dBias: number};
  /**
   * The denominators of those errors (relError's max(max |expected|, 1e-3)) for the quantities the fp32 rounding floor
   * applies to (test/rounding_floor.ts): error · maxReference is the absolute error.
   */
  maxReference: {lse: number; dq: number; dk: number; dBias: number};
  /** Problems that are not tolerance questions (mismatched -Infinity, NaN, non-zero empty rows). */
  problems: string[];
  /** tf.memory().numTensors after minus before. */
  leakedTensors: number;
}

/** Seeded uniform numbers in [-1, 1), never all zero. */
export function randomArray(n: number, seed: number): Float32Array {
  let a = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    out[i] = 2 * (((t ^ (t >>> 14)) >>> 0) / 4294967296) - 1;
  }
  return out;
}

export function buildLayout(lib: Lib, spec: LayoutSpec, seqQ: number, seqK: number): BlockLayout {
  switch (spec.name) {
    case 'union': return lib.patterns.union(...spec.parts.map((p) => buildLayout(lib, p, seqQ, seqK)));
    case 'intersect': return lib.patterns.intersect(...spec.parts.map((p) => buildLayout(lib, p, seqQ, seqK)));
    case 'fromBlockMask': return lib.patterns.fromBlockMask(spec.mask, spec.blockSize);
    default: {
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      const builder = lib.patterns[spec.name] as (...a: any[]) => BlockLayout;
      return builder(seqQ, seqK, spec.blockSize, spec.params ?? {});
    }
  }
}

/** Tensor shape and strides of a mask/bias case shape (see PairShape). */
export function pairShape(c: AttentionCase, shape: PairShape): {dims: number[]; batchStride: number; headStride: number} {
  const pair = c.seqQ * c.seqK;
  switch (shape) {
    case 'q': return {dims: [c.seqQ, c.seqK], batchStride: 0, headStride: 0};
    case 'bq': return {dims: [c.batch, c.seqQ, c.seqK], batchStride: pair, headStride: 0};
    case '1q': return {dims: [1, c.seqQ, c.seqK], batchStride: 0, headStride: 0};
    case '11': return {dims: [1, 1, c.seqQ, c.seqK], batchStride: 0, headStride: 0};
    case 'b1': return {dims: [c.batch, 1, c.seqQ, c.seqK], batchStride: pair, headStride: 0};
    case '1h': return {dims: [1, c.heads, c.seqQ, c.seqK], batchStride: 0, headStride: pair};
    case 'bh': return {dims: [c.batch, c.heads, c.seqQ, c.seqK], batchStride: c.heads * pair, headStride: pair};
  }
}

/** The case's mask values (0/1), in the layout of its shape; deterministic from the seed. */
export function maskValues(c: AttentionCase, spec: MaskSpec, seed: number): RefPairOperand {
  const {dims, batchStride, headStride} = pairShape(c, spec.shape);
  const n = dims.reduce((a, b) => a * b, 1);
  const noise = randomArray(n, seed);
  const density = spec.density ?? 0.6;
  const values = new Float32Array(n);
  const pair = c.seqQ * c.seqK;
  for (let e = 0; e < n; e++) {
    const b = batchStride > 0 ? Math.floor(e / batchStride) : 0;
    const i = Math.floor((e % pair) / c.seqK), j = e % c.seqK;
    switch (spec.pattern ?? 'random') {
      case 'causal': values[e] = j <= i ? 1 : 0; break;
      case 'padding': values[e] = j < c.seqK - Math.floor(density * c.seqK * (b + 1) / c.batch) ? 1 : 0; break;
      case 'empty-row': values[e] = i !== 0 && noise[e] * 0.5 + 0.5 < density ? 1 : 0; break;
      default: values[e] = noise[e] * 0.5 + 0.5 < density ? 1 : 0;
    }
  }
  return {values, batchStride, headStride};
}

/** The case's bias values in the layout of its shape (random in [-2, 2), a fraction set to -Infinity). */
export function biasValues(c: AttentionCase, spec: BiasSpec, seed: number): RefPairOperand {
  const {dims, batchStride, headStride} = pairShape(c, spec.shape);
  const n = dims.reduce((a, b) => a * b, 1);
  const values = randomArray(n, seed).map((x) => 2 * x);
  if (spec.negInf) {
    const pick = randomArray(n, seed + 7);
    for (let e = 0; e < n; e++) if (pick[e] * 0.5 + 0.5 < spec.negInf) values[e] = -Infinity;
  }
  return {values, batchStride, headStride};
}

/** ALiBi slopes of the case, [batch | 1][heads] flattened: the usual 2^(-8(h+1)/H), scaled per batch if perBatch. */
export function alibiValues(c: AttentionCase): {slopes: Float32Array; batchStride: number} {
  const rows = c.alibi?.perBatch ? c.batch : 1;
  const slopes = new Float32Array(rows * c.heads);
  for (let b = 0; b < rows; b++) {
    for (let h = 0; h < c.heads; h++) slopes[b * c.heads + h] = Math.pow(2, -8 * (h + 1) / c.heads) * (1 + 0.5 * b);
  }
  return {slopes, batchStride: rows > 1 ? c.heads : 0};
}

/** Segment ids [batch, length] flattened from per-row document lengths (ids 0, 1, 2, … per row). */
export function segmentIdValues(lengths: number[][], batch: number, length: number): Int32Array {
  const ids = new Int32Array(batch * length);
  for (let b = 0; b < batch; b++) {
    let pos = 0;
    lengths[b % lengths.length].forEach((len, id) => {
      for (let t = 0; t < len && pos < length; t++) ids[b * length + pos++] = id;
    });
    while (pos < length) ids[b * length + pos++] = lengths[b % lengths.length].length;
  }
  return ids;
}

function queryOffsetValues(c: AttentionCase): number[] | null {
  if (c.queryOffsets == null) return null;
  return typeof c.queryOffsets === 'number' ? new Array(c.batch).fill(c.queryOffsets) : c.queryOffsets;
}

export function refProblem(lib: Lib, c: AttentionCase, seed = 0): RefProblem {
  const window = c.op === 'sliding' ?
      (typeof c.windowSize === 'number' ? [c.windowSize, 0] : c.windowSize!) as [number, number] : null;
  return {
    batch: c.batch, seqQ: c.seqQ, seqK: c.seqK, heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim,
    scale: c.scale ?? 1 / Math.sqrt(c.headDim), softcap: c.softcap ?? 0, causal: c.op !== 'sliding' && !!c.causal,
    window, layout: c.layout ? buildLayout(lib, c.layout, c.seqQ, c.seqK) : null, keyLengths: c.keyLengths ?? null,
    queryOffsets: queryOffsetValues(c),
    mask: c.mask ? maskValues(c, c.mask, seed + 11) : null,
    bias: c.bias ? biasValues(c, c.bias, seed + 12) : null,
    alibi: c.alibi ? alibiValues(c) : null,
    segments: c.segments ? {
      query: segmentIdValues(c.segments, c.batch, c.seqQ),
      key: segmentIdValues(c.keySegments ?? c.segments, c.batch, c.seqK),
    } : null,
    dropout: c.dropout ? makeDropoutPlan(c.dropout.rate, c.dropout.seed) : null,
  };
}

/**
 * max |actual − expected| / max(max |expected|, 1e-3) over the entries both hold finite values (a -Infinity or
 * non-finite mismatch is a problem instead); `scales[what]`, when given, receives that denominator.
 */
function relError(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, problems: string[],
                  scales?: Record<string, number>): number {
  let maxErr = 0, maxRef = 1e-3;
  if (actual.length !== expected.length) {
    problems.push(`${what}: ${actual.length} values, expected ${expected.length}`);
    return Infinity;
  }
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i], e = expected[i];
    if (e === -Infinity || a === -Infinity) {
      if (a !== e) problems.push(`${what}[${i}] = ${a}, expected ${e}`);
      continue;
    }
    if (!Number.isFinite(a)) {
      problems.push(`${what}[${i}] = ${a}, expected ${e}`);
      continue;
    }
    maxErr = Math.max(maxErr, Math.abs(a - e));
    maxRef = Math.max(maxRef, Math.abs(e));
  }
  if (problems.length > 8) problems.splice(8, problems.length - 8, '…');
  if (scales != null) scales[what] = maxRef;
  return maxErr / maxRef;
}

/**
 * Runs the case's op through the public API (forward with lse, then tf.grads unless forwardOnly) and compares with
 * the reference.
 */
export async function checkCase(tf: Tf, lib: Lib, c: AttentionCase, seed: number): Promise<CaseResult> {
  const p = refProblem(lib, c, seed);
  const qShape = [c.batch, c.seqQ, c.heads, c.headDim], kShape = [c.batch, c.seqK, c.kvHeads, c.headDim];
  const size = (s: number[]) => s.reduce((a, b) => a * b, 1);
  const qa = randomArray(size(qShape), seed), ka = randomArray(size(kShape), seed + 1);
  const va = randomArray(size(kShape), seed + 2), dOa = randomArray(size(qShape), seed + 3);
  const dLa = c.lseGrad ? randomArray(c.batch * c.heads * c.seqQ, seed + 4) : null;

  const before = tf.memory().numTensors;
  const owned: tfType.Tensor[] = [];
  const own = <T extends tfType.Tensor>(t: T): T => (owned.push(t), t);
  const q = own(tf.tensor(qa, qShape)), k = own(tf.tensor(ka, kShape)), v = own(tf.tensor(va, kShape));
  const dOut = own(tf.tensor(dOa, qShape));
  const dLse = dLa ? own(tf.tensor(dLa, [c.batch, c.heads, c.seqQ])) : null;
  const keyLengths = c.keyLengths == null ? undefined :
      c.keyLengthsTensor ? own(tf.tensor1d(c.keyLengths, 'int32')) : c.keyLengths;
  const offsets = p.queryOffsets;
  const queryOffsets = offsets == null ? undefined :
      c.queryOffsetsTensor ? own(tf.tensor1d(offsets, 'int32')) : c.queryOffsets;
  const mask = c.mask == null ? undefined : own(tf.tensor(
      c.mask.dtype === 'float32' ? p.mask!.values as Float32Array : Int32Array.from(p.mask!.values),
      pairShape(c, c.mask.shape).dims, c.mask.dtype ?? 'bool'));
  const bias = c.bias == null ? undefined :
      own(tf.tensor(p.bias!.values as Float32Array, pairShape(c, c.bias.shape).dims, 'float32'));
  const alibiSlopes = p.alibi == null ? undefined : c.alibi!.asTensor || c.alibi!.perBatch ?
      own(tf.tensor2d(p.alibi.slopes as Float32Array, [p.alibi.batchStride > 0 ? c.batch : 1, c.heads])) :
      Array.from(p.alibi.slopes);
  const segmentIds = p.segments == null ? undefined : c.keySegments == null ?
      own(tf.tensor2d(p.segments.query as Int32Array, [c.batch, c.seqQ], 'int32')) : {
        query: own(tf.tensor2d(p.segments.query as Int32Array, [c.batch, c.seqQ], 'int32')),
        key: own(tf.tensor2d(p.segments.key as Int32Array, [c.batch, c.seqK], 'int32')),
      };
  const common = {
    scale: c.scale, softcap: c.softcap, keyLengths, queryOffsets, mask, alibiSlopes, segmentIds,
    dropout: c.dropout, precision: c.precision, returnLse: true as const,
  };
  const run = (qq: tfType.Tensor, kk: tfType.Tensor, vv: tfType.Tensor, bb?: tfType.Tensor) => {
    const o = {...common, bias: bb};
    return c.op === 'flash' ? lib.flashAttention(qq, kk, vv, {...o, causal: c.causal}) :
        c.op === 'sliding' ? lib.slidingWindowAttention(qq, kk, vv, {...o, windowSize: c.windowSize!}) :
                             lib.sparseAttention(qq, kk, vv, {...o, causal: c.causal, layout: p.layout!});
  };

  const {output, lse} = run(q, k, v, bias);
  const gradInputs = bias ? [q, k, v, bias] : [q, k, v];
  const grads = c.forwardOnly ? [] : tf.grads((...xs: tfType.Tensor[]) => {
    const r = run(xs[0], xs[1], xs[2], xs[3]);
    const loss = tf.sum(tf.mul(r.output, dOut));
    // lse is -Infinity on empty rows; mask those out of the loss value (the gradient is unaffected).
    return dLse ? tf.add(loss, tf.sum(tf.mul(tf.where(tf.isFinite(r.lse), r.lse, tf.zerosLike(r.lse)), dLse))) : loss;
  })(gradInputs);
  const results = await Promise.all([output, lse, ...grads].map((t) => t.data()));
  const [outA, lseA, dqA, dkA, dvA, dBiasA] = results;
  [output, lse, ...grads, ...owned].forEach((t) => t.dispose());
  const leakedTensors = tf.memory().numTensors - before;

  const ref = referenceForward(p, qa, ka, va);
  const problems: string[] = [];
  const maxReference = {lse: 1e-3, dq: 1e-3, dk: 1e-3, dBias: 1e-3};
  const errors = {
    output: relError(outA as Float32Array, ref.output, 'output', problems),
    lse: relError(lseA as Float32Array, ref.lse, 'lse', problems, maxReference),
    dq: 0, dk: 0, dv: 0, dBias: 0,
  };
  if (!c.forwardOnly) {
    const refGrads = referenceBackward(p, qa, ka, va, dOa, dLa);
    errors.dq = relError(dqA as Float32Array, refGrads.dq, 'dq', problems, maxReference);
    errors.dk = relError(dkA as Float32Array, refGrads.dk, 'dk', problems, maxReference);
    errors.dv = relError(dvA as Float32Array, refGrads.dv, 'dv', problems);
    if (refGrads.dBias != null) {
      errors.dBias = relError(dBiasA as Float32Array, refGrads.dBias, 'dBias', problems, maxReference);
    }
  }
  // Empty rows must be exactly 0, not merely small.
  for (let b = 0; b < c.batch; b++) {
    for (let h = 0; h < c.heads; h++) {
      for (let i = 0; i < c.seqQ; i++) {
        if (ref.lse[(b * c.heads + h) * c.seqQ + i] !== -Infinity) continue;
        const o = ((b * c.seqQ + i) * c.heads + h) * c.headDim;
        for (let d = 0; d < c.headDim; d++) {
          if (outA[o + d] !== 0 || (dqA != null && dqA[o + d] !== 0)) {
            problems.push(`empty row b${b} h${h} i${i}: output/dq not exactly 0`);
            d = c.headDim;
          }
        }
      }
    }
  }
  return {name: c.name, seed, errors, maxReference, problems, leakedTensors};
}
