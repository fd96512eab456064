/**
 * The data of the plan's options (queryOffsets, mask, bias, ALiBi, segment ids, dropout) as the cpu executors read it,
 * once per kernel call, and the per-tile work it adds (src/plan/plan.ts states the semantics):
 *   - scoreTerms: bias[b, h, i, j] − slope[b, h]·|pos_i − j| added to the final scores of a tile;
 *   - allowRow: the element conditions (mask, segment ids, a −Infinity bias) of one row, used to build a tile's
 *     allowed elements before any product (a tile none of whose elements is allowed is skipped);
 *   - keepRow: the dropout keep decisions of one row (src/plan/philox.ts, bit-identical with the other backends).
 * A plan without options makes none of these calls: the executors keep their plain paths.
 */
import type {MathBackendCPU} from '@tensorflow/tfjs-backend-cpu';
import type {TensorInfo} from '@tensorflow/tfjs-core';
import {DropoutPlan, dropoutKeepRow} from '../../src/plan/philox.js';
import {AttentionPlan, PairOperand} from '../../src/plan/plan.js';
import type {AttentionInputs} from '../attention_kernel_func.js';

type Values = Float32Array | Int32Array | Uint8Array;

function valuesOf(backend: MathBackendCPU, t: TensorInfo): Values {
  return backend.data.get(t.dataId).values as Values;
}

/** A mask or bias with its broadcast strides (element (b, h, i, j) at b·batchStride + h·headStride + i·seqK + j). */
interface PairValues<T extends Values> {
  values: T;
  batchStride: number;
  headStride: number;
}

function pairValues<T extends Values>(
    backend: MathBackendCPU, operand: PairOperand | null, t: TensorInfo, name: string, plan: AttentionPlan):
    PairValues<T> | null {
  if (operand == null) return null;
  const size = operand.shape.reduce((a, b) => a * b, 1);
  if (t.dtype !== operand.dtype || t.shape.length !== operand.shape.length ||
      t.shape.some((d, i) => d !== operand.shape[i])) {
    throw new Error(`attention kernel input ${name} must be ${operand.dtype} [${operand.shape.join(', ')}] as planned, ` +
                    `got ${t.dtype} [${t.shape.join(', ')}]`);
  }
  const values = valuesOf(backend, t) as T;
  if (values.length !== size || size % (plan.seqQ * plan.seqK) !== 0) {
    throw new Error(`attention kernel input ${name} holds ${values.length} values, expected ${size}`);
  }
  return {values, batchStride: operand.batchStride, headStride: operand.headStride};
}

function int32Input(backend: MathBackendCPU, t: TensorInfo, name: string, shape: number[]): Int32Array {
  if (t.dtype !== 'int32' || t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    throw new Error(`attention kernel input ${name} must be int32 [${shape.join(', ')}] as planned, got ${t.dtype} [${
        t.shape.join(', ')}]`);
  }
  return valuesOf(backend, t) as Int32Array;
}

export class OptionOperands {
  /** Query offset of each batch: queryOffsets[b] clamped to [offsetMin, offsetMax], or diagonalOffset. */
  readonly offsets: Int32Array;
  readonly mask: PairValues<Values> | null;
  readonly bias: PairValues<Float32Array> | null;
  /** ALiBi slopes [batch | 1, heads] and the batch stride (0 or heads). */
  readonly slopes: Float32Array | null;
  readonly slopeBatchStride: number;
  readonly queryIds: Int32Array | null;
  readonly keyIds: Int32Array | null;
  readonly dropout: DropoutPlan | null;
  /** Every tile needs the per-element conditions (mask, segment ids, a bias that may be −Infinity). */
  readonly elementWise: boolean;
  /** Tiles get additive score terms (bias, ALiBi). */
  readonly hasScoreTerms: boolean;
  private readonly keep: Uint8Array;

  constructor(backend: MathBackendCPU, readonly plan: AttentionPlan, inputs: AttentionInputs) {
    const {batch, seqQ, seqK, heads} = plan;
    this.offsets = new Int32Array(batch).fill(plan.diagonalOffset);
    if (plan.hasQueryOffsets) {
      const given = int32Input(backend, inputs.queryOffsets, 'queryOffsets', [batch]);
      for (let b = 0; b < batch; b++) this.offsets[b] = Math.min(plan.offsetMax, Math.max(plan.offsetMin, given[b]));
    }
    this.mask = pairValues(backend, plan.mask, inputs.mask, 'mask', plan);
    this.bias = pairValues<Float32Array>(backend, plan.bias, inputs.bias, 'bias', plan);
    if (plan.alibi != null) {
      const t = inputs.alibiSlopes;
      const rows = plan.alibi.batchStride === 0 ? 1 : batch;
      if (t.dtype !== 'float32' || t.shape.length !== 2 || t.shape[0] !== rows || t.shape[1] !== heads) {
        throw new Error(`attention kernel input alibiSlopes must be float32 [${rows}, ${heads}] as planned, got ${
            t.dtype} [${t.shape.join(', ')}]`);
      }
      this.slopes = valuesOf(backend, t) as Float32Array;
    } else {
      this.slopes = null;
    }
    this.slopeBatchStride = plan.alibi?.batchStride ?? 0;
    this.queryIds = plan.hasSegments ? int32Input(backend, inputs.queryIds, 'queryIds', [batch, seqQ]) : null;
    this.keyIds = plan.hasSegments ? int32Input(backend, inputs.keyIds, 'keyIds', [batch, seqK]) : null;
    this.dropout = plan.dropout;
    this.elementWise = this.mask != null || this.bias != null || plan.hasSegments;
    this.hasScoreTerms = this.bias != null || this.slopes != null;
    this.keep = new Uint8Array(seqK);
  }

  /**
   * s[base + c] += bias(b, h, i, k0 + c) − slope(b, h)·|pos_i − (k0 + c)| for c in [c0, c1), pos_i = i + offsets[b].
   */
  scoreTerms(s: Float64Array, base: number, b: number, h: number, i: number, k0: number, c0: number, c1: number):
      void {
    const bias = this.bias;
    if (bias != null) {
      const row = b * bias.batchStride + h * bias.headStride + i * this.plan.seqK + k0;
      for (let c = c0; c < c1; c++) s[base + c] += bias.values[row + c];
    }
    if (this.slopes != null) {
      const slope = this.slopes[b * this.slopeBatchStride + h], pos = i + this.offsets[b] - k0;
      for (let c = c0; c < c1; c++) s[base + c] -= slope * Math.abs(pos - c);
    }
  }

  /**
   * Clears allowed[base + c] for c in [lo, hi) where (b, h, i, k0 + c) is masked by the mask, the segment ids or a
   * −Infinity bias.
   */
  allowRow(allowed: Uint8Array, base: number, b: number, h: number, i: number, k0: number, lo: number, hi: number):
      void {
    const seqK = this.plan.seqK;
    const mask = this.mask;
    if (mask != null) {
      const row = b * mask.batchStride + h * mask.headStride + i * seqK + k0;
      // Visible iff truthy (non-zero and not NaN), as the reference and the GPU kernels read a float mask.
      for (let c = lo; c < hi; c++) if (!mask.values[row + c]) allowed[base + c] = 0;
    }
    const bias = this.bias;
    if (bias != null) {
      const row = b * bias.batchStride + h * bias.headStride + i * seqK + k0;
      for (let c = lo; c < hi; c++) if (bias.values[row + c] === -Infinity) allowed[base + c] = 0;
    }
    if (this.queryIds != null) {
      const id = this.queryIds[b * this.plan.seqQ + i], keys = this.keyIds!, row = b * seqK + k0;
      for (let c = lo; c < hi; c++) if (keys[row + c] !== id) allowed[base + c] = 0;
    }
  }

  /** kept[base + c] = dropout keep decision (0/1) of (b, h, i, k0 + c) for c in [c0, c1). */
  keepRow(kept: Uint8Array, base: number, b: number, h: number, i: number, k0: number, c0: number, c1: number): void {
    const keep = dropoutKeepRow(this.dropout!, b, h, i, k0 + c0, k0 + c1, this.keep);
    for (let c = c0; c < c1; c++) kept[base + c] = keep[c - c0];
  }
}
