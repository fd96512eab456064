/**
 * The webgpu forward executor shared by FlashAttention, SlidingWindowAttention and SparseAttention: chooses the tile
 * configuration (forward_tiles.ts), uploads the plan's block schedule once (schedule_buffers.ts) and records the
 * forward program (flash_attention_webgpu.ts) into tfjs's command stream through the multi-output runner.
 *
 * Tensors larger than one storage binding (maxStorageBufferBindingSize) are split by batch, then by query tiles,
 * binding sub-ranges of the buffers; dispatches larger than maxComputeWorkgroupsPerDimension are split the same way.
 */
import {getBackend, type TensorInfo} from '@tensorflow/tfjs-core';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {FORWARD_KERNEL} from '../../src/kernel_names.js';
import {AttentionPlan} from '../../src/plan/plan.js';
import {recordAttentionPath} from '../../src/plan/precision.js';
import {unevenWork} from '../../src/plan/schedule.js';
import type {AttentionInputs} from '../attention_kernel_func.js';
import {runDecodeForward, useDecodePath} from './attention_decode.js';
import {runTensorCoreForward, tensorCoreForwardApplies} from './attention_forward_tc.js';
import {
  buildSideBuffer, elementMasked, optionFlagsOf, optionKey, optionUniformValues,
} from './attention_options.js';
import {deviceCapabilities} from './device_capabilities.js';
import {
  AttentionForwardProgram, FORWARD_UNIFORMS, forwardOptionCodeKey, planUniformValues,
} from './flash_attention_webgpu.js';
import {chooseForwardConfig, ForwardTileConfig} from './forward_tiles.js';
import {Binding, bindElements, createOutput, getLimits, runProgram} from './program_runner.js';
import {getScheduleBuffer} from './schedule_buffers.js';

const programCache = new Map<string, AttentionForwardProgram>();

/** The program each plan ran last (the ops reuse plan objects: src/ops/run_attention.ts), with what chose it. */
const programOfPlan = new WeakMap<AttentionPlan,
    {config: ForwardTileConfig; f16: boolean; codeKey: string; program: AttentionForwardProgram}>();

function getProgram(plan: AttentionPlan, config: ForwardTileConfig, f16: boolean): AttentionForwardProgram {
  const codeKey = forwardOptionCodeKey();
  const last = programOfPlan.get(plan);
  if (last !== undefined && last.config === config && last.f16 === f16 && last.codeKey === codeKey) {
    return last.program;
  }
  const opts = optionFlagsOf(plan);
  const key = `${plan.headDim}|${JSON.stringify(config)}|${plan.softcap > 0}|${plan.hasKeyLengths}|${
      plan.layout != null}${optionKey(opts)}${opts != null ? codeKey : ''}${f16 ? '|f16' : ''}`;
  let p = programCache.get(key);
  if (p == null) {
    p = new AttentionForwardProgram(
        plan.headDim, config, plan.softcap > 0, plan.hasKeyLengths, plan.layout != null, opts, f16);
    programCache.set(key, p);
  }
  programOfPlan.set(plan, {config, f16, codeKey, program: p});
  return p;
}

/** One dispatch's share of the work: batches [batch0, batch0 + batches), query tiles [tile0, tile0 + tiles). */
interface Chunk {
  batch0: number;
  batches: number;
  tile0: number;
  tiles: number;
}

/**
 * Splits (batch, query tile) work so that every binding fits maxStorageBufferBindingSize and every dispatch fits
 * maxComputeWorkgroupsPerDimension. Whole batches first; a batch too large for one binding is split by query tiles
 * (its K/V must still fit one binding, else this throws).
 */
export function planForwardChunks(
    plan: AttentionPlan, blockQ: number, limits: {maxStorageBufferBindingSize: number;
                                                  maxComputeWorkgroupsPerDimension: number}): Chunk[] {
  const {batch, seqQ, seqK, heads, kvHeads, headDim} = plan;
  const maxBytes = limits.maxStorageBufferBindingSize - 256;  // room for the offset alignment remainder
  const maxDim = limits.maxComputeWorkgroupsPerDimension;
  const numTiles = Math.ceil(seqQ / blockQ);
  const qBatchBytes = seqQ * heads * headDim * 4;
  const kvBatchBytes = seqK * kvHeads * headDim * 4;
  const lseBatchBytes = heads * seqQ * 4;
  if (heads > maxDim) throw new Error(`attention: ${heads} heads exceed maxComputeWorkgroupsPerDimension ${maxDim}`);
  if (kvBatchBytes > maxBytes || lseBatchBytes > maxBytes) {
    throw new Error(`attention: one batch's keys/values (${kvBatchBytes} bytes) exceed this device's ` +
        `maxStorageBufferBindingSize (${limits.maxStorageBufferBindingSize}); use fewer keys or heads`);
  }
  const chunks: Chunk[] = [];
  const perBatch = Math.max(0, Math.min(
      Math.floor(maxBytes / Math.max(qBatchBytes, kvBatchBytes, lseBatchBytes, 1)), maxDim));
  if (perBatch >= 1 && numTiles <= maxDim) {
    for (let b = 0; b < batch; b += perBatch) {
      chunks.push({batch0: b, batches: Math.min(perBatch, batch - b), tile0: 0, tiles: numTiles});
    }
    return chunks;
  }
  const tileBytes = blockQ * heads * headDim * 4;
  const tilesPerChunk = Math.min(Math.floor(maxBytes / tileBytes), maxDim);
  if (tilesPerChunk < 1) throw new Error(`attention: one query tile exceeds maxStorageBufferBindingSize`);
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < numTiles; t += tilesPerChunk) {
      chunks.push({batch0: b, batches: 1, tile0: t, tiles: Math.min(tilesPerChunk, numTiles - t)});
    }
  }
  return chunks;
}

/**
 * Whether this call runs the vec4<f16> program: precision 'medium' on a device with shader-f16. ('high' needs f16
 * subgroup-matrix tiles; without them it, like 'highest', runs fp32.)
 */
function useF16(backend: WebGPUBackend, plan: AttentionPlan): boolean {
  return plan.precision === 'medium' && deviceCapabilities(backend.device).shaderF16;
}

/** Runs the forward kernel for `plan`: returns [output [B,Sq,H,D], lse [B,H,Sq]] (engine takes ownership). */
export function runAttentionForward(
    backend: WebGPUBackend, plan: AttentionPlan, inputs: AttentionInputs): TensorInfo[] {
  const {q, k, v, keyLengths} = inputs;
  const {batch, seqQ, seqK, heads, kvHeads, headDim} = plan;
  // Everything that can throw (limits, tile choice) runs before the outputs exist, so a rejection leaks nothing.
  const empty = batch * seqQ * heads * headDim === 0;
  if (!empty && seqK === 0) throw new Error('attention: seqK must be at least 1');
  if (!empty && useDecodePath(plan)) return runDecodeForward(backend, plan, inputs);
  // 'medium' / 'high' on f16 subgroup-matrix (tensor-core) tiles where the device has them and the plan fits.
  if (!empty && tensorCoreForwardApplies(backend, plan)) return runTensorCoreForward(backend, plan, inputs);
  const f16 = useF16(backend, plan);
  const config = empty ? null :
      chooseForwardConfig(backend, headDim, plan.layout?.blockSize, plan.dropout != null, f16);
  const limits = getLimits(backend);
  const chunks = config == null ? [] : planForwardChunks(plan, config.blockQ, limits);
  if (config == null) {
    return [createOutput(backend, [batch, seqQ, heads, headDim]), createOutput(backend, [batch, heads, seqQ])];
  }
  const program = getProgram(plan, config, f16);
  if (f16) recordAttentionPath({backend: getBackend(), kernel: FORWARD_KERNEL[plan.kind], requested: plan.precision, path: 'f16'});
  const sched = getScheduleBuffer(backend, plan, config.blockQ, config.blockK);
  const planValues = planUniformValues(plan, sched);
  // Per-call options: mask and bias bound as they are (checked before anything is allocated), the small inputs
  // gathered with the schedule into one side buffer, with the tile summary of a mask / segment ids at this tiling.
  const opts = program.opts;
  const whole = (t: TensorInfo, what: string) =>
      bindElements(backend, t, 0, t.shape.reduce((a, b) => a * b, 1), what).binding;
  const optionInputs: Binding[] = [];
  if (opts?.mask != null) optionInputs.push(whole(inputs.mask, 'attention mask'));
  if (opts?.bias) optionInputs.push(whole(inputs.bias, 'attention bias'));
  const summarized = opts != null && elementMasked(opts);
  const side = opts == null ? null :
      buildSideBuffer(backend, plan, [sched.tensor], inputs, 0, summarized ? [[config.blockQ, config.blockK]] : []);
  const scheduleBinding = side != null ? {binding: side.tensor} :
      bindElements(backend, sched.tensor, 0, sched.tensor.shape[0], 'attention schedule');
  const headsFastest = unevenWork(sched.schedule);
  const output = createOutput(backend, [batch, seqQ, heads, headDim]);
  const lse = createOutput(backend, [batch, heads, seqQ]);

  for (const chunk of chunks) {
    const rowStart = chunk.tile0 * config.blockQ;
    const rowEnd = Math.min(seqQ, (chunk.tile0 + chunk.tiles) * config.blockQ);
    const wholeBatches = chunk.tile0 === 0 && rowEnd === seqQ;
    const qStart = (chunk.batch0 * seqQ + rowStart) * heads * headDim;
    const qCount = wholeBatches ? chunk.batches * seqQ * heads * headDim : (rowEnd - rowStart) * heads * headDim;
    const kvStart = chunk.batch0 * seqK * kvHeads * headDim, kvCount = chunk.batches * seqK * kvHeads * headDim;
    const lseStart = chunk.batch0 * heads * seqQ, lseCount = chunk.batches * heads * seqQ;
    const qb = bindElements(backend, q, qStart, qCount, 'attention q');
    const ob = bindElements(backend, output, qStart, qCount, 'attention output');
    const kb = bindElements(backend, k, kvStart, kvCount, 'attention k');
    const vb = bindElements(backend, v, kvStart, kvCount, 'attention v');
    const lb = bindElements(backend, lse, lseStart, lseCount, 'attention lse');
    const values: Record<string, number> = {
      ...planValues,
      qBase: qb.base, kBase: kb.base, vBase: vb.base, oBase: ob.base, lseBase: lb.base,
      batchStart: chunk.batch0, queryTileStart: chunk.tile0, queryTileCount: chunk.tiles,
      rowStart: wholeBatches ? 0 : rowStart,
      headsFastest: headsFastest ? 1 : 0,
    };
    // Without keyLengths the shader never reads its binding: bind the (cached) schedule there instead of the op's
    // per-call tensor of seqK values, whose upload would end the compute pass with a copy between two attention
    // dispatches (a barrier that drained the GPU between back-to-back calls: 3.47 ms per call vs 3.28 ms of kernel
    // time at seq 4096 on the H200).
    const keyLengthsBinding = plan.hasKeyLengths ? keyLengths : scheduleBinding.binding;
    const bindings: Binding[] = side != null ?
        [qb.binding, kb.binding, vb.binding, side.tensor, ...optionInputs] :
        [qb.binding, kb.binding, vb.binding, keyLengthsBinding, scheduleBinding.binding];
    const uniforms = FORWARD_UNIFORMS.map(([name]) => values[name]);
    if (side != null) uniforms.push(...optionUniformValues(plan, side.layout, 0, summarized ? 0 : -1));
    runProgram(backend, program, {
      outputs: [ob.binding, lb.binding], inputs: bindings,
      uniforms,
      dispatch: headsFastest ? [heads, chunk.tiles, chunk.batches] : [chunk.tiles, heads, chunk.batches],
    });
  }
  // Released once the queued dispatches that read it have been submitted (commandQueueOwnedIds).
  if (side != null) backend.disposeData(side.tensor.dataId, true);
  return [output, lse];
}
