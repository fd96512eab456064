/**
 * The per-call options of a plan (issues 16-18: per-batch queryOffsets, mask, bias, ALiBi, segment ids, dropout) as
 * the webgpu programs execute them: which code a plan compiles in (OptionFlags, part of every program key), the
 * uniforms they read, the WGSL helpers, and the "side" buffer.
 *
 * The side buffer. tfjs's device allows 8 storage bindings per shader stage and the attention passes already use 7-8,
 * so every small per-call input is gathered, by one element-parallel prep dispatch (SidePrepProgram), into ONE int32
 * buffer that replaces the schedule binding:
 *   [schedule copies (forward: one; backward: dK/dV's then dQ's, at the offsets of schedule_buffers.ts)]
 *   [per batch: keyLength (min(keyLengths[b], seqK) or seqK), query offset (queryOffsets[b] clamped to
 *    [offsetMin, offsetMax], or diagonalOffset)]
 *   [ALiBi slopes, [batch, heads] (f32 bits; a [heads] input is repeated)]   (only with ALiBi)
 *   [queryIds [batch, seqQ], keyIds [batch, seqK]]                            (only with segments)
 *   [backward: pass 1's row statistics, statsPerBatch per batch]             (written by the stats pass)
 * Everything there is O(batch·(seqQ + seqK + heads)); the only O(seqQ·seqK) memory read is the user's mask and bias,
 * bound as they are and indexed by their broadcast strides (src/plan/plan.ts PairOperand).
 *
 * A plan without these options never builds a side buffer and compiles exactly the code it did before.
 */
import type {TensorInfo} from '@tensorflow/tfjs-core';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {AttentionPlan, PlanFeature} from '../../src/plan/plan.js';
import {Binding, createOutput, MultiOutputProgram, runProgram, UniformType} from './program_runner.js';

/** The options compiled into a program (null: none; a static query offset needs none, it is a uniform). */
export interface OptionFlags {
  queryOffsets: boolean;
  /** WGSL element type of the mask binding (bool and int32 masks are i32 on webgpu), or null. */
  mask: 'i32' | 'f32' | null;
  bias: boolean;
  alibi: boolean;
  segments: boolean;
  dropout: boolean;
}

export function optionFlagsOf(plan: AttentionPlan): OptionFlags | null {
  const f: OptionFlags = {
    queryOffsets: plan.hasQueryOffsets,
    mask: plan.mask == null ? null : plan.mask.dtype === 'float32' ? 'f32' : 'i32',
    bias: plan.bias != null,
    alibi: plan.alibi != null,
    segments: plan.hasSegments,
    dropout: plan.dropout != null,
  };
  return f.queryOffsets || f.mask != null || f.bias || f.alibi || f.segments || f.dropout ? f : null;
}

/** Whether some per-element condition beyond window/layout/keyLengths applies (every tile is then partial). */
export function elementMasked(f: OptionFlags): boolean {
  return f.mask != null || f.segments;
}

export function optionKey(f: OptionFlags | null): string {
  if (f == null) return '';
  return `:opt${f.queryOffsets ? 'o' : ''}${f.mask != null ? `m${f.mask}` : ''}${f.bias ? 'b' : ''}${
      f.alibi ? 'a' : ''}${f.segments ? 's' : ''}${f.dropout ? 'd' : ''}`;
}

/** Extra bindings (after the program's own) a plan's options read: the mask and the bias, as they are. */
export function optionBindings(f: OptionFlags): Array<[string, string]> {
  const b: Array<[string, string]> = [];
  if (f.mask != null) b.push(['mask', f.mask]);
  if (f.bias) b.push(['bias', 'f32']);
  return b;
}

/** Uniforms the option code reads, appended to a program's own. */
export const OPTION_UNIFORMS: Array<[string, UniformType]> = [
  ['optBatchStart', 'i32'], ['sideBatch', 'i32'], ['sideAlibi', 'i32'], ['sideQueryIds', 'i32'],
  ['sideKeyIds', 'i32'], ['maskBatchStride', 'i32'], ['maskHeadStride', 'i32'], ['biasBatchStride', 'i32'],
  ['biasHeadStride', 'i32'], ['seedLo', 'u32'], ['seedHi', 'u32'], ['dropThreshold', 'u32'], ['keepScale', 'f32'],
  ['numBatches', 'i32'], ['summaryAt', 'i32'], ['summaryHeads', 'i32'], ['summaryBatchVaries', 'i32'],
  ['summaryKeyTiles', 'i32'],
];

/** Where each region of the side buffer starts (int32 elements). */
export interface SideLayout {
  schedules: number[];
  batch: number;
  alibi: number;
  queryIds: number;
  keyIds: number;
  /** Tile summaries (TileSummaryProgram), one region per tiling: [start, blockQ, blockK] each. */
  summaries: Array<{at: number; blockQ: number; blockK: number}>;
  /** Start of the backward's row statistics (= the end of what the prep pass writes). */
  stats: number;
  total: number;
}

export function sideLayout(
    plan: AttentionPlan, scheduleLengths: number[], statsElements = 0,
    summaryTiles: Array<[number, number]> = []): SideLayout {
  const schedules: number[] = [];
  let at = 0;
  for (const n of scheduleLengths) {
    schedules.push(at);
    at += n;
  }
  const batch = at;
  at += 2 * plan.batch;
  const alibi = at;
  if (plan.alibi != null) at += plan.batch * plan.heads;
  const queryIds = at;
  if (plan.hasSegments) at += plan.batch * plan.seqQ;
  const keyIds = at;
  if (plan.hasSegments) at += plan.batch * plan.seqK;
  const summaries: SideLayout['summaries'] = [];
  for (const [blockQ, blockK] of summaryTiles) {
    summaries.push({at, blockQ, blockK});
    const {batches, heads} = summaryShape(plan);
    at += batches * heads * Math.ceil(plan.seqQ / blockQ) * Math.ceil(plan.seqK / blockK);
  }
  const stats = at;
  return {schedules, batch, alibi, queryIds, keyIds, summaries, stats, total: at + statsElements};
}

/** Batches and heads of the tile summary: those along which the mask or the segment ids vary. */
export function summaryShape(plan: AttentionPlan): {batches: number; heads: number} {
  const m = plan.mask;
  return {
    batches: plan.hasSegments || (m != null && m.batchStride !== 0) ? plan.batch : 1,
    heads: m != null && m.headStride !== 0 ? plan.heads : 1,
  };
}

/** OPTION_UNIFORMS values, in order. */
export function optionUniformValues(
    plan: AttentionPlan, side: SideLayout, batchStart: number, summary = -1): number[] {
  const d = plan.dropout;
  const s = side.summaries[summary];
  const {batches, heads} = summaryShape(plan);
  return [
    batchStart, side.batch, side.alibi, side.queryIds, side.keyIds,
    plan.mask?.batchStride ?? 0, plan.mask?.headStride ?? 0, plan.bias?.batchStride ?? 0, plan.bias?.headStride ?? 0,
    d?.seedLo ?? 0, d?.seedHi ?? 0, d?.threshold ?? 0, d?.keepScale ?? 1, plan.batch,
    s?.at ?? 0, heads, batches > 1 ? 1 : 0, s == null ? 0 : Math.ceil(plan.seqK / s.blockK),
  ];
}

/** Marks a score whose bias is -Infinity (finite: no infinity arithmetic in the kernels). */
export const MASKED_TERM = -3.0e38;

/**
 * WGSL helpers over the side buffer (binding `side`) and the mask/bias bindings. optBatch / optHead (private) are
 * the (global) batch and query head the invocation works on; the kernels set them.
 *   queryOffsetOf(b)     the query offset of batch b
 *   optionVisible(i, j)  mask and segments (i < seqQ, j < seqK)
 *   scoreTerm(i, j)      bias + ALiBi of (i, j), MASKED_TERM where the bias is -Infinity (0 outside the sequences)
 *   biasRowStart(i), biasRowStartOf(b, h, i), biasElement(b, h, i, j), termWithBias(bv, alibi), alibiSlope()
 *                        its pieces, for kernels that load the bias and compute the ALiBi term themselves (the
 *                        forward prefetches the bias into registers, the backward stages it per tile)
 */
export function optionFunctions(f: OptionFlags, side: string): string {
  const offset = (b: string) => f.queryOffsets ? `queryOffsetOf(${b})` : 'uniforms.diagonalOffset';
  return `
var<private> optBatch: i32;
var<private> optHead: i32;
${f.queryOffsets ? `
fn queryOffsetOf(b: i32) -> i32 {
  return ${side}[uniforms.sideBatch + 2 * b + 1];
}` : ''}

${f.mask != null ? maskOnFunction(f.mask) : ''}
fn optionVisible(i: i32, j: i32) -> bool {${f.mask != null ? `
  if (!maskOn(mask[optBatch * uniforms.maskBatchStride + optHead * uniforms.maskHeadStride + i * uniforms.seqK + j])) {
    return false;
  }` : ''}${f.segments ? `
  if (${side}[uniforms.sideQueryIds + optBatch * uniforms.seqQ + i] !=
      ${side}[uniforms.sideKeyIds + optBatch * uniforms.seqK + j]) { return false; }` : ''}
  return true;
}

${f.bias ? `
// Start of bias row i of batch b and head h (the bias's broadcast strides): element (i, j) is at + j.
fn biasRowStartOf(b: i32, h: i32, i: i32) -> i32 {
  return b * uniforms.biasBatchStride + h * uniforms.biasHeadStride + i * uniforms.seqK;
}

// biasRowStartOf the invocation's batch and head.
fn biasRowStart(i: i32) -> i32 {
  return biasRowStartOf(optBatch, optHead, i);
}

// Bias element (i, j) of batch b and head h; 0 outside the sequences (branch-free: clamped index).
fn biasElement(b: i32, h: i32, i: i32, j: i32) -> f32 {
  let inside = i < uniforms.seqQ && j < uniforms.seqK;
  return select(0.0, bias[select(0, biasRowStartOf(b, h, i) + j, inside)], inside);
}

// A score's additive term from its bias element bv and ALiBi term: MASKED_TERM where bv is -Infinity (recognised by
// its bits: compilers may assume arithmetic never meets infinities).
fn termWithBias(bv: f32, alibi: f32) -> f32 {
  let masked = bitcast<u32>(bv) == 0xff800000u;
  return select(select(bv, 0.0, masked) + alibi, ${MASKED_TERM}, masked);
}` : ''}${f.alibi ? `
// The invocation's ALiBi slope (its term is -slope · |i + queryOffset - j|).
fn alibiSlope() -> f32 {
  return bitcast<f32>(${side}[uniforms.sideAlibi + optBatch * uniforms.heads + optHead]);
}` : ''}

// Branch-free (select, clamped index): the kernels inline it into unrolled tile loops, where every branch is a
// basic block per element (SwiftShader's shader compiler slows down sharply with their number).
fn scoreTerm(i: i32, j: i32) -> f32 {
  let inside = i < uniforms.seqQ && j < uniforms.seqK;
  var alibi = 0.0;${f.alibi ? `
  alibi = ${alibiInlineTerm('i', 'j', offset('optBatch'))};` : ''}
  return select(0.0, ${f.bias ? 'termWithBias(bias[select(0, biasRowStart(i) + j, inside)], alibi)' : 'alibi'}, inside);
}
`;
}

/**
 * ALiBi's term -slope · |i + offset - j| as WGSL, computed per element (scoreTerm's form; the 'inline' code of the
 * forward and backward).
 */
export function alibiInlineTerm(i: string, j: string, offset: string): string {
  return `-alibiSlope() * f32(abs(${i} + ${offset} - (${j})))`;
}

/**
 * ALiBi hoisted (the forward's and the backward's default code): the slope negated once per workgroup or head
 * (`let negSlope = -alibiSlope();`), each query position i + offset and key position j converted to f32 once per
 * row or tile (alibiPosition), then per element a subtract, an abs and a multiply (alibiHoistedTerm). Positions are
 * exact integers in f32 below 2^24, so the term is bit-identical to alibiInlineTerm's.
 */
export function alibiPosition(position: string): string {
  return `f32(${position})`;
}

export function alibiHoistedTerm(negSlope: string, queryPosition: string, keyPosition: string): string {
  return `${negSlope} * abs(${queryPosition} - ${keyPosition})`;
}

/** The query offset of the invocation's batch, as WGSL (per-batch from the side buffer, else the uniform). */
export function diagonalOffsetExpr(f: OptionFlags | null): string {
  return f?.queryOffsets ? 'queryOffsetOf(optBatch)' : 'uniforms.diagonalOffset';
}

/**
 * WGSL: the summary state of (query tile qt, key tile kt) for batch b and head h — 0: the mask and segments rule out
 * every element (skip the tile), 1: partial, 2: every element passes (no per-element mask needed).
 */
export function tileStateFunction(side: string, blockQ: number): string {
  return `
fn tileState(b: i32, h: i32, qt: i32, kt: i32) -> i32 {
  let z = select(0, b, uniforms.summaryBatchVaries == 1) * uniforms.summaryHeads +
      select(0, h, uniforms.summaryHeads > 1);
  let rows = (uniforms.seqQ + ${blockQ - 1}) / ${blockQ};
  return ${side}[uniforms.summaryAt + (z * rows + qt) * uniforms.summaryKeyTiles + kt];
}
`;
}

const SUMMARY_UNIFORMS: Array<[string, UniformType]> = [
  ['seqQ', 'i32'], ['seqK', 'i32'], ['blockQ', 'i32'], ['blockK', 'i32'], ['summaryAt', 'i32'],
  ['summaryHeads', 'i32'], ['maskBatchStride', 'i32'], ['maskHeadStride', 'i32'], ['numQueryTiles', 'i32'],
  ['numKeyTiles', 'i32'],
];

/**
 * The tile summary pre-pass (FlexAttention's BlockMask, made on the device from the mask and segment ids, no
 * readback): one workgroup per (key tile, query tile, summary batch·head) writes 0 (no element visible), 1 (some) or
 * 2 (all) at summaryAt + (z·numQueryTiles + qt)·numKeyTiles + kt. Elements past seqQ or seqK do not count.
 * Dispatch [numKeyTiles, numQueryTiles, batches·heads] (summaryShape).
 */
export class TileSummaryProgram implements MultiOutputProgram {
  outputNames = ['side'];
  outputTypes = ['i32'];
  variableNames = ['mask', 'queryIds', 'keyIds'];
  variableTypes: string[];
  uniformFields = SUMMARY_UNIFORMS;
  shaderKey: string;
  constructor(readonly mask: 'i32' | 'f32' | null, readonly segments: boolean) {
    this.variableTypes = [mask ?? 'i32', 'i32', 'i32'];
    this.shaderKey = `attentionTileSummary:${mask ?? ''}:${segments ? 's' : ''}`;
  }

  getUserCode(): string {
    return `${this.mask != null ? maskOnFunction(this.mask) : ''}
var<workgroup> seen: atomic<u32>;

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let kt = i32(wg.x);
  let qt = i32(wg.y);
  let z = i32(wg.z);
  let b = z / uniforms.summaryHeads;
  let h = z % uniforms.summaryHeads;
  let q0 = qt * uniforms.blockQ;
  let k0 = kt * uniforms.blockK;
  let rows = min(uniforms.blockQ, uniforms.seqQ - q0);
  let cols = min(uniforms.blockK, uniforms.seqK - k0);
  var bits = 0u;
  for (var e = i32(lid); e < rows * cols; e += 64) {
    let i = q0 + e / cols;
    let j = k0 + e % cols;
    var on = true;${this.mask != null ? `
    on = maskOn(mask[b * uniforms.maskBatchStride + h * uniforms.maskHeadStride + i * uniforms.seqK + j]);` : ''}${this.segments ? `
    on = on && queryIds[b * uniforms.seqQ + i] == keyIds[b * uniforms.seqK + j];` : ''}
    bits = bits | select(2u, 1u, on);
  }
  atomicOr(&seen, bits);
  workgroupBarrier();
  if (lid == 0u) {
    let f = atomicLoad(&seen);
    // 0: nothing visible; 2: all visible (none hidden); 1: some of each.
    let state = select(select(1, 2, (f & 2u) == 0u), 0, (f & 1u) == 0u);
    side[uniforms.summaryAt + (z * uniforms.numQueryTiles + qt) * uniforms.numKeyTiles + kt] = state;
  }
}
`;
  }
}

const summaryPrograms = new Map<string, TileSummaryProgram>();

/**
 * Records the tile summary of `plan` at tiles of blockQ × blockK into `out` (int32) from element `at`. Reads the
 * mask and segment ids where the plan has them.
 */
export function summarizeTiles(
    backend: WebGPUBackend, plan: AttentionPlan, out: TensorInfo, at: number, blockQ: number, blockK: number,
    x: {mask: TensorInfo; queryIds: TensorInfo; keyIds: TensorInfo}): void {
  const maskType = plan.mask == null ? null : plan.mask.dtype === 'float32' ? 'f32' : 'i32';
  const key = `${maskType}|${plan.hasSegments}`;
  let program = summaryPrograms.get(key);
  if (program == null) {
    program = new TileSummaryProgram(maskType, plan.hasSegments);
    summaryPrograms.set(key, program);
  }
  const {batches, heads} = summaryShape(plan);
  const numQueryTiles = Math.ceil(plan.seqQ / blockQ), numKeyTiles = Math.ceil(plan.seqK / blockK);
  const placeholder = plan.mask != null ? x.mask : x.queryIds;
  runProgram(backend, program, {
    outputs: [out],
    inputs: [placeholder, plan.hasSegments ? x.queryIds : placeholder, plan.hasSegments ? x.keyIds : placeholder],
    uniforms: [
      plan.seqQ, plan.seqK, blockQ, blockK, at, heads, plan.mask?.batchStride ?? 0, plan.mask?.headStride ?? 0,
      numQueryTiles, numKeyTiles,
    ],
    dispatch: [numKeyTiles, numQueryTiles, batches * heads],
  });
}

const PREP_UNIFORMS: Array<[string, UniformType]> = [
  ['total', 'i32'], ['width', 'i32'], ['len0', 'i32'], ['len1', 'i32'], ['batchAt', 'i32'], ['alibiAt', 'i32'],
  ['queryIdsAt', 'i32'], ['keyIdsAt', 'i32'], ['end', 'i32'], ['batch', 'i32'], ['heads', 'i32'], ['seqK', 'i32'],
  ['offsetMin', 'i32'], ['offsetMax', 'i32'], ['diagonalOffset', 'i32'], ['alibiBatchStride', 'i32'],
  ['hasKeyLengths', 'i32'], ['hasQueryOffsets', 'i32'],
];

/**
 * Fills the side buffer up to its statistics: one invocation per int32 element, reading each input only where the
 * plan has it (absent inputs are bound to a placeholder and never read).
 */
export class SidePrepProgram implements MultiOutputProgram {
  outputNames = ['side'];
  outputTypes = ['i32'];
  variableNames = ['sched0', 'sched1', 'keyLengths', 'queryOffsets', 'alibiSlopes', 'queryIds', 'keyIds'];
  variableTypes = ['i32', 'i32', 'i32', 'i32', 'f32', 'i32', 'i32'];
  uniformFields = PREP_UNIFORMS;
  shaderKey = 'attentionSidePrep';

  getUserCode(): string {
    return `
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let e = (i32(wg.y) * uniforms.width + i32(wg.x)) * 256 + i32(lid);
  if (e >= uniforms.end) { return; }
  var value = 0;
  if (e < uniforms.len0) {
    value = sched0[e];
  } else if (e < uniforms.len0 + uniforms.len1) {
    value = sched1[e - uniforms.len0];
  } else if (e < uniforms.alibiAt) {
    let t = e - uniforms.batchAt;
    let b = t / 2;
    if (t % 2 == 0) {
      value = uniforms.seqK;
      if (uniforms.hasKeyLengths == 1) { value = min(keyLengths[b], uniforms.seqK); }
    } else {
      value = uniforms.diagonalOffset;
      if (uniforms.hasQueryOffsets == 1) {
        value = clamp(queryOffsets[b], uniforms.offsetMin, uniforms.offsetMax);
      }
    }
  } else if (e < uniforms.queryIdsAt) {
    let t = e - uniforms.alibiAt;
    let b = t / uniforms.heads;
    value = bitcast<i32>(alibiSlopes[b * uniforms.alibiBatchStride + t % uniforms.heads]);
  } else if (e < uniforms.keyIdsAt) {
    value = queryIds[e - uniforms.queryIdsAt];
  } else {
    value = keyIds[e - uniforms.keyIdsAt];
  }
  side[e] = value;
}
`;
  }
}

const prepProgram = new SidePrepProgram();

/** The inputs the prep pass reads (the kernel contract's names). */
export interface SideInputs {
  keyLengths: TensorInfo;
  mask: TensorInfo;
  queryOffsets: TensorInfo;
  alibiSlopes: TensorInfo;
  queryIds: TensorInfo;
  keyIds: TensorInfo;
}

/**
 * Allocates the side buffer of `plan` (with `statsElements` more for the backward's statistics) and records the prep
 * dispatch. `schedules` are the cached schedule tensors to copy (1 or 2). The caller disposes the returned tensor.
 */
export function buildSideBuffer(
    backend: WebGPUBackend, plan: AttentionPlan, schedules: TensorInfo[], x: SideInputs,
    statsElements = 0, summaryTiles: Array<[number, number]> = []): {tensor: TensorInfo; layout: SideLayout} {
  const lengths = schedules.map((s) => s.shape[0]);
  const layout = sideLayout(plan, lengths, statsElements, summaryTiles);
  const tensor = createOutput(backend, [layout.total], 'int32');
  const placeholder = schedules[0];
  const end = layout.summaries.length > 0 ? layout.summaries[0].at : layout.stats;
  const groups = Math.ceil(end / 256);
  const width = Math.min(groups, 32768);
  const inputs: Binding[] = [
    schedules[0], schedules[1] ?? placeholder,
    plan.hasKeyLengths ? x.keyLengths : placeholder,
    plan.hasQueryOffsets ? x.queryOffsets : placeholder,
    plan.alibi != null ? x.alibiSlopes : placeholder,
    plan.hasSegments ? x.queryIds : placeholder,
    plan.hasSegments ? x.keyIds : placeholder,
  ];
  runProgram(backend, prepProgram, {
    outputs: [tensor], inputs,
    uniforms: [
      layout.total, width, lengths[0], lengths[1] ?? 0, layout.batch, layout.alibi, layout.queryIds, layout.keyIds,
      end, plan.batch, plan.heads, plan.seqK, plan.offsetMin, plan.offsetMax, plan.diagonalOffset,
      plan.alibi?.batchStride ?? 0, plan.hasKeyLengths ? 1 : 0, plan.hasQueryOffsets ? 1 : 0,
    ],
    dispatch: [width, Math.ceil(groups / width), 1],
  });
  for (const {at, blockQ, blockK} of layout.summaries) summarizeTiles(backend, plan, tensor, at, blockQ, blockK, x);
  return {tensor, layout};
}

/** The options (src/plan/plan.ts PlanFeature) the webgpu kernels execute: every kernel file declares these. */
/**
 * WGSL `maskOn(m)`: whether a mask element lets its pair attend — non-zero and, for float32 masks, not NaN (as the
 * reference and the other backends read it). Tested on the bits: WGSL does not promise IEEE comparisons with NaN.
 */
export function maskOnFunction(type: 'f32' | 'i32'): string {
  return type === 'f32' ? `
fn maskOn(m: f32) -> bool {
  let magnitude = bitcast<u32>(m) & 0x7fffffffu;
  return magnitude != 0u && magnitude <= 0x7f800000u;
}` : `
fn maskOn(m: i32) -> bool { return m != 0; }`;
}

export const WEBGPU_FEATURES: readonly PlanFeature[] = ['queryOffsets', 'mask', 'bias', 'alibi', 'segments', 'dropout'];
