/**
 * The webgpu attention backward executor shared by FlashAttentionGrad, SlidingWindowAttentionGrad and
 * SparseAttentionGrad: pass 1 (row stats), then either split-dQ (default: pass 2 with dQ accumulators, and their
 * reduce) or two-pass (pass 2 (dK, dV), pass 3 (dQ)) of flash_attention_grad_webgpu.ts, recorded into tfjs's command
 * stream through the multi-output runner. Nothing is read back; the intermediates are the [batch, 2 + 2·heads·seqQ]
 * stats buffer and, split-dQ, the `work` buffer ([nsplits dQ accumulators | dK | dV] per batch; nsplits from
 * dq_splits.ts).
 *
 * Precision 'medium' on a device with f16 subgroup matrices (tensorCoreBackward, decided once up front): the same
 * two-pass design with the tensor-core tile passes of flash_attention_grad_tc_webgpu.ts, on q, k, v, dO packed as
 * f16 into one buffer (released after the passes); statistics, side buffer, schedules and the dBias pass as for fp32.
 *
 * Work whose tensors exceed maxStorageBufferBindingSize is split by batch (each binding then covers a range of
 * batches, whose element offset the shaders get as `*Base` uniforms); a single batch that does not fit one binding
 * is an Error naming the limit.
 */
import {env, getBackend, type TensorInfo} from '@tensorflow/tfjs-core';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {GRAD_KERNEL} from '../../src/kernel_names.js';
import {AttentionPlan} from '../../src/plan/plan.js';
import {recordAttentionPath} from '../../src/plan/precision.js';
import {unevenWork} from '../../src/plan/schedule.js';
import type {AttentionGradInputs} from '../attention_kernel_func.js';
import {useDecodePath} from './attention_decode.js';
import {packTensorCoreOperand, tensorCoreEmulation} from './attention_forward_tc.js';
import {buildSideBuffer, elementMasked, optionFlagsOf, optionUniformValues} from './attention_options.js';
import {hasSubgroupMatrixF16, webgpuCapabilities} from './device_capabilities.js';
import {
  chooseTcGradTiles, TcGradTileProgram, TcGradTiles, tcGradTilesAsGradTiles,
} from './flash_attention_grad_tc_webgpu.js';
import {AttentionGradStatsProgram, AttentionGradTileProgram, statsPerBatch} from './flash_attention_grad_webgpu.js';
import {EMULATED_SUBGROUP, paddedTcHeadDim} from './flash_attention_tc_webgpu.js';
import {chooseDqSplits} from './dq_splits.js';
import {DqReduceProgram, FillZeroProgram, SplitProgram} from './elementwise_webgpu.js';
import {chooseGradTiles, GradPass, GradTiles, gradTilesFit} from './grad_tiles.js';
import {
  bindElements, Binding, createOutput, getLimits, runProgram,
} from './program_runner.js';
import {getScheduleBuffer} from './schedule_buffers.js';

/**
 * The backward's design. 'two-pass' (default): a dK/dV pass over key tiles and a dQ pass over query tiles, each
 * recomputing the scores (7 matmul-equivalents). 'split-dq': one pass over key tiles computes dK, dV and nsplits
 * partial dQs (5; dq_splits.ts chooses nsplits), a reduce pass sums them. Both are deterministic without atomics.
 * split-dq is not the default because it measured slower on an H100 (2026-12-07, bench/results/
 * 2026-12-07-h100-issues-16-19: S4096 D64 backward 26.0 vs 18.7 ms, causal 12.2 vs 10.2, D128 80 vs 61): its
 * read-add-write of the dQ rows per (key tile, query tile) costs more than the two matmuls it saves. It falls back
 * to two-pass when one dQ accumulator does not fit one storage binding.
 */
export type BackwardDesign = 'two-pass' | 'split-dq';
let design: BackwardDesign = 'two-pass';
let splitsOverride: number | null = null;
let lastRun: {design: BackwardDesign; nsplits: number} | null = null;

/** Test / bench hook: which design runs, and (split-dq) a forced nsplits (null: dq_splits.ts's rule). */
export function setBackwardDesignForTests(d: BackwardDesign, nsplits: number | null = null): void {
  design = d;
  splitsOverride = nsplits;
}

/** What the last backward ran (tests, bench). */
export function lastBackwardRun(): {design: BackwardDesign; nsplits: number} | null {
  return lastRun;
}

/** Test hook: force the tilings (null: chosen from the device limits). */
let tilesOverride: Partial<Record<GradPass, GradTiles>> | null = null;
export function setGradTilesOverrideForTests(tiles: Partial<Record<GradPass, GradTiles>> | null): void {
  tilesOverride = tiles;
}

/** Bench hook: vec4 loads of q, k, v, dy in the tile passes where headDim allows (default) or scalar loads. */
let vec4Loads = true;
export function setGradVec4LoadsForTests(on: boolean): void {
  vec4Loads = on;
}

const splitProgram = new SplitProgram();
const fillZeroProgram = new FillZeroProgram();
const dqReduceProgram = new DqReduceProgram();

/**
 * The tensor-core backward (flash_attention_grad_tc_webgpu.ts): its tilings and the packed f16 operands' layout
 * (q, k, v, dO, each [batch, heads, seqPad, DP], one buffer).
 */
interface TcBackward {
  tiles: Record<GradPass, TcGradTiles>;
  seqQPad: number;
  seqKPad: number;
  /** Elements of the packed buffer, and where each operand starts in it (TC_GRAD_UNIFORMS qAt … dyAt). */
  elements: number;
  at: {q: number; k: number; v: number; dy: number};
  emulate: boolean;
}

/**
 * tfjs flag (default false): run the 'medium' backward on tensor cores (flash_attention_grad_tc_webgpu.ts) where the
 * device has f16 subgroup matrices. Off by default because those passes have only run with emulated MMAs
 * (test/webgpu_tc_grad.test.ts, every shared case against the float64 reference): `bench/device/tc_backward.ts`
 * turns it on and checks them on a GPU; when a GPU has passed them and timed them, this default becomes true.
 */
export const TC_BACKWARD_FLAG = 'ATTENTION_WEBGPU_TC_BACKWARD';
env().registerFlag(TC_BACKWARD_FLAG, () => false);

/**
 * Decided once, up front: the tensor-core passes run for precision 'medium' on a device with the 16×16×16 f16
 * subgroup-matrix configuration (or with emulated MMAs, tests), when both passes have a tiling that fits, every
 * tensor fits one binding (no batch splitting on this path). Otherwise null: the fp32 passes run
 * (lastAttentionPath() reports 'fp32').
 */
function tensorCoreBackward(
    backend: WebGPUBackend, plan: AttentionPlan, limits: ReturnType<typeof getLimits>): TcBackward | null {
  if (plan.precision !== 'medium') return null;
  // Opt-in on real subgroup matrices until a GPU has run it (TC_BACKWARD_FLAG); emulated MMAs (tests) always run it.
  const emulate = tensorCoreEmulation();
  if (!emulate && !env().getBool(TC_BACKWARD_FLAG)) return null;
  const {batch: B, seqQ: Sq, seqK: Sk, heads: H, kvHeads: Hkv, headDim: D} = plan;
  if (B * Sq * H * D === 0 || Sk === 0 || useDecodePath(plan)) return null;
  const caps = webgpuCapabilities(backend);
  if (emulate ? !caps.shaderF16 : !hasSubgroupMatrixF16(caps, {M: 16, N: 16, K: 16})) return null;
  const sgMax = emulate ? EMULATED_SUBGROUP : caps.subgroupMaxSize;
  const dropout = plan.dropout != null;
  const dkdv = chooseTcGradTiles('dkdv', D, limits, sgMax, dropout);
  const dq = chooseTcGradTiles('dq', D, limits, sgMax, dropout);
  if (dkdv == null || dq == null) return null;
  const dp = paddedTcHeadDim(D);
  const qPad = Math.max(dq.resident, dkdv.streamed), kPad = Math.max(dkdv.resident, dq.streamed);
  const seqQPad = Math.ceil(Sq / qPad) * qPad, seqKPad = Math.ceil(Sk / kPad) * kPad;
  const qElements = B * H * seqQPad * dp, kvElements = B * Hkv * seqKPad * dp;
  const elements = 2 * qElements + 2 * kvElements;  // q, dO, k, v as f16
  const packedBytes = 2 * elements;
  const room = limits.maxStorageBufferBindingSize - limits.minStorageBufferOffsetAlignment;
  const f32Bytes = 4 * B * Math.max(Sq * H * D, Sk * Hkv * D, statsPerBatch(H, Sq));
  const maxDim = limits.maxComputeWorkgroupsPerDimension;
  const fits = packedBytes <= room && f32Bytes <= room && B <= maxDim && H <= maxDim &&
      Math.ceil(Sq / dq.resident) <= maxDim && Math.ceil(Sk / dkdv.resident) <= maxDim;
  if (!fits) return null;
  const at = {q: 0, k: qElements, v: qElements + kvElements, dy: qElements + 2 * kvElements};
  return {tiles: {dkdv, dq}, seqQPad, seqKPad, elements, at, emulate};
}

/** Dispatch of an element-parallel program over n elements (256 per workgroup, rows of at most 32768). */
function flatDispatch(n: number): {width: number; dispatch: [number, number, number]} {
  const groups = Math.ceil(n / 256), width = Math.max(1, Math.min(groups, 32768));
  return {width, dispatch: [width, Math.ceil(groups / width), 1]};
}

/** [dq, dk, dv] of `plan` (and dBias with a bias), as backend tensors owned by the caller (the engine). */
export function runAttentionBackward(
    backend: WebGPUBackend, plan: AttentionPlan, x: AttentionGradInputs): TensorInfo[] {
  if (x.keyLengths.dtype !== 'int32') {
    throw new Error(`attention backward (webgpu): keyLengths must be int32, got ${x.keyLengths.dtype}`);
  }
  const {batch: B, seqQ: Sq, seqK: Sk, heads: H, kvHeads: Hkv, headDim: D} = plan;
  const limits = getLimits(backend);
  const dropout = plan.dropout != null;
  // dBias: written by the dQ pass when each bias element belongs to one (batch, head) and the mask does not take
  // the binding it needs; else its own pass sums over the broadcast axes.
  const bias = plan.bias;
  const directBias = bias != null && plan.mask == null && (bias.batchStride !== 0 || B === 1) &&
      (bias.headStride !== 0 || H === 1);
  // precision 'medium': the tensor-core passes, chosen once here (else the fp32 passes).
  const tc = tensorCoreBackward(backend, plan, limits);
  const tiles = tc != null ? {
    dkdv: tcGradTilesAsGradTiles(tc.tiles.dkdv, D), dq: tcGradTilesAsGradTiles(tc.tiles.dq, D),
  } : {
    dkdv: tilesOverride?.dkdv ?? chooseGradTiles('dkdv', D, limits, dropout),
    dq: tilesOverride?.dq ?? chooseGradTiles('dq', D, limits, dropout),
  };
  for (const pass of ['dkdv', 'dq'] as const) {
    if (tc == null && (!gradTilesFit(pass, tiles[pass], limits, dropout) || tiles[pass].paddedDim < D)) {
      throw new Error(`attention backward (webgpu): tiling ${JSON.stringify(tiles[pass])} does not fit headDim ${D} ` +
          `or this device's limits`);
    }
  }
  const opts = optionFlagsOf(plan);
  const dq = createOutput(backend, [B, Sq, H, D]);
  const dk = createOutput(backend, [B, Sk, Hkv, D]);
  const dv = createOutput(backend, [B, Sk, Hkv, D]);
  const dBias = plan.bias != null ? createOutput(backend, [...plan.bias.shape]) : null;
  // With options the statistics live in the side buffer (attention_options.ts); a 1-element stand-in otherwise.
  const stats = createOutput(backend, [opts == null ? B * statsPerBatch(H, Sq) : 1]);
  const scratch: TensorInfo[] = [stats];
  try {
    const room = limits.maxStorageBufferBindingSize - limits.minStorageBufferOffsetAlignment;
    const dkdvSchedule = getScheduleBuffer(backend, plan, tiles.dkdv.streamed, tiles.dkdv.resident);
    const dqSchedule = getScheduleBuffer(backend, plan, tiles.dq.resident, tiles.dq.streamed);
    const nsplits = design !== 'split-dq' || tc != null ? 0 : chooseDqSplits({
      batch: B, kvHeads: Hkv, numKeyTiles: dkdvSchedule.schedule.numKeyTiles, queryFloats: Sq * H * D,
      keyFloats: Sk * Hkv * D, bindingRoom: room,
    }, splitsOverride);
    const split = nsplits > 0;
    lastRun = {design: split ? 'split-dq' : 'two-pass', nsplits};
    // Elements per batch of each tensor family; a dispatch covers as many whole batches as one binding holds.
    // split-dq's `work` holds, per batch, [nsplits dQ accumulators | dK | dV].
    const perBatch = {query: Sq * H * D, key: Sk * Hkv * D, row: H * Sq, stats: statsPerBatch(H, Sq),
                      work: split ? nsplits * Sq * H * D + 2 * Sk * Hkv * D : 0};
    const largest = 4 * Math.max(perBatch.query, perBatch.key, perBatch.row, perBatch.stats, perBatch.work);
    const batchesPerRun = Math.min(B, Math.floor(room / largest), limits.maxComputeWorkgroupsPerDimension);
    if (batchesPerRun < 1) {
      throw new Error(`attention backward (webgpu): one batch of the inputs needs ${largest} bytes in one binding, ` +
          `more than this device's maxStorageBufferBindingSize (${limits.maxStorageBufferBindingSize}); ` +
          `use fewer heads or shorter sequences per call`);
    }
    const statsProgram = new AttentionGradStatsProgram(tc != null);
    const dkdvProgram = tc != null ?
        new TcGradTileProgram('dkdv', tc.tiles.dkdv, D, flagsOf(plan), opts, false, tc.emulate) :
        new AttentionGradTileProgram('dkdv', tiles.dkdv, flagsOf(plan), opts, false, split && directBias, split);
    const dqProgram = tc != null ?
        new TcGradTileProgram('dq', tc.tiles.dq, D, flagsOf(plan), opts, directBias, tc.emulate) :
        new AttentionGradTileProgram('dq', tiles.dq, flagsOf(plan), opts, false, directBias);
    // The tensor-core passes' operands: q, k, v, dO as f16, one packed buffer (every batch: tc implies nb = B).
    let packed: TensorInfo | null = null;
    if (tc != null) {
      packed = createOutput(backend, [tc.elements / 2], 'int32');  // two f16 per int32
      scratch.push(packed);
      packTensorCoreOperand(backend, packed, x.q, plan, Sq, H, tc.seqQPad, tc.at.q, 0, false);
      packTensorCoreOperand(backend, packed, x.k, plan, Sk, Hkv, tc.seqKPad, tc.at.k, 0, false);
      packTensorCoreOperand(backend, packed, x.v, plan, Sk, Hkv, tc.seqKPad, tc.at.v, 0, false);
      packTensorCoreOperand(backend, packed, x.dOutput, plan, Sq, H, tc.seqQPad, tc.at.dy, 0, false);
    }
    // Tile summaries of the mask / segments at both tilings: dK/dV's (query tiles are its streamed rows), dQ's.
    const summarized = opts != null && elementMasked(opts);
    const side = opts == null ? null : buildSideBuffer(
        backend, plan, [dkdvSchedule.tensor, dqSchedule.tensor], x, B * statsPerBatch(H, Sq),
        summarized ? [[tiles.dkdv.streamed, tiles.dkdv.resident], [tiles.dq.resident, tiles.dq.streamed]] : []);
    if (side != null) scratch.push(side.tensor);
    const whole = (t: TensorInfo, what: string) =>
        bindElements(backend, t, 0, t.shape.reduce((a, b) => a * b, 1), what).binding;
    const optionInputs: Binding[] = [];
    if (opts?.mask != null) optionInputs.push(whole(x.mask, 'attention mask'));
    if (opts?.bias) optionInputs.push(whole(x.bias, 'attention bias'));
    const combined = dkdvProgram.outputNames[0] === 'dkv';
    const dkv = combined ? createOutput(backend, [2 * B * Sk * Hkv * D]) : null;
    if (dkv != null) scratch.push(dkv);
    const work = split ? createOutput(backend, [B * perBatch.work]) : null;
    if (work != null) scratch.push(work);
    if (dBias != null && directBias) {
      const n = dBias.shape.reduce((a, b) => a * b, 1), {width, dispatch} = flatDispatch(n);
      runProgram(backend, fillZeroProgram, {outputs: [dBias], inputs: [], uniforms: [n, width], dispatch});
    }
    if (dBias != null && !directBias && batchesPerRun < B) {
      throw new Error(`attention backward (webgpu): the bias gradient needs every batch in one binding; ` +
          `${B} batches exceed this device's maxStorageBufferBindingSize (${limits.maxStorageBufferBindingSize})`);
    }
    // Longest tiles of every head first where the work is uneven (src/plan/schedule.ts unevenWork).
    const headsFastest = {dkdv: unevenWork(dkdvSchedule.schedule, true), dq: unevenWork(dqSchedule.schedule)};

    for (let b0 = 0; b0 < B; b0 += batchesPerRun) {
      const nb = Math.min(batchesPerRun, B - b0);
      const bind = (t: TensorInfo, family: keyof typeof perBatch, what: string) =>
          bindElements(backend, t, b0 * perBatch[family], nb * perBatch[family], what);
      const o = bind(x.output, 'query', 'output'), dy = bind(x.dOutput, 'query', 'dOutput');
      const lse = bind(x.lse, 'row', 'lse'), dLse = bind(x.dLse, 'row', 'dLse');
      const st = side == null ? bind(stats, 'stats', 'stats') :
          {binding: side.tensor, base: side.layout.stats + b0 * perBatch.stats};
      runProgram(backend, statsProgram, {
        outputs: [st.binding],
        // Without keyLengths the value stored from this binding is never read (the tile passes use seqK): bind the
        // cached schedule rather than upload the op's per-call keyLengths tensor (see attention_forward.ts).
        inputs: [o.binding, dy.binding, lse.binding, dLse.binding,
                 plan.hasKeyLengths ? x.keyLengths : dkdvSchedule.tensor],
        uniforms: [Sq, H, D, o.base, dy.base, lse.base, dLse.base, st.base, b0],
        dispatch: [Math.ceil(Sq / 64), H, nb],
      });

      const qb = bind(x.q, 'query', 'q'), kb = bind(x.k, 'key', 'k'), vb = bind(x.v, 'key', 'v');
      const dkdvElements = B * Sk * Hkv * D;
      const dkb = dkv != null ? {binding: dkv, base: b0 * perBatch.key} : bind(dk, 'key', 'dk');
      const dvb = dkv != null ? {binding: dkv, base: dkdvElements + b0 * perBatch.key} : bind(dv, 'key', 'dv');
      const dqb = bind(dq, 'query', 'dq');
      const wb = work == null ? null : bind(work, 'work', 'dQ accumulators');
      const common = (pass: GradPass, out0: {base: number}, out1: {base: number}, splitWork = false) => {
        const sb = pass === 'dkdv' ? dkdvSchedule : dqSchedule;
        const s = sb.schedule, off = sb.offsets, layout = plan.layout;
        // With options the schedules are copies inside the side buffer.
        const at = side == null ? 0 : side.layout.schedules[pass === 'dkdv' ? 0 : 1];
        const values = [
          Sq, Sk, H, Hkv, plan.groupSize, D, plan.diagonalOffset, plan.windowLeft, plan.windowRight,
          s.numQueryTiles, s.numKeyTiles, s.numHeads,
          at + (pass === 'dkdv' ? off.colRunStart : off.rowRunStart), at + (pass === 'dkdv' ? off.colRuns : off.rowRuns),
          at + off.layoutBits, layout?.blockSize ?? 1, layout?.numQueryBlocks ?? 0, layout?.numKeyBlocks ?? 0,
          qb.base, kb.base, vb.base, dy.base, st.base, out0.base, out1.base, plan.scale, plan.softcap,
          headsFastest[pass] ? 1 : 0,
          ...(splitWork ? [nsplits, perBatch.work, wb!.base] : [0, 0, 0]),
        ];
        if (tc != null) values.push(tc.at.q, tc.at.k, tc.at.v, tc.at.dy, tc.seqQPad, tc.seqKPad);
        if (side != null) {
          values.push(...optionUniformValues(plan, side.layout, b0, summarized ? (pass === 'dkdv' ? 0 : 1) : -1));
        }
        return values;
      };
      // The tensor-core passes bind the packed buffer twice (f16 elements, and 16-byte pieces for the staging).
      const tileInputs = (sched: TensorInfo): Binding[] => packed != null ? (side != null ?
          [packed, packed, side.tensor, ...optionInputs] : [packed, packed, st.binding, sched]) : side != null ?
          [qb.binding, kb.binding, vb.binding, dy.binding, side.tensor, ...optionInputs] :
          [qb.binding, kb.binding, vb.binding, dy.binding, st.binding, sched];
      if (wb != null) {
        // split-dq: one workgroup per (split, kv head, batch); then dq = scale · Σ accumulators, dk / dv copied out.
        const dkAt = {base: wb.base + nsplits * perBatch.query};
        runProgram(backend, dkdvProgram, {
          outputs: directBias ? [wb.binding, dBias!] : [wb.binding],
          inputs: tileInputs(dkdvSchedule.tensor),
          uniforms: common('dkdv', dkAt, {base: dkAt.base + perBatch.key}, true),
          dispatch: headsFastest.dkdv ? [Hkv, nsplits, nb] : [nsplits, Hkv, nb],
        });
        const dkr = bind(dk, 'key', 'dk'), dvr = bind(dv, 'key', 'dv');
        const n = nb * Math.max(perBatch.query, perBatch.key), {width, dispatch} = flatDispatch(n);
        runProgram(backend, dqReduceProgram, {
          outputs: [dqb.binding, dkr.binding, dvr.binding],
          inputs: [wb.binding],
          uniforms: [n, width, nsplits, perBatch.query, perBatch.key, perBatch.work, wb.base, dqb.base, dkr.base,
                     dvr.base, plan.scale],
          dispatch,
        });
      } else {
        runProgram(backend, dkdvProgram, {
          outputs: dkv != null ? [dkv] : [dkb.binding, dvb.binding],
          inputs: tileInputs(dkdvSchedule.tensor),
          uniforms: common('dkdv', dkb, dvb),
          dispatch: headsFastest.dkdv ? [Hkv, dkdvSchedule.schedule.numKeyTiles, nb] :
                                         [dkdvSchedule.schedule.numKeyTiles, Hkv, nb],
        });
      }
      if (wb == null) runProgram(backend, dqProgram, {
        outputs: directBias ? [dqb.binding, dBias!] : [dqb.binding],
        inputs: tileInputs(dqSchedule.tensor),
        uniforms: common('dq', dqb, {base: 0}),
        dispatch: headsFastest.dq ? [H, dqSchedule.schedule.numQueryTiles, nb] :
                                     [dqSchedule.schedule.numQueryTiles, H, nb],
      });
      if (dBias != null && side != null && !directBias) {
        // dBias: its own pass (dq tiling), over every batch at once (checked above: b0 = 0, nb = B).
        const dbiasProgram = tc != null ?
            new TcGradTileProgram('dq', tc.tiles.dq, D, flagsOf(plan), opts, false, tc.emulate, true) :
            new AttentionGradTileProgram('dq', tiles.dq, flagsOf(plan), opts, true);
        runProgram(backend, dbiasProgram, {
          outputs: [dBias],
          inputs: tileInputs(dqSchedule.tensor),
          uniforms: common('dq', {base: 0}, {base: 0}),
          dispatch: [dqSchedule.schedule.numQueryTiles, bias!.headStride === 0 ? 1 : H,
                     bias!.batchStride === 0 ? 1 : B],
        });
      }
    }
    if (dkv != null) {
      const n = B * Sk * Hkv * D, {width, dispatch} = flatDispatch(n);
      runProgram(backend, splitProgram, {outputs: [dk, dv], inputs: [dkv], uniforms: [n, width], dispatch});
    }
    if (tc != null) {
      recordAttentionPath({backend: getBackend(), kernel: GRAD_KERNEL[plan.kind], requested: plan.precision,
                           path: 'subgroup-matrix-f16'});
    }
  } catch (e) {
    for (const t of [dq, dk, dv, ...(dBias == null ? [] : [dBias])]) backend.disposeData(t.dataId, true);
    throw e;
  } finally {
    for (const t of scratch) backend.disposeData(t.dataId, true);
  }
  return dBias == null ? [dq, dk, dv] : [dq, dk, dv, dBias];
}

function flagsOf(plan: AttentionPlan) {
  // vec4 bindings need every row and every *Base on a vec4: headDim % 4 == 0 (bases are whole batches, bindElements
  // offsets are multiples of minStorageBufferOffsetAlignment).
  return {softcap: plan.softcap > 0, layout: plan.layout != null, keyLengths: plan.hasKeyLengths,
          vec4: vec4Loads && plan.headDim % 4 === 0};
}

/** Exposed for tests: which tilings a plan gets on this backend. */
export function gradTilesFor(backend: WebGPUBackend, headDim: number): Record<GradPass, GradTiles> {
  const limits = getLimits(backend);
  return {dkdv: chooseGradTiles('dkdv', headDim, limits), dq: chooseGradTiles('dq', headDim, limits)};
}
