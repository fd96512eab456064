/**
 * The webgpu decode path (issue 18): for a few query rows (seqQ ≤ 16) against many keys, the tiled forward kernel
 * runs one workgroup per (query tile, head, batch) — a handful of workgroups streaming the whole cache, with every
 * query head of a GQA group re-reading its kv head's K and V. This path splits the key range across workgroups
 * (flash-decoding), processes all query heads of a kv head together (K/V read once per kv head and split) and merges
 * the splits in a fixed order (deterministic). Programs: decode_attention_webgpu.ts.
 *
 * It executes the plans whose options it knows (causal / window / keyLengths / queryOffsets / softcap / ALiBi, no
 * layout, mask, bias, segments or dropout); runAttentionForward takes the tiled path for every other plan.
 */
import type {TensorInfo} from '@tensorflow/tfjs-core';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {AttentionPlan} from '../../src/plan/plan.js';
import type {AttentionInputs} from '../attention_kernel_func.js';
import {
  DECODE_COMBINE_UNIFORMS, DECODE_COMBINE_WORKGROUP, DECODE_SPLIT_UNIFORMS, DecodeCombineProgram, DecodeConfig,
  DECODE_UNIFORM_BATCH, DecodeSplitProgram, decodeSplitKey, decodeWorkgroupBytes,
} from './decode_attention_webgpu.js';
import {webgpuCapabilities} from './device_capabilities.js';
import {cpuResidentValues, createOutput, getLimits, ProgramLimits, runProgram} from './program_runner.js';

/** Longest query block the decode path takes (issue 18: 1…16 rows). */
export const DECODE_MAX_QUERIES = 16;
/** Below this many keys the tiled kernel has enough parallelism already. */
export const DECODE_MIN_KEYS = 256;
/** Workgroups the splits aim for: enough to fill a large GPU (132 SMs on an H100/H200, a few per SM) several times. */
const TARGET_WORKGROUPS = 1024;

let pathOverride: 'always' | 'never' | null = null;
let runs = 0;

/** Variants the device sweep (bench/device/decode_sweep.ts) compares; null fields take the default rule. */
export interface DecodeVariant {
  /** Keys per block = threads per workgroup (256, 128 or 64). */
  block?: number | null;
  /** DecodeConfig.pvRowParts; 'rows' = one row part per slot (the first session's kernel). */
  pvRowParts?: number | 'rows' | null;
  /** Most rows per workgroup (default 16; 32 reads K/V half as often at 64 rows, with more registers per thread). */
  maxRows?: number | null;
  /** false: keyLengths / queryOffsets always through their buffers (DecodeConfig.keyLengthsUniform). */
  smallInputsInUniforms?: boolean | null;
  /**
   * DecodeConfig.scoreLanes: threads per key in the score phase (1, the default: a thread per whole K row). 'auto':
   * chooseScoreLanes (up to 8, so that a warp's K load reads whole 128-byte lines at headDim ≥ 128).
   */
  scoreLanes?: number | 'auto' | null;
  /** With scoreLanes > 1: add the lanes through the subgroup where the device has `subgroups` (default), or false:
   *  always through workgroup memory. */
  scoreSubgroups?: boolean | null;
  /** DecodeConfig.pvUnroll: V rows loaded ahead per thread in P·V (default 1). */
  pvUnroll?: number | null;
  /** Workgroups the splits aim for (default TARGET_WORKGROUPS = 1024). */
  targetWorkgroups?: number | null;
}
let variant: DecodeVariant = {};

/** Test/bench hook: pick a decode variant ({} restores the defaults). */
export function setDecodeVariantForTests(v: DecodeVariant): void {
  variant = {...v};
}

/** How many forwards took the decode path so far (tests check that a case really ran it). */
export function decodeRunsForTests(): number {
  return runs;
}

/** Test hook: force the decode path on (where the plan allows it) or off; null restores the size rule. */
export function setDecodePathForTests(mode: 'always' | 'never' | null): void {
  pathOverride = mode;
}

/** Whether the decode path can execute this plan exactly (its options) at all. */
export function decodeSupports(plan: AttentionPlan): boolean {
  return plan.layout == null && plan.mask == null && plan.bias == null && !plan.hasSegments &&
      plan.dropout == null && plan.headDim % 4 === 0 && plan.seqQ > 0 && plan.seqK > 0 && plan.batch > 0;
}

/** Whether runAttentionForward should take the decode path for this plan. */
export function useDecodePath(plan: AttentionPlan): boolean {
  if (pathOverride === 'never' || !decodeSupports(plan)) return false;
  if (pathOverride === 'always') return true;
  return plan.seqQ <= DECODE_MAX_QUERIES && plan.seqK >= DECODE_MIN_KEYS;
}

/**
 * Rows per workgroup and threads per block that fit the device's workgroup memory. Rows: as many of the g·seqQ rows
 * of a kv head as fit at some block (up to 16, or variant.maxRows): K/V are read once per row group. Block: the
 * largest of 256 / 128 / 64 keys that still gives TARGET_WORKGROUPS workgroups of one key block each (at 8k keys,
 * 32/8 heads, 256-key blocks give only 256 workgroups for 132 SMs), else the smallest.
 */
export function chooseDecodeShape(
    plan: AttentionPlan, limits: {maxComputeWorkgroupStorageSize: number; maxComputeInvocationsPerWorkgroup: number}):
    {rows: number; block: number} {
  const rowsNeeded = plan.seqQ * plan.groupSize;
  const candidates: Array<{rows: number; block: number}> = [];
  for (const block of variant.block != null ? [variant.block] : [256, 128, 64]) {
    if (block > limits.maxComputeInvocationsPerWorkgroup) continue;
    const rows = [32, 16, 8, 4, 2, 1].find((rows) => rows <= (variant.maxRows ?? 16) &&
        (rows === 1 || rows / 2 < rowsNeeded) &&  // no bigger than needed
        decodeWorkgroupBytes({headDim: plan.headDim, rows, block}) <= limits.maxComputeWorkgroupStorageSize);
    if (rows != null) candidates.push({rows, block});
  }
  if (candidates.length === 0) {
    throw new Error(`attention decode: headDim ${plan.headDim} does not fit this device's workgroup memory`);
  }
  const workgroups = (c: {rows: number; block: number}) =>
      plan.batch * plan.kvHeads * Math.ceil(rowsNeeded / c.rows) * Math.ceil(plan.seqK / c.block);
  // Most rows first (each row group re-reads K/V), then the largest block that fills the GPU.
  const mostRows = Math.max(...candidates.map((c) => c.rows));
  const best = candidates.filter((c) => c.rows === mostRows);
  return best.find((c) => workgroups(c) >= targetWorkgroups()) ?? best[best.length - 1];
}

/** Number of key splits and keys per split (a multiple of the block) for this plan and workgroup shape. */
export function chooseSplits(plan: AttentionPlan, rows: number, block: number): {splits: number; splitLength: number} {
  const rowGroups = Math.ceil(plan.seqQ * plan.groupSize / rows);
  const base = plan.batch * plan.kvHeads * rowGroups;
  const blocks = Math.ceil(plan.seqK / block);
  const splits = Math.max(1, Math.min(blocks, Math.ceil(targetWorkgroups() / base), 65535));
  const splitLength = Math.ceil(blocks / splits) * block;
  return {splits: Math.ceil(plan.seqK / splitLength), splitLength};
}

function targetWorkgroups(): number {
  return variant.targetWorkgroups ?? TARGET_WORKGROUPS;
}

/**
 * Threads per key of the split score layout (DecodeConfig.scoreLanes) for variant 'auto': the most of 8 / 4 / 2 that
 * keeps a thread's partial dots (lanes × rows) within 32 registers and its workgroup memory within the device's —
 * 8 lanes read whole 128-byte lines of K at headDim ≥ 128 (32 rows × 16 bytes before) — else 1. A number is taken as
 * given where it is a power of two ≤ the block whose partials fit the workgroup memory.
 */
export function chooseScoreLanes(
    requested: number | 'auto', c: {headDim: number; rows: number; block: number}, workgroupBytes: number): number {
  const fits = (lanes: number) => lanes >= 1 && (lanes & (lanes - 1)) === 0 && lanes <= c.block && (lanes === 1 ||
      decodeWorkgroupBytes({...c, scoreLanes: lanes}) <= workgroupBytes);
  if (requested !== 'auto') return fits(requested) ? requested : 1;
  return [8, 4, 2].find((lanes) => lanes <= c.headDim / 4 && lanes * c.rows <= 32 && fits(lanes)) ?? 1;
}

const programs = new Map<string, DecodeSplitProgram | DecodeCombineProgram>();

function cached<P extends DecodeSplitProgram | DecodeCombineProgram>(key: string, make: () => P): P {
  let p = programs.get(key);
  if (p == null) programs.set(key, p = make());
  return p as P;
}

/**
 * Everything a decode call derives from its plan, the device's limits and the variant: made once per plan (the ops
 * reuse plan objects: src/ops/run_attention.ts) and reused while the limits and the variant are the same objects.
 */
interface DecodeSetup {
  limits: ProgramLimits;
  variant: DecodeVariant;
  config: DecodeConfig;
  /** Split programs by (keyLengthsUniform, queryOffsetsUniform): whether those values were numbers is per call. */
  splitPrograms: Array<DecodeSplitProgram | undefined>;
  combine: DecodeCombineProgram;
  uniformsFit: boolean;
  partialRows: number;
  /** DECODE_SPLIT_UNIFORMS values, keyLength0… / queryOffset0… at 0 (filled per call). */
  splitUniforms: number[];
  firstKeyLength: number;
  firstQueryOffset: number;
  splitDispatch: [number, number, number];
  combineUniforms: number[];
  combineDispatch: [number, number, number];
}

const setups = new WeakMap<AttentionPlan, DecodeSetup>();

function decodeSetup(plan: AttentionPlan, limits: ProgramLimits, backend: WebGPUBackend): DecodeSetup {
  const cachedSetup = setups.get(plan);
  if (cachedSetup !== undefined && cachedSetup.limits === limits && cachedSetup.variant === variant) return cachedSetup;
  const {batch, seqQ, heads, kvHeads, headDim, groupSize} = plan;
  const {rows, block} = chooseDecodeShape(plan, limits);
  // P·V: at most 4 rows per thread (registers), the other slots on keys; the slots are BLOCK / D4.
  const slots = Math.max(1, Math.floor(block / (headDim / 4)));
  const pvRowParts = variant.pvRowParts === 'rows' ? slots : variant.pvRowParts ?? Math.ceil(rows / 4);
  const {splits, splitLength} = chooseSplits(plan, rows, block);
  const scoreLanes = chooseScoreLanes(variant.scoreLanes ?? 1, {headDim, rows, block},
      limits.maxComputeWorkgroupStorageSize);
  const rowsTotal = seqQ * groupSize;
  const rowGroups = Math.ceil(rowsTotal / rows);
  if (rowGroups * kvHeads > limits.maxComputeWorkgroupsPerDimension || batch > limits.maxComputeWorkgroupsPerDimension) {
    throw new Error(`attention decode: ${rowGroups * kvHeads} row groups × kv heads exceed the dispatch limit`);
  }
  const partialRows = batch * kvHeads * rowsTotal * splits;
  if (partialRows * headDim * 4 > limits.maxStorageBufferBindingSize) {
    throw new Error('attention decode: partial outputs exceed maxStorageBufferBindingSize');
  }
  const splitValues: Record<string, number> = {
    seqQ, seqK: plan.seqK, heads, kvHeads, groupSize, scale: plan.scale, softcap: plan.softcap,
    windowLeft: plan.windowLeft, windowRight: plan.windowRight, diagonalOffset: plan.diagonalOffset,
    offsetMin: plan.offsetMin, offsetMax: plan.offsetMax, alibiBatchStride: plan.alibi?.batchStride ?? 0,
    splits, splitLength, rowGroups, negInf: -Infinity,
  };
  for (let i = 0; i < DECODE_UNIFORM_BATCH; i++) {
    splitValues[`keyLength${i}`] = 0;
    splitValues[`queryOffset${i}`] = 0;
  }
  const names = DECODE_SPLIT_UNIFORMS.map(([name]) => name);
  const total = batch * kvHeads * rowsTotal * (headDim / 4);
  const workgroups = Math.ceil(total / DECODE_COMBINE_WORKGROUP);
  const dispatchX = Math.min(workgroups, limits.maxComputeWorkgroupsPerDimension);
  const combineValues: Record<string, number> = {
    seqQ, heads, kvHeads, groupSize, splits, total, dispatchX, negInf: -Infinity,
  };
  const setup: DecodeSetup = {
    limits, variant,
    config: {
      headDim, rows, block, softcap: plan.softcap > 0, hasKeyLengths: plan.hasKeyLengths,
      hasQueryOffsets: plan.hasQueryOffsets, alibi: plan.alibi != null, pvRowParts,
      keyLengthsUniform: false, queryOffsetsUniform: false, scoreLanes,
      scoreSubgroups: scoreLanes > 1 && variant.scoreSubgroups !== false && webgpuCapabilities(backend).subgroups,
      pvUnroll: variant.pvUnroll ?? 1,
    },
    splitPrograms: [],
    combine: cached(`combine:${headDim}`, () => new DecodeCombineProgram(headDim)),
    // keyLengths / queryOffsets given as numbers are still on the CPU: passed as uniforms where the batch fits them.
    uniformsFit: batch <= DECODE_UNIFORM_BATCH && variant.smallInputsInUniforms !== false,
    partialRows,
    splitUniforms: names.map((name) => splitValues[name]),
    firstKeyLength: names.indexOf('keyLength0'),
    firstQueryOffset: names.indexOf('queryOffset0'),
    splitDispatch: [splits, rowGroups * kvHeads, batch],
    combineUniforms: DECODE_COMBINE_UNIFORMS.map(([name]) => combineValues[name]),
    combineDispatch: [dispatchX, Math.ceil(workgroups / dispatchX), 1],
  };
  setups.set(plan, setup);
  return setup;
}

/** The split program of `setup` with keyLengths / queryOffsets in uniforms or not. */
function splitProgram(setup: DecodeSetup, keyLengthsUniform: boolean, queryOffsetsUniform: boolean): DecodeSplitProgram {
  const index = (keyLengthsUniform ? 1 : 0) + (queryOffsetsUniform ? 2 : 0);
  let program = setup.splitPrograms[index];
  if (program === undefined) {
    const config: DecodeConfig = {...setup.config, keyLengthsUniform, queryOffsetsUniform};
    program = setup.splitPrograms[index] = cached(decodeSplitKey(config), () => new DecodeSplitProgram(config));
  }
  return program;
}

/** The decode forward: returns [output [B,Sq,H,D], lse [B,H,Sq]]. */
export function runDecodeForward(backend: WebGPUBackend, plan: AttentionPlan, inputs: AttentionInputs): TensorInfo[] {
  const {batch, seqQ, heads, headDim} = plan;
  const setup = decodeSetup(plan, getLimits(backend), backend);
  runs++;
  const small = (flag: boolean, t: TensorInfo) => flag && setup.uniformsFit ? cpuResidentValues(backend, t) : null;
  const keyLengthValues = small(plan.hasKeyLengths, inputs.keyLengths);
  const queryOffsetValues = small(plan.hasQueryOffsets, inputs.queryOffsets);
  const split = splitProgram(setup, keyLengthValues != null, queryOffsetValues != null);

  const partialOut = createOutput(backend, [setup.partialRows, headDim]);
  const partialStats = createOutput(backend, [setup.partialRows, 2]);
  let splitUniforms = setup.splitUniforms;
  if (keyLengthValues != null || queryOffsetValues != null) {
    splitUniforms = splitUniforms.slice();
    for (let i = 0; i < DECODE_UNIFORM_BATCH; i++) {
      splitUniforms[setup.firstKeyLength + i] = keyLengthValues?.[i] ?? 0;
      splitUniforms[setup.firstQueryOffset + i] = queryOffsetValues?.[i] ?? 0;
    }
  }
  // Only the inputs the specialised program reads are bound (the op's per-call keyLengths tensor, unused without
  // padding, would otherwise need an upload that ends the compute pass: see attention_forward.ts).
  const bound: Record<string, TensorInfo> = inputs;
  runProgram(backend, split, {
    outputs: [partialOut, partialStats],
    inputs: split.variableNames.map((name) => bound[name]),
    uniforms: splitUniforms,
    dispatch: setup.splitDispatch,
  });

  const output = createOutput(backend, [batch, seqQ, heads, headDim]);
  const lse = createOutput(backend, [batch, heads, seqQ]);
  runProgram(backend, setup.combine, {
    outputs: [output, lse], inputs: [partialOut, partialStats],
    uniforms: setup.combineUniforms,
    dispatch: setup.combineDispatch,
  });
  backend.disposeData(partialOut.dataId);
  backend.disposeData(partialStats.dataId);
  return [output, lse];
}
