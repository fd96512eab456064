/**
 * Float64 reference attention, written straight from the spec with per-element masks (deliberately independent of
 * src/plan so a plan bug cannot hide in both). Layout BSHD: q [B, Sq, H, D], k/v [B, Sk, Hkv, D].
 */
import type {BlockLayout} from '../src/patterns/block_layout.js';
import {DropoutPlan, dropoutKeep} from '../src/plan/philox.js';

/** A mask or bias [.., seqQ, seqK]: element (b, h, i, j) at b·batchStride + h·headStride + i·seqK + j. */
export interface RefPairOperand {
  values: ArrayLike<number>;
  batchStride: number;
  headStride: number;
}

export interface RefProblem {
  batch: number;
  seqQ: number;
  seqK: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  scale: number;
  softcap: number;
  causal: boolean;
  /** [left, right], -1 unbounded; null = no window. */
  window: [number, number] | null;
  layout: BlockLayout | null;
  keyLengths: number[] | null;
  /** Per-batch query offsets (query i at key position offset + i); null = seqK - seqQ. */
  queryOffsets?: number[] | null;
  mask?: RefPairOperand | null;
  bias?: RefPairOperand | null;
  /** ALiBi slopes, [batch | 1][heads] flattened, slope (b, h) at b·batchStride + h. */
  alibi?: {slopes: ArrayLike<number>, batchStride: number} | null;
  /** Segment ids, [batch, seqQ] and [batch, seqK] flattened. */
  segments?: {query: ArrayLike<number>, key: ArrayLike<number>} | null;
  /** Dropout (the generator itself is checked against Random123's known answers in test/philox.test.ts). */
  dropout?: DropoutPlan | null;
}

function queryPosition(p: RefProblem, b: number, i: number): number {
  return i + (p.queryOffsets != null ? p.queryOffsets[b] : p.seqK - p.seqQ);
}

function pairIndex(p: RefProblem, o: RefPairOperand, b: number, h: number, i: number, j: number): number {
  return b * o.batchStride + h * o.headStride + i * p.seqK + j;
}

/** bias + ALiBi added to the (softcapped) score of (b, h, i, j). */
function scoreBias(p: RefProblem, b: number, h: number, i: number, j: number): number {
  let add = 0;
  if (p.bias != null) add += p.bias.values[pairIndex(p, p.bias, b, h, i, j)];
  if (p.alibi != null) add -= p.alibi.slopes[b * p.alibi.batchStride + h] * Math.abs(queryPosition(p, b, i) - j);
  return add;
}

/** The dropout factor of element (b, h, i, j): 0 if dropped, 1 / (1 - rate) if kept, 1 without dropout. */
function dropoutFactor(p: RefProblem, b: number, h: number, i: number, j: number): number {
  if (p.dropout == null) return 1;
  return dropoutKeep(p.dropout, b, h, i, j) ? 1 / (1 - p.dropout.rate) : 0;
}

export function refVisible(p: RefProblem, b: number, h: number, i: number, j: number): boolean {
  const diag = queryPosition(p, b, i);
  if (p.causal && j > diag) return false;
  if (p.window != null) {
    const [left, right] = p.window;
    if (left >= 0 && j < diag - left) return false;
    if (right >= 0 && j > diag + right) return false;
  }
  if (p.layout != null) {
    const l = p.layout, bs = l.blockSize;
    const lh = l.numHeads === 1 ? 0 : h;
    if (!l.mask[(lh * l.numQueryBlocks + Math.floor(i / bs)) * l.numKeyBlocks + Math.floor(j / bs)]) return false;
  }
  if (p.keyLengths != null && j >= p.keyLengths[b]) return false;
  if (p.mask != null && !p.mask.values[pairIndex(p, p.mask, b, h, i, j)]) return false;
  if (p.segments != null && p.segments.query[b * p.seqQ + i] !== p.segments.key[b * p.seqK + j]) return false;
  return true;
}

type Arr = ArrayLike<number>;

/** Final score t = softcap(scale·q·k) and its derivative dt/ds (s = scale·q·k). */
function score(p: RefProblem, q: Arr, qo: number, k: Arr, ko: number): [number, number] {
  let dot = 0;
  for (let d = 0; d < p.headDim; d++) dot += q[qo + d] * k[ko + d];
  const s = p.scale * dot;
  if (p.softcap > 0) {
    const t = Math.tanh(s / p.softcap);
    return [p.softcap * t, 1 - t * t];
  }
  return [s, 1];
}

export interface RefForward {
  output: Float64Array;
  lse: Float64Array;
}

export function referenceForward(p: RefProblem, q: Arr, k: Arr, v: Arr): RefForward {
  const {batch: B, seqQ: Sq, seqK: Sk, heads: H, kvHeads: Hk, headDim: D} = p;
  const g = H / Hk;
  const output = new Float64Array(B * Sq * H * D);
  const lse = new Float64Array(B * H * Sq);
  const t = new Float64Array(Sk);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const hk = Math.floor(h / g);
      for (let i = 0; i < Sq; i++) {
        const qo = ((b * Sq + i) * H + h) * D;
        let max = -Infinity;
        for (let j = 0; j < Sk; j++) {
          t[j] = refVisible(p, b, h, i, j) ?
              score(p, q, qo, k, ((b * Sk + j) * Hk + hk) * D)[0] + scoreBias(p, b, h, i, j) : -Infinity;
          max = Math.max(max, t[j]);
        }
        if (max === -Infinity) {
          lse[(b * H + h) * Sq + i] = -Infinity;
          continue;
        }
        let sum = 0;
        for (let j = 0; j < Sk; j++) sum += t[j] === -Infinity ? 0 : Math.exp(t[j] - max);
        lse[(b * H + h) * Sq + i] = max + Math.log(sum);
        for (let j = 0; j < Sk; j++) {
          if (t[j] === -Infinity) continue;
          const pj = Math.exp(t[j] - max) / sum * dropoutFactor(p, b, h, i, j);
          const vo = ((b * Sk + j) * Hk + hk) * D;
          for (let d = 0; d < D; d++) output[qo + d] += pj * v[vo + d];
        }
      }
    }
  }
  return {output, lse};
}

export interface RefGrads {
  dq: Float64Array;
  dk: Float64Array;
  dv: Float64Array;
  /** dS summed over the bias's broadcast axes (the bias's own layout); null without bias. */
  dBias: Float64Array | null;
}

/** Gradients of sum(dOut∘output) + sum(dLse∘lse) with respect to q, k, v. */
export function referenceBackward(
    p: RefProblem, q: Arr, k: Arr, v: Arr, dOut: Arr, dLse: Arr | null): RefGrads {
  const {batch: B, seqQ: Sq, seqK: Sk, heads: H, kvHeads: Hk, headDim: D} = p;
  const g = H / Hk;
  const {output, lse} = referenceForward(p, q, k, v);
  const dq = new Float64Array(q.length), dk = new Float64Array(k.length), dv = new Float64Array(v.length);
  const dBias = p.bias == null ? null : new Float64Array(p.bias.values.length);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const hk = Math.floor(h / g);
      for (let i = 0; i < Sq; i++) {
        const row = (b * H + h) * Sq + i;
        if (lse[row] === -Infinity) continue;
        const qo = ((b * Sq + i) * H + h) * D;
        let delta = 0;
        for (let d = 0; d < D; d++) delta += dOut[qo + d] * output[qo + d];
        const dl = dLse == null ? 0 : dLse[row];
        for (let j = 0; j < Sk; j++) {
          if (!refVisible(p, b, h, i, j)) continue;
          const ko = ((b * Sk + j) * Hk + hk) * D;
          const [sij, dtds] = score(p, q, qo, k, ko);
          const tij = sij + scoreBias(p, b, h, i, j);
          if (tij === -Infinity) continue;  // a -Infinity bias masks
          const pij = Math.exp(tij - lse[row]);
          const z = dropoutFactor(p, b, h, i, j);
          let dp = 0;
          for (let d = 0; d < D; d++) dp += dOut[qo + d] * v[ko + d];
          const dt = pij * (z * dp - delta + dl);  // gradient of the final score t (= of the bias)
          if (dBias != null) dBias[pairIndex(p, p.bias!, b, h, i, j)] += dt;
          const ds = dt * dtds * p.scale;
          for (let d = 0; d < D; d++) {
            dv[ko + d] += pij * z * dOut[qo + d];
            dq[qo + d] += ds * k[ko + d];
            dk[ko + d] += ds * q[qo + d];
          }
        }
      }
    }
  }
  return {dq, dk, dv, dBias};
}
