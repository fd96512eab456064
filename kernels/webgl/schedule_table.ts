/**
 * A plan's block schedule (and block-sparse layout) as ONE float texel array per (mask, tile size, texture size),
 * uploaded once and cached per backend, so a training loop pays for it once.
 *
 * Table layout (texel offsets in ScheduleTable.offsets; values are small integers, exact in float32):
 *   rowHeader  [numHeads * numQueryTiles]   (first slot, slot count, -, -) of schedule row mh * numQueryTiles + qt
 *   rowSlot    [visited tiles]              (key tile, full, -, -): slot s of a row is rowSlot[first + s]; full is
 *                                           the schedule's (the data's own masks are tested by the programs)
 *   colHeader  [numHeads * numKeyTiles]     (first entry, entry count, -, -) of key tile kt of mask head mh
 *   colEntry   [visited tiles]              (query tile, slot of this key tile in that query tile's row, full, -),
 *                                           ascending query tiles
 *   layout     [ceil(mask.length / 4)]      the layout mask, 4 blocks per texel (one texel of zeros without layout)
 * The cached tensors are backend data, not engine tensors (they never count in tf.memory().numTensors); the least
 * recently used are released beyond CACHE_SIZE, or all by clearWebGLScheduleCache.
 */
import type {TensorInfo} from '@tensorflow/tfjs-core';
import type {MathBackendWebGL} from '@tensorflow/tfjs-backend-webgl';
import {AttentionPlan} from '../../src/plan/plan.js';
import {LruCache} from '../../src/plan/lru_cache.js';
import {BlockSchedule, getSchedule} from '../../src/plan/schedule.js';
import {TexelLayout, texelLayout, toPackedElements} from './texel_layout.js';

export interface ScheduleOffsets {
  rowHeader: number;
  rowSlot: number;
  colHeader: number;
  colEntry: number;
  layout: number;
}

export interface ScheduleTable {
  schedule: BlockSchedule;
  /** Slots per query tile in tile buffers: the longest row of the schedule (at least 1). */
  maxSlots: number;
  tensor: TensorInfo;
  layout: TexelLayout;
  offsets: ScheduleOffsets;
}

const CACHE_SIZE = 16;
const caches = new WeakMap<MathBackendWebGL, LruCache<string, ScheduleTable>>();

function cacheOf(backend: MathBackendWebGL): LruCache<string, ScheduleTable> {
  let cache = caches.get(backend);
  if (cache == null) {
    cache = new LruCache(CACHE_SIZE, (entry) => backend.disposeData(entry.tensor.dataId, true));
    caches.set(backend, cache);
  }
  return cache;
}

export function getScheduleTable(
    backend: MathBackendWebGL, plan: AttentionPlan, tile: number, maxTextureSize: number): ScheduleTable {
  // The full flags are the schedule's own: where a mask, segment ids or a bias may hide entries, the programs also
  // test the data's tile summaries (attention_options.ts, dataPartialTest) before they take a full tile's path.
  return cacheOf(backend).getOrCreate(
      `${plan.maskKey}|${tile}|${maxTextureSize}`,
      () => upload(backend, plan, getSchedule(plan, tile, tile), maxTextureSize));
}

/** Releases every cached schedule table of `backend`. */
export function clearWebGLScheduleCache(backend: MathBackendWebGL): void {
  caches.get(backend)?.clear();
}

function upload(backend: MathBackendWebGL, plan: AttentionPlan, s: BlockSchedule, maxTextureSize: number):
    ScheduleTable {
  const rows = s.numHeads * s.numQueryTiles, cols = s.numHeads * s.numKeyTiles;
  const visited = s.visitedTiles;
  const layoutMask = plan.layout?.mask ?? new Uint8Array(4);
  const offsets: ScheduleOffsets = {rowHeader: 0, rowSlot: rows, colHeader: rows + visited, colEntry: 0, layout: 0};
  offsets.colEntry = offsets.colHeader + cols;
  offsets.layout = offsets.colEntry + visited;
  const texels = offsets.layout + Math.ceil(layoutMask.length / 4);
  const values = new Float32Array(4 * texels);

  // Rows: the slots of each (mask head, query tile), and for each visited (row, key tile) its slot number.
  const slotOf = new Map<number, number>();  // (row * numKeyTiles + keyTile) → slot
  let slot = 0;
  for (let r = 0; r < rows; r++) {
    const first = slot;
    for (let run = s.rowRunStart[r]; run < s.rowRunStart[r + 1]; run++) {
      const firstTile = s.rowRuns[3 * run], count = s.rowRuns[3 * run + 1], full = s.rowRuns[3 * run + 2];
      for (let kt = firstTile; kt < firstTile + count; kt++) {
        slotOf.set(r * s.numKeyTiles + kt, slot - first);
        values[4 * (offsets.rowSlot + slot)] = kt;
        values[4 * (offsets.rowSlot + slot) + 1] = full;
        slot++;
      }
    }
    values[4 * r] = first;
    values[4 * r + 1] = slot - first;
  }
  // Columns: per (mask head, key tile), the query tiles visiting it and the slot it has in each of them.
  let entry = 0;
  for (let c = 0; c < cols; c++) {
    const head = Math.floor(c / s.numKeyTiles), kt = c - head * s.numKeyTiles;
    const first = entry;
    for (let run = s.colRunStart[c]; run < s.colRunStart[c + 1]; run++) {
      const firstTile = s.colRuns[3 * run], count = s.colRuns[3 * run + 1], full = s.colRuns[3 * run + 2];
      for (let qt = firstTile; qt < firstTile + count; qt++) {
        values[4 * (offsets.colEntry + entry)] = qt;
        values[4 * (offsets.colEntry + entry) + 1] = slotOf.get((head * s.numQueryTiles + qt) * s.numKeyTiles + kt)!;
        values[4 * (offsets.colEntry + entry) + 2] = full;
        entry++;
      }
    }
    values[4 * (offsets.colHeader + c)] = first;
    values[4 * (offsets.colHeader + c) + 1] = entry - first;
  }
  for (let i = 0; i < layoutMask.length; i++) values[4 * offsets.layout + i] = layoutMask[i] !== 0 ? 1 : 0;

  const layout = texelLayout(texels, 1, maxTextureSize, 'the block schedule');
  const tensor = backend.makeTensorInfo(layout.shape, 'float32', toPackedElements(values, layout));
  return {schedule: s, maxSlots: Math.max(1, s.maxTilesPerRow), tensor, layout, offsets};
}
