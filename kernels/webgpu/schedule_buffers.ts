/**
 * A plan's block schedule (and block-sparse layout) on the GPU, as ONE int32 buffer per (mask, tile sizes), cached
 * per backend so that a training loop uploads it once.
 *
 * Buffer layout (int32 element offsets in ScheduleBuffer.offsets):
 *   rowRunStart  [numHeads * numQueryTiles + 1]  runs of row r are rowRunStart[r] .. rowRunStart[r + 1] - 1
 *   rowRuns      [3 * runs]                      (first key tile, tile count, full)
 *   colRunStart  [numHeads * numKeyTiles + 1]    the transpose, for dK/dV
 *   colRuns      [3 * runs]                      (first query tile, tile count, full)
 *   layoutBits   [ceil(layout.mask.length / 32)] bit (lh * numQueryBlocks + qb) * numKeyBlocks + kb of the layout
 *                                                mask, 32 per word (u32 bit order, LSB first); 1 word when no layout
 * Row/column indices are those of src/plan/schedule.ts (mask head major). The cached tensors live in the backend's
 * tensor storage but are not engine tensors (they never appear in tf.memory().numTensors); they are released when
 * evicted from the cache (least recently used beyond CACHE_SIZE) or by clearWebGPUScheduleCache.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {AttentionPlan} from '../../src/plan/plan.js';
import {LruCache} from '../../src/plan/lru_cache.js';
import {BlockSchedule, getSchedule} from '../../src/plan/schedule.js';
import {gpuBufferOf} from './program_runner.js';

export interface ScheduleOffsets {
  rowRunStart: number;
  rowRuns: number;
  colRunStart: number;
  colRuns: number;
  layoutBits: number;
}

export interface ScheduleBuffer {
  schedule: BlockSchedule;
  /** int32 [length]: every table above, concatenated. */
  tensor: tf.TensorInfo;
  offsets: ScheduleOffsets;
}

const CACHE_SIZE = 32;
const caches = new WeakMap<WebGPUBackend, LruCache<string, ScheduleBuffer>>();

function cacheOf(backend: WebGPUBackend): LruCache<string, ScheduleBuffer> {
  let cache = caches.get(backend);
  if (cache == null) {
    // disposeData defers the release while a queued command still reads the buffer (commandQueueOwnedIds).
    cache = new LruCache(CACHE_SIZE, (entry) => backend.disposeData(entry.tensor.dataId, true));
    caches.set(backend, cache);
  }
  return cache;
}

/** The uploaded schedule of `plan` at tiles of blockQ × blockK (cached by plan.maskKey and the tile sizes). */
export function getScheduleBuffer(
    backend: WebGPUBackend, plan: AttentionPlan, blockQ: number, blockK: number): ScheduleBuffer {
  return cacheOf(backend).getOrCreate(`${plan.maskKey}|${blockQ}|${blockK}`,
                                      () => upload(backend, plan, getSchedule(plan, blockQ, blockK)));
}

/** Releases every cached schedule buffer of `backend`. */
export function clearWebGPUScheduleCache(backend: WebGPUBackend): void {
  caches.get(backend)?.clear();
}

function upload(backend: WebGPUBackend, plan: AttentionPlan, s: BlockSchedule): ScheduleBuffer {
  const layout = plan.layout;
  const bitWords = layout == null ? 1 : Math.max(1, Math.ceil(layout.mask.length / 32));
  const offsets: ScheduleOffsets = {rowRunStart: 0, rowRuns: 0, colRunStart: 0, colRuns: 0, layoutBits: 0};
  offsets.rowRuns = s.rowRunStart.length;
  offsets.colRunStart = offsets.rowRuns + Math.max(s.rowRuns.length, 1);
  offsets.colRuns = offsets.colRunStart + s.colRunStart.length;
  offsets.layoutBits = offsets.colRuns + Math.max(s.colRuns.length, 1);
  const data = new Int32Array(offsets.layoutBits + bitWords);
  data.set(s.rowRunStart, offsets.rowRunStart);
  data.set(s.rowRuns, offsets.rowRuns);
  data.set(s.colRunStart, offsets.colRunStart);
  data.set(s.colRuns, offsets.colRuns);
  if (layout != null) {
    for (let i = 0; i < layout.mask.length; i++) {
      if (layout.mask[i] !== 0) data[offsets.layoutBits + (i >>> 5)] |= 1 << (i & 31);
    }
  }
  // backend.write puts the values in the backend's storage without an engine tensor; uploadToGPU makes the buffer.
  const dataId = backend.write(data, [data.length], 'int32');
  const tensor: tf.TensorInfo = {dataId, shape: [data.length], dtype: 'int32'};
  gpuBufferOf(backend, tensor);
  return {schedule: s, tensor, offsets};
}
