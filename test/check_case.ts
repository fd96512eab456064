/**
 * Runs one shared case on the current tfjs backend and measures it against the float64 reference.
 * Environment-agnostic: takes the tfjs module and the library module as arguments, so a browser page can run it
 * against the bundle users load, and node can run it against the sources.
 */
import type * as tfType from '@tensorflow/tfjs-core';
import type * as libType from '../src/index.js';
import type {BlockLayout} from '../src/patterns/block_layout.js';
import type {AttentionCase, LayoutSpec} from './cases.js';
import {RefProblem, referenceBackward, referenceForward} from './reference.js';

export type Tf = typeof tfType;
export type Lib = typeof libType;

export interface CaseResult {
  name: string;
  seed: number;
  /** max |actual − expected| / max(max |expected|, 1e-3) per quantity; lse compares finite entries only. */
  errors: {output: number; lse: number; dq: number; dk: number; dv: number};
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

export function refProblem(lib: Lib, c: AttentionCase): RefProblem {
  const window = c.op === 'sliding' ?
      (typeof c.windowSize === 'number' ? [c.windowSize, 0] : c.windowSize!) as [number, number] : null;
  return {
    batch: c.batch, seqQ: c.seqQ, seqK: c.seqK, heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim,
    scale: c.scale ?? 1 / Math.sqrt(c.headDim), softcap: c.softcap ?? 0, causal: c.op !== 'sliding' && !!c.causal,
    window, layout: c.layout ? buildLayout(lib, c.layout, c.seqQ, c.seqK) : null, keyLengths: c.keyLengths ?? null,
  };
}

function relError(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string, problems: string[]): number {
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
  return maxErr / maxRef;
}

/** Runs the case's op through the public API (forward with lse, then tf.grads) and compares with the reference. */
export async function checkCase(tf: Tf, lib: Lib, c: AttentionCase, seed: number): Promise<CaseResult> {
  const p = refProblem(lib, c);
  const qShape = [c.batch, c.seqQ, c.heads, c.headDim], kShape = [c.batch, c.seqK, c.kvHeads, c.headDim];
  const size = (s: number[]) => s.reduce((a, b) => a * b, 1);
  const qa = randomArray(size(qShape), seed), ka = randomArray(size(kShape), seed + 1);
  const va = randomArray(size(kShape), seed + 2), dOa = randomArray(size(qShape), seed + 3);
  const dLa = c.lseGrad ? randomArray(c.batch * c.heads * c.seqQ, seed + 4) : null;

  const before = tf.memory().numTensors;
  const q = tf.tensor(qa, qShape), k = tf.tensor(ka, kShape), v = tf.tensor(va, kShape);
  const dOut = tf.tensor(dOa, qShape);
  const dLse = dLa ? tf.tensor(dLa, [c.batch, c.heads, c.seqQ]) : null;
  const keyLengths = c.keyLengths == null ? undefined :
      c.keyLengthsTensor ? tf.tensor1d(c.keyLengths, 'int32') : c.keyLengths;
  const common = {scale: c.scale, softcap: c.softcap, keyLengths, returnLse: true as const};
  const run = (qq: tfType.Tensor, kk: tfType.Tensor, vv: tfType.Tensor) =>
      c.op === 'flash' ? lib.flashAttention(qq, kk, vv, {...common, causal: c.causal}) :
      c.op === 'sliding' ? lib.slidingWindowAttention(qq, kk, vv, {...common, windowSize: c.windowSize!}) :
                           lib.sparseAttention(qq, kk, vv, {...common, causal: c.causal, layout: p.layout!});

  const {output, lse} = run(q, k, v);
  const [dq, dk, dv] = tf.grads((qq: tfType.Tensor, kk: tfType.Tensor, vv: tfType.Tensor) => {
    const r = run(qq, kk, vv);
    const loss = tf.sum(tf.mul(r.output, dOut));
    // lse is -Infinity on empty rows; mask those out of the loss value (the gradient is unaffected).
    return dLse ? tf.add(loss, tf.sum(tf.mul(tf.where(tf.isFinite(r.lse), r.lse, tf.zerosLike(r.lse)), dLse))) : loss;
  })([q, k, v]);
  const [outA, lseA, dqA, dkA, dvA] = await Promise.all([output, lse, dq, dk, dv].map((t) => t.data()));
  [q, k, v, dOut, output, lse, dq, dk, dv].forEach((t) => t.dispose());
  dLse?.dispose();
  if (keyLengths instanceof tf.Tensor) keyLengths.dispose();
  const leakedTensors = tf.memory().numTensors - before;

  const ref = referenceForward(p, qa, ka, va);
  const grads = referenceBackward(p, qa, ka, va, dOa, dLa);
  const problems: string[] = [];
  const errors = {
    output: relError(outA as Float32Array, ref.output, 'output', problems),
    lse: relError(lseA as Float32Array, ref.lse, 'lse', problems),
    dq: relError(dqA as Float32Array, grads.dq, 'dq', problems),
    dk: relError(dkA as Float32Array, grads.dk, 'dk', problems),
    dv: relError(dvA as Float32Array, grads.dv, 'dv', problems),
  };
  // Empty rows must be exactly 0, not merely small.
  for (let b = 0; b < c.batch; b++) {
    for (let h = 0; h < c.heads; h++) {
      for (let i = 0; i < c.seqQ; i++) {
        if (ref.lse[(b * c.heads + h) * c.seqQ + i] !== -Infinity) continue;
        const o = ((b * c.seqQ + i) * c.heads + h) * c.headDim;
        for (let d = 0; d < c.headDim; d++) {
          if (outA[o + d] !== 0 || dqA[o + d] !== 0) {
            problems.push(`empty row b${b} h${h} i${i}: output/dq not exactly 0`);
            d = c.headDim;
          }
        }
      }
    }
  }
  return {name: c.name, seed, errors, problems, leakedTensors};
}
