/**
 * The `precision` option (issue 19), modelled on PyTorch's torch.set_float32_matmul_precision:
 *   'highest' (default) — fp32 operands and accumulation everywhere: today's kernels.
 *   'high'    — near-fp32 from f16 tensor cores: each fp32 operand split into a high and a low f16 part, the three
 *               significant products summed in f32 (cuBLAS/CUTLASS's 3×f16 emulation). Only where the device has
 *               f16 subgroup-matrix configurations; elsewhere 'highest' runs.
 *   'medium'  — q·k and P·V with f16 operands and f32 accumulation (softmax statistics in f32): subgroup-matrix tiles
 *               where the device has f16 configurations, vec4<f16> math where it has only shader-f16, else 'highest'.
 * A precision is a request, not a contract: a backend runs the most precise path it has at or above the requested
 * cost, and records which path ran (lastAttentionPath()). The default comes from the tf.env() flag
 * ATTENTION_PRECISION.
 */
import * as tf from '@tensorflow/tfjs-core';

export const ATTENTION_PRECISIONS = ['highest', 'high', 'medium'] as const;
export type AttentionPrecision = typeof ATTENTION_PRECISIONS[number];

export const PRECISION_FLAG = 'ATTENTION_PRECISION';

function isPrecision(value: unknown): value is AttentionPrecision {
  return (ATTENTION_PRECISIONS as readonly unknown[]).includes(value);
}

const env = tf.env();
// A second copy of this module (two bundles of the library) must not register the flag twice.
if (!(PRECISION_FLAG in (env as unknown as {flagRegistry: object}).flagRegistry)) {
  env.registerFlag(PRECISION_FLAG, () => 'highest', (value) => {
    if (!isPrecision(value)) {
      throw new Error(`tf.env() flag ${PRECISION_FLAG} must be one of ${ATTENTION_PRECISIONS.map((p) => `'${p}'`)
          .join(', ')}, got ${JSON.stringify(value)}`);
    }
  });
}

/** The option as given, checked; absent → the ATTENTION_PRECISION flag (default 'highest'). */
export function checkPrecision(precision: unknown, name = 'precision'): AttentionPrecision {
  if (precision === undefined) return env.get(PRECISION_FLAG) as AttentionPrecision;
  if (!isPrecision(precision)) {
    throw new Error(`${name} must be one of ${ATTENTION_PRECISIONS.map((p) => `'${p}'`).join(', ')}, got ${
        JSON.stringify(precision)}`);
  }
  return precision;
}

/**
 * How a kernel call did its matrix products:
 *   'fp32'                   fp32 operands (every backend; what 'highest' always runs)
 *   'f16'                    vec4<f16> operands, f32 accumulation (webgpu with shader-f16)
 *   'subgroup-matrix-f16'    f16 tensor-core tiles, f32 accumulation (webgpu with f16 subgroup-matrix configs)
 *   'subgroup-matrix-f16x3'  3×f16 split products on tensor cores, f32 accumulation ('high')
 */
export type AttentionPath = 'fp32' | 'f16' | 'subgroup-matrix-f16' | 'subgroup-matrix-f16x3';

export interface AttentionPathReport {
  /** tf.getBackend() when the kernel ran. */
  backend: string;
  /** The kernel's name, e.g. 'FlashAttention' or 'FlashAttentionGrad'. */
  kernel: string;
  requested: AttentionPrecision;
  path: AttentionPath;
}

/**
 * The last report, on globalThis: the kernels that ran may belong to another copy of this module than the caller's
 * (two bundles of the library, or ESM and CommonJS copies in one process; the first copy's kernels stay registered).
 */
const lastReport: {report: AttentionPathReport | null} = ((globalThis as Record<symbol, {report: AttentionPathReport | null}>)[
    Symbol.for('tfjs-efficient-attention/lastAttentionPath')] ??= {report: null});

/** Which path the most recent attention kernel call (forward or backward) ran; null before the first call. */
export function lastAttentionPath(): AttentionPathReport | null {
  return lastReport.report == null ? null : {...lastReport.report};
}

/** Kernels: record the path of the call in progress (the kernel wrapper records 'fp32' first; a backend that takes
 *  another path records it again). */
export function recordAttentionPath(report: AttentionPathReport): void {
  lastReport.report = report;
}
