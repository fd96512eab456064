/**
 * Building blocks shared by the cpu attention forward and backward executors: tile sizes, reading inputs, gathering a
 * kv head into contiguous arrays, per-element masks of partial tiles, and the one small matrix-product micro-kernel
 * every tile product goes through.
 *
 * Precision and speed: every sum is a JS number (a double), and everything that accumulates across tiles (the output
 * accumulator, dQ, dK, dV) or is a raw product (scores, dP) lives in a Float64Array, which keeps the kernels within
 * ~2e-7 of the float64 reference. The operands of the tile products (gathered q, k, v, dO tiles and the
 * probabilities P and dS) are Float32Arrays: inputs are float32 anyway, and half the bytes keep a 64×64 operand tile
 * in L1, which measured 15–35% faster than float64 operands. The micro-kernel always sees (Float32Array, Float32Array,
 * Float64Array), so its call sites stay monomorphic, which V8 rewards.
 */
import type {MathBackendCPU} from '@tensorflow/tfjs-backend-cpu';
import type {TensorInfo} from '@tensorflow/tfjs-core';
import {AttentionPlan, layoutHead, windowKeyRangeAt} from '../../src/plan/plan.js';
import type {AttentionInputs, SupportedFeatures} from '../attention_kernel_func.js';
import type {OptionOperands} from './option_operands_cpu.js';

/** The options (PlanFeature) the cpu kernels execute, forward and backward. */
export const SUPPORTED: SupportedFeatures = ['queryOffsets', 'mask', 'bias', 'alibi', 'segments', 'dropout'];

/** Query rows × keys per tile. */
export interface CpuTiles {
  blockQ: number;
  blockK: number;
}

/**
 * Dense and windowed plans: 32 query rows × 64 keys (the tile products then fit in L1/L2 and partial tiles on a causal
 * diagonal waste little). Sparse plans: tiles aligned with the layout blocks, so a tile is never visited for one on
 * block among many off ones and most visited tiles are full.
 */
export function chooseTiles(plan: AttentionPlan): CpuTiles {
  const layout = plan.layout;
  if (layout == null) return {blockQ: 32, blockK: 64};
  const bs = layout.blockSize;
  let t: number;
  if (bs >= 16 && bs <= 128) {
    t = bs;
  } else if (bs < 16) {
    t = bs * Math.ceil(16 / bs);  // a multiple of the block size: tiles still cover whole layout blocks
  } else {
    t = 64;  // a divisor of bs in [16, 64] keeps tiles inside one layout block (16 when there is none)
    while (t > 16 && bs % t !== 0) t--;
  }
  return {blockQ: t, blockK: t};
}

/**
 * The kernels trust the plan for sizes: make sure the tensors match it (someone may call runKernel directly), so a
 * mismatch is an Error naming the input instead of reads past the end.
 */
export function checkInputShapes(plan: AttentionPlan, inputs: Partial<Record<string, TensorInfo>>): void {
  const {batch, seqQ, seqK, heads, kvHeads, headDim} = plan;
  const expected: Record<string, number[]> = {
    q: [batch, seqQ, heads, headDim], k: [batch, seqK, kvHeads, headDim], v: [batch, seqK, kvHeads, headDim],
    keyLengths: [batch], output: [batch, seqQ, heads, headDim], lse: [batch, heads, seqQ],
    dOutput: [batch, seqQ, heads, headDim], dLse: [batch, heads, seqQ],
  };
  for (const [name, t] of Object.entries(inputs)) {
    const shape = expected[name];
    if (t == null || shape == null) continue;
    const dtype = name === 'keyLengths' ? 'int32' : 'float32';
    if (t.dtype !== dtype || t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
      throw new Error(`attention kernel input ${name} must be ${dtype} [${shape.join(', ')}] as planned, got ${
          t.dtype} [${t.shape.join(', ')}]`);
    }
  }
}

/**
 * What both executors start from: every input checked against the plan, and the values of q, k, v and of
 * keyLengths (per batch, see readKeyLengths). The grad kernel's further inputs are checked here too.
 */
export function readAttentionInputs(backend: MathBackendCPU, plan: AttentionPlan, inputs: AttentionInputs):
    {q: Float32Array, k: Float32Array, v: Float32Array, keyLens: Int32Array} {
  checkInputShapes(plan, inputs);
  return {
    q: float32Values(backend, inputs.q), k: float32Values(backend, inputs.k), v: float32Values(backend, inputs.v),
    keyLens: readKeyLengths(plan, backend, inputs.keyLengths),
  };
}

export function float32Values(backend: MathBackendCPU, t: TensorInfo): Float32Array {
  return backend.data.get(t.dataId).values as Float32Array;
}

/** keyLengths[b] for every batch (seqK everywhere when the plan has no keyLengths), checked against [0, seqK]. */
export function readKeyLengths(plan: AttentionPlan, backend: MathBackendCPU, keyLengths: TensorInfo): Int32Array {
  const out = new Int32Array(plan.batch).fill(plan.seqK);
  if (!plan.hasKeyLengths) return out;
  const values = backend.data.get(keyLengths.dataId).values as Int32Array;
  for (let b = 0; b < plan.batch; b++) {
    const n = values[b];
    if (!(n >= 0 && n <= plan.seqK)) {
      throw new Error(`keyLengths[${b}] must be an integer in [0, seqK=${plan.seqK}], got ${n}`);
    }
    out[b] = n;
  }
  return out;
}

/** Copies rows [0, n) of kv head hk of batch b from [batch, seqK, kvHeads, D] into dst [n, D]. */
export function gatherHead(
    src: Float32Array, plan: AttentionPlan, b: number, hk: number, n: number, dst: Float32Array): void {
  const D = plan.headDim, rowStride = plan.kvHeads * D;
  let s = (b * plan.seqK * plan.kvHeads + hk) * D;
  for (let j = 0, o = 0; j < n; j++, s += rowStride) {
    for (let d = 0; d < D; d++) dst[o++] = src[s + d];
  }
}

/** Like gatherHead, transposed: dst [D, seqK] (row stride seqK) holds rows [0, n). */
export function gatherHeadTransposed(
    src: Float32Array, plan: AttentionPlan, b: number, hk: number, n: number, dst: Float32Array): void {
  const D = plan.headDim, Sk = plan.seqK, rowStride = plan.kvHeads * D;
  let s = (b * Sk * plan.kvHeads + hk) * D;
  for (let j = 0; j < n; j++, s += rowStride) {
    for (let d = 0; d < D; d++) dst[d * Sk + j] = src[s + d];
  }
}

/** Copies query rows [q0, q0 + rows) of head h, batch b from [batch, seqQ, heads, D] into dst [rows, D]. */
export function gatherQueryTile(
    src: Float32Array, plan: AttentionPlan, b: number, h: number, q0: number, rows: number, dst: Float32Array): void {
  const D = plan.headDim, rowStride = plan.heads * D;
  let s = ((b * plan.seqQ + q0) * plan.heads + h) * D;
  for (let r = 0, o = 0; r < rows; r++, s += rowStride) {
    for (let d = 0; d < D; d++) dst[o++] = src[s + d];
  }
}

/** dst [D, ld] ← transpose of src [rows, D]. */
export function transposeTile(src: Float32Array, rows: number, D: number, dst: Float32Array, ld: number): void {
  for (let r = 0, o = 0; r < rows; r++) {
    for (let d = 0; d < D; d++) dst[d * ld + r] = src[o++];
  }
}

/**
 * Turns raw dot products in columns [c0, c1) of rows [0, rows) of s into final scores: t = scale·s, then
 * softcap·tanh(t / softcap) when softcap > 0. Runs before masking, so masked entries can simply be set to -Infinity.
 */
export function finalScores(
    s: Float64Array, ld: number, rows: number, c0: number, c1: number, scale: number, softcap: number): void {
  if (softcap > 0) {
    const mul = scale / softcap;
    for (let r = 0; r < rows; r++) {
      for (let c = r * ld + c0, e = r * ld + c1; c < e; c++) s[c] = softcap * Math.tanh(s[c] * mul);
    }
  } else {
    for (let r = 0; r < rows; r++) {
      for (let c = r * ld + c0, e = r * ld + c1; c < e; c++) s[c] *= scale;
    }
  }
}

/**
 * The visible part of a partial tile. For each row r, keys [lo[r], hi[r]) (tile-relative) pass the window, seqK and
 * keyLengths bounds; the layout (if any) then masks whole layout blocks inside that range. c0..c1 is the union over the
 * rows, the only columns the tile products need to compute.
 */
export class PartialTile {
  readonly lo: Int32Array;
  readonly hi: Int32Array;
  c0 = 0;
  c1 = 0;
  /** Set by restrict: every element of the tile's rows × cols is allowed (the tile can take the unmasked path). */
  allVisible = false;
  /** Set by restrict: `allowed` (row stride ld) holds the tile's visible elements. */
  private restricted = false;
  private allowed = new Uint8Array(0);

  constructor(blockQ: number) {
    this.lo = new Int32Array(blockQ);
    this.hi = new Int32Array(blockQ);
  }

  /**
   * Fills lo/hi/c0/c1 for rows [q0, q0 + rows) (at key positions from q0 + offset, the batch's query offset) and keys
   * [k0, k0 + cols) below keyLen; false when all is masked.
   */
  setRanges(plan: AttentionPlan, q0: number, rows: number, k0: number, cols: number, keyLen: number, offset: number):
      boolean {
    this.restricted = false;
    const end = Math.min(cols, keyLen - k0);
    let c0 = cols, c1 = 0;
    for (let r = 0; r < rows; r++) {
      const [wlo, whi] = windowKeyRangeAt(plan, q0 + r + offset);
      const lo = Math.max(0, wlo - k0), hi = Math.min(end, whi + 1 - k0);
      this.lo[r] = lo;
      this.hi[r] = hi;
      if (lo < hi) {
        if (lo < c0) c0 = lo;
        if (hi > c1) c1 = hi;
      }
    }
    this.c0 = c0;
    this.c1 = c1;
    return c0 < c1;
  }

  /**
   * After setRanges, for plans with element conditions (mask, segment ids, bias): which elements of the tile may
   * attend — the window and keyLengths ranges, the layout, then ops.allowRow — as allowed[r·ld + c], before any
   * product. c0..c1 shrink to the allowed columns; false when no element is allowed (the tile is skipped).
   * allVisible: every element of rows [0, rows) × columns [0, cols) is allowed.
   */
  restrict(plan: AttentionPlan, ops: OptionOperands, b: number, h: number, q0: number, rows: number, k0: number,
           ld: number, cols: number): boolean {
    const size = this.lo.length * ld;
    const allowed = this.allowed.length >= size ? this.allowed : (this.allowed = new Uint8Array(size));
    const layout = plan.layout;
    let c0 = ld, c1 = 0, allVisible = true;
    for (let r = 0; r < rows; r++) {
      const base = r * ld, lo = this.lo[r], hi = this.hi[r];
      allowed.fill(0, base, base + ld);
      if (lo >= hi) {
        allVisible = false;
        continue;
      }
      allowed.fill(1, base + lo, base + hi);
      if (layout != null) {
        const bs = layout.blockSize;
        const maskRow = (layoutHead(plan, h) * layout.numQueryBlocks + Math.floor((q0 + r) / bs)) *
            layout.numKeyBlocks;
        for (let c = lo; c < hi;) {
          const kb = Math.floor((k0 + c) / bs);
          const next = Math.min(hi, (kb + 1) * bs - k0);
          if (layout.mask[maskRow + kb] === 0) allowed.fill(0, base + c, base + next);
          c = next;
        }
      }
      ops.allowRow(allowed, base, b, h, q0 + r, k0, lo, hi);
      let first = lo;
      while (first < hi && allowed[base + first] === 0) first++;
      if (first === hi) {
        allVisible = false;
        continue;
      }
      let last = hi;
      while (allowed[base + last - 1] === 0) last--;
      if (first !== 0 || last !== cols || (allVisible && allowed.subarray(base + first, base + last).includes(0))) {
        allVisible = false;
      }
      if (first < c0) c0 = first;
      if (last > c1) c1 = last;
    }
    this.c0 = c0;
    this.c1 = c1;
    this.allVisible = allVisible && c0 < c1;
    this.restricted = true;
    return c0 < c1;
  }

  /**
   * Sets s[r * ld + c] to -Infinity for every masked column c in [c0, c1) of rows [0, rows). With `hidden` (same layout
   * as s), also sets hidden to 1 there and to 0 at the visible columns of [c0, c1): the backward needs to tell a masked
   * key from a visible one whose score is -Infinity (an infinite k), which s alone cannot.
   */
  mask(plan: AttentionPlan, h: number, q0: number, rows: number, k0: number, s: Float64Array, ld: number,
       hidden: Uint8Array | null = null): void {
    const {c0, c1} = this;
    if (this.restricted) {
      const allowed = this.allowed;
      for (let r = 0; r < rows; r++) {
        for (let i = r * ld + c0, e = r * ld + c1; i < e; i++) {
          const hide = allowed[i] === 0;
          if (hide) s[i] = -Infinity;
          if (hidden != null) hidden[i] = hide ? 1 : 0;
        }
      }
      return;
    }
    const layout = plan.layout;
    for (let r = 0; r < rows; r++) {
      const base = r * ld, lo = this.lo[r], hi = this.hi[r];
      if (hidden != null) hidden.fill(0, base + c0, base + c1);
      if (lo >= hi) {
        hideSpan(s, hidden, base + c0, base + c1);
        continue;
      }
      hideSpan(s, hidden, base + c0, base + lo);
      hideSpan(s, hidden, base + hi, base + c1);
      if (layout == null) continue;
      // Walk the layout blocks overlapping [lo, hi) in this row and mask the off ones.
      const bs = layout.blockSize;
      const maskRow = (layoutHead(plan, h) * layout.numQueryBlocks + Math.floor((q0 + r) / bs)) * layout.numKeyBlocks;
      for (let c = lo; c < hi;) {
        const kb = Math.floor((k0 + c) / bs);
        const next = Math.min(hi, (kb + 1) * bs - k0);
        if (layout.mask[maskRow + kb] === 0) hideSpan(s, hidden, base + c, base + next);
        c = next;
      }
    }
  }
}

/** s[from, to) ← -Infinity, and hidden[from, to) ← 1 when hidden is given. */
function hideSpan(s: Float64Array, hidden: Uint8Array | null, from: number, to: number): void {
  if (from >= to) return;
  s.fill(-Infinity, from, to);
  if (hidden != null) hidden.fill(1, from, to);
}

/**
 * C[cOff + m·ldc + n] (+)= Σ_k A[aOff + m·lda + k] · B[bOff + n·ldb + k] for m < M, n < N, k < K: every tile product
 * in the kernels is written in this "A times B-transposed" form so the inner loop is a unit-stride dot product.
 * Register-blocked 2 rows × 4 columns (8 independent sums, 6 loads per 8 multiply-adds). With accumulate false C is
 * overwritten.
 */
export function gemmABt(
    A: Float32Array, aOff: number, lda: number, B: Float32Array, bOff: number, ldb: number, C: Float64Array,
    cOff: number, ldc: number, M: number, N: number, K: number, accumulate: boolean): void {
  let m = 0;
  for (; m + 2 <= M; m += 2) {
    const a0 = aOff + m * lda, a1 = a0 + lda, c0 = cOff + m * ldc, c1 = c0 + ldc;
    let n = 0;
    for (; n + 4 <= N; n += 4) {
      const b0 = bOff + n * ldb, b1 = b0 + ldb, b2 = b1 + ldb, b3 = b2 + ldb;
      let s00 = 0, s01 = 0, s02 = 0, s03 = 0, s10 = 0, s11 = 0, s12 = 0, s13 = 0;
      for (let k = 0; k < K; k++) {
        const x = A[a0 + k], y = A[a1 + k];
        const w0 = B[b0 + k], w1 = B[b1 + k], w2 = B[b2 + k], w3 = B[b3 + k];
        s00 += x * w0; s01 += x * w1; s02 += x * w2; s03 += x * w3;
        s10 += y * w0; s11 += y * w1; s12 += y * w2; s13 += y * w3;
      }
      if (accumulate) {
        C[c0 + n] += s00; C[c0 + n + 1] += s01; C[c0 + n + 2] += s02; C[c0 + n + 3] += s03;
        C[c1 + n] += s10; C[c1 + n + 1] += s11; C[c1 + n + 2] += s12; C[c1 + n + 3] += s13;
      } else {
        C[c0 + n] = s00; C[c0 + n + 1] = s01; C[c0 + n + 2] = s02; C[c0 + n + 3] = s03;
        C[c1 + n] = s10; C[c1 + n + 1] = s11; C[c1 + n + 2] = s12; C[c1 + n + 3] = s13;
      }
    }
    for (; n < N; n++) {
      const b0 = bOff + n * ldb;
      let s0 = 0, s1 = 0;
      for (let k = 0; k < K; k++) {
        const w = B[b0 + k];
        s0 += A[a0 + k] * w;
        s1 += A[a1 + k] * w;
      }
      if (accumulate) {
        C[c0 + n] += s0; C[c1 + n] += s1;
      } else {
        C[c0 + n] = s0; C[c1 + n] = s1;
      }
    }
  }
  if (m < M) {  // one row left
    const a0 = aOff + m * lda, c0 = cOff + m * ldc;
    for (let n = 0; n < N; n++) {
      const b0 = bOff + n * ldb;
      let s = 0;
      for (let k = 0; k < K; k++) s += A[a0 + k] * B[b0 + k];
      C[c0 + n] = accumulate ? C[c0 + n] + s : s;
    }
  }
}
