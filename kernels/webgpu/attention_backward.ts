/**
 * The webgpu attention backward executor shared by FlashAttentionGrad, SlidingWindowAttentionGrad and
 * SparseAttentionGrad: pass 1 (row stats), pass 2 (dK, dV) and pass 3 (dQ) of flash_attention_grad_webgpu.ts, recorded
 * into tfjs's command stream through the multi-output runner. Nothing is read back; the only intermediate is the
 * [batch, 2 + 2·heads·seqQ] stats buffer.
 *
 * Work whose tensors exceed maxStorageBufferBindingSize is split by batch (each binding then covers a range of
 * batches, whose element offset the shaders get as `*Base` uniforms); a single batch that does not fit one binding
 * is an Error naming the limit.
 */
import type {TensorInfo} from '@tensorflow/tfjs-core';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {AttentionPlan} from '../../src/plan/plan.js';
import {unevenWork} from '../../src/plan/schedule.js';
import type {AttentionGradInputs} from '../attention_kernel_func.js';
import {AttentionGradStatsProgram, AttentionGradTileProgram, statsPerBatch} from './flash_attention_grad_webgpu.js';
import {chooseGradTiles, GradPass, GradTiles, gradTilesFit} from './grad_tiles.js';
import {bindElements, Binding, createOutput, getLimits, runProgram} from './program_runner.js';
import {getScheduleBuffer} from './schedule_buffers.js';

/** Test hook: force the tilings (null: chosen from the device limits). */
let tilesOverride: Partial<Record<GradPass, GradTiles>> | null = null;
export function setGradTilesOverrideForTests(tiles: Partial<Record<GradPass, GradTiles>> | null): void {
  tilesOverride = tiles;
}

/** [dq, dk, dv] of `plan`, as backend tensors owned by the caller (the engine, from a kernel). */
export function runAttentionBackward(
    backend: WebGPUBackend, plan: AttentionPlan, x: AttentionGradInputs): TensorInfo[] {
  if (x.keyLengths.dtype !== 'int32') {
    throw new Error(`attention backward (webgpu): keyLengths must be int32, got ${x.keyLengths.dtype}`);
  }
  const {batch: B, seqQ: Sq, seqK: Sk, heads: H, kvHeads: Hkv, headDim: D} = plan;
  const limits = getLimits(backend);
  const tiles = {
    dkdv: tilesOverride?.dkdv ?? chooseGradTiles('dkdv', D, limits),
    dq: tilesOverride?.dq ?? chooseGradTiles('dq', D, limits),
  };
  for (const pass of ['dkdv', 'dq'] as const) {
    if (!gradTilesFit(pass, tiles[pass], limits) || tiles[pass].paddedDim < D) {
      throw new Error(`attention backward (webgpu): tiling ${JSON.stringify(tiles[pass])} does not fit headDim ${D} ` +
          `or this device's limits`);
    }
  }
  const dq = createOutput(backend, [B, Sq, H, D]);
  const dk = createOutput(backend, [B, Sk, Hkv, D]);
  const dv = createOutput(backend, [B, Sk, Hkv, D]);
  const stats = createOutput(backend, [B * statsPerBatch(H, Sq)]);
  try {
    // Elements per batch of each tensor family; a dispatch covers as many whole batches as one binding holds.
    const perBatch = {query: Sq * H * D, key: Sk * Hkv * D, row: H * Sq, stats: statsPerBatch(H, Sq)};
    const largest = 4 * Math.max(perBatch.query, perBatch.key, perBatch.row, perBatch.stats);
    const room = limits.maxStorageBufferBindingSize - limits.minStorageBufferOffsetAlignment;
    const batchesPerRun = Math.min(B, Math.floor(room / largest), limits.maxComputeWorkgroupsPerDimension);
    if (batchesPerRun < 1) {
      throw new Error(`attention backward (webgpu): one batch of the inputs needs ${largest} bytes in one binding, ` +
          `more than this device's maxStorageBufferBindingSize (${limits.maxStorageBufferBindingSize}); ` +
          `use fewer heads or shorter sequences per call`);
    }
    const statsProgram = new AttentionGradStatsProgram();
    const dkdvProgram = new AttentionGradTileProgram('dkdv', tiles.dkdv, flagsOf(plan));
    const dqProgram = new AttentionGradTileProgram('dq', tiles.dq, flagsOf(plan));
    const dkdvSchedule = getScheduleBuffer(backend, plan, tiles.dkdv.streamed, tiles.dkdv.resident);
    const dqSchedule = getScheduleBuffer(backend, plan, tiles.dq.resident, tiles.dq.streamed);
    // Longest tiles of every head first where the work is uneven (src/plan/schedule.ts unevenWork).
    const headsFastest = {dkdv: unevenWork(dkdvSchedule.schedule, true), dq: unevenWork(dqSchedule.schedule)};

    for (let b0 = 0; b0 < B; b0 += batchesPerRun) {
      const nb = Math.min(batchesPerRun, B - b0);
      const bind = (t: TensorInfo, family: keyof typeof perBatch, what: string) =>
          bindElements(backend, t, b0 * perBatch[family], nb * perBatch[family], what);
      const o = bind(x.output, 'query', 'output'), dy = bind(x.dOutput, 'query', 'dOutput');
      const lse = bind(x.lse, 'row', 'lse'), dLse = bind(x.dLse, 'row', 'dLse');
      const st = bind(stats, 'stats', 'stats');
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
      const dkb = bind(dk, 'key', 'dk'), dvb = bind(dv, 'key', 'dv'), dqb = bind(dq, 'query', 'dq');
      const common = (pass: GradPass, out0: {base: number}, out1: {base: number}) => {
        const sb = pass === 'dkdv' ? dkdvSchedule : dqSchedule;
        const s = sb.schedule, off = sb.offsets, layout = plan.layout;
        return [
          Sq, Sk, H, Hkv, plan.groupSize, D, plan.diagonalOffset, plan.windowLeft, plan.windowRight,
          s.numQueryTiles, s.numKeyTiles, s.numHeads,
          pass === 'dkdv' ? off.colRunStart : off.rowRunStart, pass === 'dkdv' ? off.colRuns : off.rowRuns,
          off.layoutBits, layout?.blockSize ?? 1, layout?.numQueryBlocks ?? 0, layout?.numKeyBlocks ?? 0,
          qb.base, kb.base, vb.base, dy.base, st.base, out0.base, out1.base, plan.scale, plan.softcap,
          headsFastest[pass] ? 1 : 0,
        ];
      };
      const tileInputs = (sched: TensorInfo): Binding[] =>
          [qb.binding, kb.binding, vb.binding, dy.binding, st.binding, sched];
      runProgram(backend, dkdvProgram, {
        outputs: [dkb.binding, dvb.binding],
        inputs: tileInputs(dkdvSchedule.tensor),
        uniforms: common('dkdv', dkb, dvb),
        dispatch: headsFastest.dkdv ? [Hkv, dkdvSchedule.schedule.numKeyTiles, nb] :
                                       [dkdvSchedule.schedule.numKeyTiles, Hkv, nb],
      });
      runProgram(backend, dqProgram, {
        outputs: [dqb.binding],
        inputs: tileInputs(dqSchedule.tensor),
        uniforms: common('dq', dqb, {base: 0}),
        dispatch: headsFastest.dq ? [H, dqSchedule.schedule.numQueryTiles, nb] :
                                     [dqSchedule.schedule.numQueryTiles, H, nb],
      });
    }
  } catch (e) {
    for (const t of [dq, dk, dv]) backend.disposeData(t.dataId, true);
    throw e;
  } finally {
    backend.disposeData(stats.dataId, true);
  }
  return [dq, dk, dv];
}

function flagsOf(plan: AttentionPlan) {
  return {softcap: plan.softcap > 0, layout: plan.layout != null, keyLengths: plan.hasKeyLengths};
}

/** Exposed for tests: which tilings a plan gets on this backend. */
export function gradTilesFor(backend: WebGPUBackend, headDim: number): Record<GradPass, GradTiles> {
  const limits = getLimits(backend);
  return {dkdv: chooseGradTiles('dkdv', headDim, limits), dq: chooseGradTiles('dq', headDim, limits)};
}
