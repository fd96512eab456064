/**
 * The webgpu tensor-core forward executor (issue 19 §2): precision 'medium' and 'high' on f16 subgroup-matrix tiles
 * (flash_attention_tc_webgpu.ts). Same contract as runAttentionForward (attention_forward.ts): [output [B,Sq,H,D],
 * lse [B,H,Sq]], every option the fp32 forward executes, the same block schedule (schedule_buffers.ts) and side buffer
 * (attention_options.ts).
 *
 * tensorCoreForwardApplies decides once, up front: the device has the 16×16×16 f16→f32 configuration, a tile fits,
 * and every tensor fits one binding and one dispatch (no chunking here: plans beyond that, and decode-shaped plans,
 * which are memory-bound, run the fp32 path). Per call: one pack dispatch per operand (q, k, v → one f16 buffer,
 * released after the forward dispatch is submitted), the side-buffer prep where the plan has options, the forward.
 */
import {getBackend, type TensorInfo} from '@tensorflow/tfjs-core';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {AttentionPlan} from '../../src/plan/plan.js';
import {recordAttentionPath} from '../../src/plan/precision.js';
import {unevenWork} from '../../src/plan/schedule.js';
import {FORWARD_KERNEL} from '../../src/kernel_names.js';
import type {AttentionInputs} from '../attention_kernel_func.js';
import {useDecodePath} from './attention_decode.js';
import {buildSideBuffer, elementMasked, optionFlagsOf, optionKey, optionUniformValues} from './attention_options.js';
import {hasSubgroupMatrixF16, webgpuCapabilities} from './device_capabilities.js';
import {
  EMULATED_SUBGROUP, MMA, paddedTcHeadDim, TC_FORWARD_UNIFORMS, TcForwardProgram, TcPackProgram, tcConfigValid, TcTileConfig,
  tcWorkgroupBytes, TensorCorePrecision,
} from './flash_attention_tc_webgpu.js';
import {planUniformValues} from './flash_attention_webgpu.js';
import {Binding, createOutput, getLimits, ProgramLimits, runProgram} from './program_runner.js';
import {getScheduleBuffer} from './schedule_buffers.js';

/**
 * Tile candidates, most work per workgroup first; the first that fits the device's workgroup memory (and divides
 * evenly, tcConfigValid) is used. 256 invocations (8 subgroups of 32 on NVIDIA): 64×64 tiles at headDim ≤ 64 in
 * 'medium' (44 KiB), 64×32 in 'high', 32×64 at headDim 128. Not yet tuned on hardware.
 */
const TC_TILES: TcTileConfig[] = [
  {blockQ: 64, blockK: 64, threads: 256},
  {blockQ: 64, blockK: 32, threads: 256},
  {blockQ: 32, blockK: 64, threads: 256},
  {blockQ: 32, blockK: 32, threads: 128},
  {blockQ: 16, blockK: 64, threads: 256},
  {blockQ: 16, blockK: 32, threads: 128},
];

/** A register-kernel tile as chosen before its thread count: rows, keys, row blocks per subgroup, K / V buffers. */
export type FastTileShape = Pick<TcTileConfig, 'blockQ' | 'blockK' | 'rowBlocks' | 'kvBuffers'>;

/**
 * Tiles of the register kernel ('medium', TcForwardProgram with `fast`): blockQ / 16 row blocks, one per subgroup,
 * most rows first. 128×32 at headDim ≤ 128 fits 48 KiB (Sw + Pw ≈ 29 KiB); 64×64 is the alternative shape.
 */
const FAST_TILES: Array<FastTileShape> = [
  {blockQ: 128, blockK: 32},
  {blockQ: 64, blockK: 64},
  {blockQ: 64, blockK: 32},
  {blockQ: 32, blockK: 32},
  {blockQ: 16, blockK: 32},
];

/**
 * Tiles of the staged kernel in 'high' (hi and lo K / V rows in Ks / Vs, three P arrays; S's cross terms scaled in
 * registers, so no Sx): 128×32 needs 72 KiB at headDim 64, so the first that fits 48 KiB is 64×32 at headDim ≤ 64
 * (43.5 KiB at 64, 128 invocations) and 128×16 at headDim 128 (47 KiB at 128; 39 KiB at 64, 256 invocations).
 * Not yet measured on hardware (bench/device/tc_check.ts times 64×32 and 128×16 at headDim 64).
 */
const HIGH_STAGED_TILES: Array<FastTileShape> = [
  {blockQ: 64, blockK: 32},
  {blockQ: 128, blockK: 16},
  {blockQ: 64, blockK: 16},
  {blockQ: 32, blockK: 32},
  {blockQ: 32, blockK: 16},
  {blockQ: 16, blockK: 16},
];

/**
 * 'registers': O and Q in subgroup-matrix registers, K and V matrices loaded from the packed buffer (the 'medium'
 * default); 'staged': the same with each key tile's K and V staged in workgroup memory (cooperative 16-byte loads,
 * the next tile prefetched into registers); 'memory': O in workgroup memory.
 */
export type TcKernel = 'registers' | 'staged' | 'memory';
/**
 * The 'medium' kernel that runs by default: the staged kernel, checked on real subgroup matrices on an H100
 * (bench/results/2026-12-08-h100-session5/tc_check.log: every shared case passes; B1 H16 S4096 D64 1.006 ms against
 * the register kernel's 2.98 and the memory kernel's 4.83; D128 1.47 against 5.09 and 7.83). Its load probe shows
 * why: a subgroupMatrixLoad from storage costs ~8× one from workgroup memory. Where no staged tile fits the device
 * the register kernel runs, and the memory kernel where no register tile fits either; the memory kernel runs 'high'.
 */
const DEFAULT_TC_KERNEL: TcKernel = 'staged';
/**
 * The 'high' kernel that runs by default: the memory kernel, the one measured on real subgroup matrices
 * (bench/results/2026-12-08-h100-session5/tc_check.log: every shared case passes; 8.74 ms at B1 H16 S4096 D64,
 * 20.35 at D128). The staged 'high' kernel (HIGH_STAGED_TILES) passes every shared case with emulated MMAs
 * (test/webgpu_tc.test.ts) but has not run on a GPU (the session that wrote it got no second lease): it stays
 * opt-in (setTensorCoreKernelForTests('staged')) until tc_check's 'high/staged' rows pass on one and its 'high staged'
 * timing beats 'high memory'.
 */
const DEFAULT_HIGH_TC_KERNEL: TcKernel = 'memory';
let kernelOverride: TcKernel | null = null;
let fastTileOverride: FastTileShape | null = null;

/**
 * Bench / test hook: which kernel runs (null: the default, DEFAULT_TC_KERNEL for 'medium', DEFAULT_HIGH_TC_KERNEL
 * for 'high'; 'memory' is the fallback where no register tile fits, so tests and tc_check keep running it; 'high'
 * has no plain register kernel: 'registers' runs its memory kernel), and optionally the register (or staged)
 * kernel's tile.
 */
export function setTensorCoreKernelForTests(
    kernel: TcKernel | null, tile: FastTileShape | null = null): void {
  kernelOverride = kernel;
  fastTileOverride = tile;
}

let emulation = false;

/**
 * Test hook: run the tensor-core program with its subgroup-matrix operations emulated by SIMT code
 * (flash_attention_tc_webgpu.ts), on any device with shader-f16. Off: the real path, only where the device has f16
 * subgroup matrices.
 */
export function setTensorCoreEmulationForTests(on: boolean): void {
  emulation = on;
}

/** Whether the tensor-core programs (forward and backward) are built with emulated MMAs (test hook above). */
export function tensorCoreEmulation(): boolean {
  return emulation;
}

function precisionOf(plan: AttentionPlan): TensorCorePrecision | null {
  return plan.precision === 'medium' || plan.precision === 'high' ? plan.precision : null;
}

/** The tile for this plan on this device, or null when none fits. */
export function chooseTcTile(
    headDim: number, precision: TensorCorePrecision, limits: Pick<ProgramLimits,
        'maxComputeWorkgroupStorageSize' | 'maxComputeInvocationsPerWorkgroup'>, subgroupMaxSize: number):
    TcTileConfig | null {
  for (const c of TC_TILES) {
    // Subgroup-matrix shaders need a workgroup size that is a multiple of the largest subgroup size.
    const threads = Math.max(c.threads, subgroupMaxSize);
    const tile = {...c, threads};
    if (threads > limits.maxComputeInvocationsPerWorkgroup || !tcConfigValid(tile, headDim)) continue;
    if (tcWorkgroupBytes(tile, headDim, precision) <= limits.maxComputeWorkgroupStorageSize) return tile;
  }
  return null;
}

/**
 * The register kernel's tile, or null: threads = max(blockQ / 16 · subgroupMaxSize, blockQ), so that there are at
 * least blockQ / 16 subgroups (one per row block) whatever size the subgroups come in. `staged`: the staged variant,
 * whose Ks / Vs tiles count too (128×32 still fits 48 KiB up to headDim 128: 39 KiB at 64, 46 KiB at 128). 'high'
 * runs only staged (HIGH_STAGED_TILES).
 */
export function chooseFastTcTile(
    headDim: number, limits: Pick<ProgramLimits, 'maxComputeWorkgroupStorageSize' |
        'maxComputeInvocationsPerWorkgroup'>, subgroupMaxSize: number, staged = false,
    precision: TensorCorePrecision = 'medium'): TcTileConfig | null {
  if (precision === 'high' && !staged) return null;
  const candidates = fastTileOverride != null ? [fastTileOverride] :
      precision === 'high' ? HIGH_STAGED_TILES : FAST_TILES;
  for (const c of candidates) {
    if (!staged && (c.kvBuffers ?? 1) !== 1) continue;
    const threads = Math.max((c.blockQ / (MMA * (c.rowBlocks ?? 1))) * subgroupMaxSize, c.blockQ);
    const tile = {...c, threads};
    if (threads > limits.maxComputeInvocationsPerWorkgroup || !tcConfigValid(tile, headDim, true)) continue;
    if (tcWorkgroupBytes(tile, headDim, precision, true, staged) <= limits.maxComputeWorkgroupStorageSize) return tile;
  }
  return null;
}

/** f16 elements of one packed operand: [batch, heads, seqPad, DP]. */
function packedElements(batch: number, heads: number, seqPad: number, dp: number): number {
  return batch * heads * seqPad * dp;
}

interface TcLaunch {
  precision: TensorCorePrecision;
  /** The register kernel (TcForwardProgram `fast`). */
  fast: boolean;
  /** Its staged variant (K and V through workgroup memory; the packed buffer bound twice). */
  staged: boolean;
  tile: TcTileConfig;
  seqQPad: number;
  seqKPad: number;
  qElements: number;
  kvElements: number;
  /** f16 elements of the packed buffer (hi, and lo for 'high'). */
  packedTotal: number;
}

function planLaunch(backend: WebGPUBackend, plan: AttentionPlan): TcLaunch | null {
  const precision = precisionOf(plan);
  if (precision == null) return null;
  const {batch, seqQ, seqK, heads, kvHeads, headDim} = plan;
  if (batch * seqQ * heads * headDim === 0 || seqK === 0 || useDecodePath(plan)) return null;
  const caps = webgpuCapabilities(backend);
  const hasMatrices = hasSubgroupMatrixF16(caps, {M: 16, N: 16, K: 16});
  if (emulation ? !caps.shaderF16 : !hasMatrices) return null;
  const limits = getLimits(backend);
  const kernel = kernelOverride ?? (precision === 'high' ? DEFAULT_HIGH_TC_KERNEL : DEFAULT_TC_KERNEL);
  const subgroupMax = emulation ? EMULATED_SUBGROUP : caps.subgroupMaxSize;
  // The staged kernel ('medium' or 'high') where asked for and a tile fits; else 'medium' takes the register kernel
  // unless the memory kernel was asked for, and the memory kernel runs the rest.
  const stagedTile = kernel === 'staged' ? chooseFastTcTile(headDim, limits, subgroupMax, true, precision) : null;
  const fastTile = stagedTile ??
      (precision === 'medium' && kernel !== 'memory' ? chooseFastTcTile(headDim, limits, subgroupMax) : null);
  const fast = fastTile != null;
  const staged = stagedTile != null;
  const tile = fastTile ?? chooseTcTile(headDim, precision, limits, emulation ? 1 : caps.subgroupMaxSize);
  if (tile == null) return null;
  const dp = paddedTcHeadDim(headDim);
  const seqQPad = Math.ceil(seqQ / tile.blockQ) * tile.blockQ;
  const seqKPad = Math.ceil(seqK / tile.blockK) * tile.blockK;
  const qElements = packedElements(batch, heads, seqQPad, dp);
  const kvElements = packedElements(batch, kvHeads, seqKPad, dp);
  const hiElements = qElements + 2 * kvElements;
  const packedTotal = hiElements * (precision === 'high' ? 2 : 1);
  const maxBytes = limits.maxStorageBufferBindingSize;
  const maxDim = limits.maxComputeWorkgroupsPerDimension;
  const numTiles = seqQPad / tile.blockQ;
  const fits = 2 * packedTotal <= maxBytes && packedTotal < 2 ** 31 &&
      4 * batch * seqQ * heads * headDim <= maxBytes && 4 * batch * seqK * kvHeads * headDim <= maxBytes &&
      numTiles <= maxDim && heads <= maxDim && batch <= maxDim;
  return fits ? {precision, fast, staged, tile, seqQPad, seqKPad, qElements, kvElements, packedTotal} : null;
}

/** Whether runTensorCoreForward executes this plan (precision 'medium' / 'high' on a device that can). */
export function tensorCoreForwardApplies(backend: WebGPUBackend, plan: AttentionPlan): boolean {
  return planLaunch(backend, plan) != null;
}

const forwardPrograms = new Map<string, TcForwardProgram>();
const packPrograms = new Map<string, TcPackProgram>();

function getForwardProgram(plan: AttentionPlan, launch: TcLaunch): TcForwardProgram {
  const opts = optionFlagsOf(plan);
  const key = `${plan.headDim}|${launch.precision}|${JSON.stringify(launch.tile)}|${plan.softcap > 0}|${
      plan.hasKeyLengths}|${plan.layout != null}${optionKey(opts)}|${emulation}|${launch.fast}|${launch.staged}`;
  let p = forwardPrograms.get(key);
  if (p == null) {
    p = new TcForwardProgram(plan.headDim, launch.tile, launch.precision, plan.softcap > 0, plan.hasKeyLengths,
                             plan.layout != null, opts, emulation, launch.fast, launch.staged);
    forwardPrograms.set(key, p);
  }
  return p;
}

function getPackProgram(dp: number, split: boolean): TcPackProgram {
  const key = `${dp}|${split}`;
  let p = packPrograms.get(key);
  if (p == null) {
    p = new TcPackProgram(dp, split);
    packPrograms.set(key, p);
  }
  return p;
}

/**
 * Records the pack of one operand x [batch, seq, heads, headDim] into packed at `at` (lo parts at at + loAt). Also
 * packs the backward's operands (attention_backward.ts).
 */
export function packTensorCoreOperand(
    backend: WebGPUBackend, packed: TensorInfo, x: TensorInfo, plan: AttentionPlan, seq: number, heads: number,
    seqPad: number, at: number, loAt: number, split: boolean): void {
  const dp = paddedTcHeadDim(plan.headDim);
  const total = packedElements(plan.batch, heads, seqPad, dp);
  const groups = Math.ceil(total / 256);
  const width = Math.min(groups, getLimits(backend).maxComputeWorkgroupsPerDimension);
  runProgram(backend, getPackProgram(dp, split), {
    outputs: [packed], inputs: [x],
    uniforms: [total, width, seq, heads, plan.headDim, seqPad, at, loAt],
    dispatch: [width, Math.ceil(groups / width), 1],
  });
}

/** Runs the tensor-core forward for `plan` (tensorCoreForwardApplies must hold): [output, lse]. */
export function runTensorCoreForward(backend: WebGPUBackend, plan: AttentionPlan, inputs: AttentionInputs):
    TensorInfo[] {
  const launch = planLaunch(backend, plan);
  if (launch == null) throw new Error('attention: the tensor-core forward does not apply to this plan on this device');
  const {batch, seqQ, seqK, heads, kvHeads, headDim} = plan;
  const {tile, precision, seqQPad, seqKPad, qElements, kvElements} = launch;
  const split = precision === 'high';
  const program = getForwardProgram(plan, launch);
  const sched = getScheduleBuffer(backend, plan, tile.blockQ, tile.blockK);
  const opts = program.opts;
  const optionInputs: Binding[] = [];
  if (opts?.mask != null) optionInputs.push(inputs.mask);
  if (opts?.bias) optionInputs.push(inputs.bias);
  const summarized = opts != null && elementMasked(opts);
  const side = opts == null ? null :
      buildSideBuffer(backend, plan, [sched.tensor], inputs, 0, summarized ? [[tile.blockQ, tile.blockK]] : []);

  // The packed operands: f16 pairs in an int32 tensor (tfjs has no f16 dtype; WGSL reads it as array<f16>).
  const packed = createOutput(backend, [Math.ceil(launch.packedTotal / 2)], 'int32');
  const qAt = 0, kAt = qElements, vAt = qElements + kvElements, loAt = split ? qElements + 2 * kvElements : 0;
  packTensorCoreOperand(backend, packed, inputs.q, plan, seqQ, heads, seqQPad, qAt, loAt, split);
  packTensorCoreOperand(backend, packed, inputs.k, plan, seqK, kvHeads, seqKPad, kAt, loAt, split);
  packTensorCoreOperand(backend, packed, inputs.v, plan, seqK, kvHeads, seqKPad, vAt, loAt, split);

  const headsFastest = unevenWork(sched.schedule);
  const numTiles = seqQPad / tile.blockQ;
  const output = createOutput(backend, [batch, seqQ, heads, headDim]);
  const lse = createOutput(backend, [batch, heads, seqQ]);
  const values: Record<string, number> = {
    ...planUniformValues(plan, sched),
    // Whole tensors are bound (no chunks): every base is 0.
    qBase: 0, kBase: 0, vBase: 0, oBase: 0, lseBase: 0, batchStart: 0, queryTileStart: 0,
    queryTileCount: numTiles, rowStart: 0, headsFastest: headsFastest ? 1 : 0,
    qAt, kAt, vAt, loAt, seqQPad, seqKPad,
  };
  const uniforms = TC_FORWARD_UNIFORMS.map(([name]) => values[name]);
  if (side != null) uniforms.push(...optionUniformValues(plan, side.layout, 0, summarized ? 0 : -1));
  // Without keyLengths the shader never reads that binding: the cached schedule stands in (no per-call upload).
  const bindings: Binding[] = side != null ? [packed, side.tensor, ...optionInputs] :
      [packed, plan.hasKeyLengths ? inputs.keyLengths : sched.tensor, sched.tensor];
  // The staged kernel reads the packed buffer a second time as 16-byte pieces (`packedWide`, right after it).
  if (launch.staged) bindings.splice(1, 0, packed);
  runProgram(backend, program, {
    outputs: [output, lse], inputs: bindings, uniforms,
    dispatch: headsFastest ? [heads, numTiles, batch] : [numTiles, heads, batch],
  });
  // Released once the queued dispatches that read them have been submitted (commandQueueOwnedIds).
  backend.disposeData(packed.dataId, true);
  if (side != null) backend.disposeData(side.tensor.dataId, true);
  recordAttentionPath({
    backend: getBackend(), kernel: FORWARD_KERNEL[plan.kind],
    requested: plan.precision, path: split ? 'subgroup-matrix-f16x3' : 'subgroup-matrix-f16',
  });
  return [output, lse];
}
