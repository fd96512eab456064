/**
 * What both webgl executors (attention_forward.ts, attention_backward.ts) share: a plan's geometry on one backend
 * (padded sizes, texel layouts, the uploaded schedule table, the uniforms, and how the query tiles split into row
 * ranges × slot ranges — the chunks each draw covers), and the row-buffer plumbing around the programs (run one,
 * pack / unpack rows, dispose intermediates).
 *
 * Row ranges bound the memory of the P tile buffer (never seq × seq: a range's query tiles × their visible key tiles)
 * and the work of one draw (long draws stall a page and trip GPU watchdogs); slot ranges (at most MAX_SLOTS_PER_DRAW
 * key tiles per query tile) bound every loop of a draw (llvmpipe's 65,535-iteration limit, see attention_program.ts).
 */
import type {TensorInfo} from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import type {MathBackendWebGL} from '@tensorflow/tfjs-backend-webgl';
import {AttentionPlan} from '../../src/plan/plan.js';
import type {AttentionInputs} from '../attention_kernel_func.js';
import {
  optionUniformValues, optionVariant, packOptionInputs, skipsHiddenTiles, tileSkipFlags,
} from './attention_options.js';
import {AttentionProgram, AttentionVariant, MAX_SLOTS_PER_DRAW, TILE, UniformValues} from './attention_program.js';
import {PackRowsProgram, UnpackRowsProgram} from './row_packing_gpu.js';
import {getScheduleTable, ScheduleTable} from './schedule_table.js';
import {assertTexelLayout, roundUp, TexelLayout, texelLayout} from './texel_layout.js';

/** Floats of one P (or dS) tile buffer, at most. */
const TILE_BUFFER_FLOATS = 1 << 23;
/** Visited (query tile, key tile) pairs per draw, at most (one draw stays well under a second on SwiftShader). */
const TILES_PER_DRAW = 4096;

/** Sizes, layouts and uniforms of one plan on one backend. */
export interface AttentionGeometry {
  plan: AttentionPlan;
  maxTextureSize: number;
  headTexels: number;
  seqQPad: number;
  seqKPad: number;
  table: ScheduleTable;
  variant: AttentionVariant;
  queryRows: TexelLayout;
  keyRows: TexelLayout;
  rowStats: TexelLayout;
  rowRanges: RowRange[];
  uniforms: UniformValues;
}

/** A contiguous range of row tiles (global order: batch, head, query tile), split into slot ranges. */
export interface RowRange {
  tileStart: number;
  tileEnd: number;
  slotRanges: Chunk[];
}

/** The unit of one draw: a row range × a slot range, with its tile buffer layout and uniforms. */
export interface Chunk {
  slotStart: number;
  slotEnd: number;
  tiles: TexelLayout;
  /** The same scores as ScoreBlocksProgram's eight targets: each target's layout. */
  blocks: TexelLayout;
  uniforms: UniformValues;
}

export function attentionGeometry(backend: MathBackendWebGL, plan: AttentionPlan): AttentionGeometry {
  const maxTextureSize = tf.env().getNumber('WEBGL_MAX_TEXTURE_SIZE');
  const headTexels = Math.ceil(plan.headDim / 2);
  const seqQPad = roundUp(plan.seqQ, TILE), seqKPad = roundUp(plan.seqK, TILE);
  const table = getScheduleTable(backend, plan, TILE, maxTextureSize);
  const s = table.schedule;
  // A row buffer's unit is one tile of rows (TILE / 2 row pairs), which the kernels walk with x + headTexels steps.
  const rowUnit = (TILE / 2) * headTexels;
  const queryRows = texelLayout(plan.batch * plan.heads * seqQPad / 2 * headTexels, rowUnit, maxTextureSize,
                                'the queries');
  const keyRows = texelLayout(plan.batch * plan.kvHeads * seqKPad / 2 * headTexels, rowUnit, maxTextureSize,
                              'the keys');
  const rowStats = texelLayout(plan.batch * plan.heads * seqQPad / 4, 1, maxTextureSize, 'the row statistics');

  // Row ranges: consecutive row tiles while the tile buffer and the draw's work stay within budget.
  const rowTiles = plan.batch * plan.heads * s.numQueryTiles;
  const slots = Array.from({length: rowTiles}, (_, rt) => slotCount(table, plan, rt));
  const rowTileFloats = TILE * Math.min(table.maxSlots, MAX_SLOTS_PER_DRAW) * TILE;
  const bounds: Array<[number, number]> = [];
  let start = 0, work = 0;
  for (let rt = 0; rt < rowTiles; rt++) {
    // (At most MAX_TEXTURE_SIZE row tiles: the eight-target block layout gives each its own lines.)
    if (rt > start && ((rt - start + 1) * rowTileFloats > TILE_BUFFER_FLOATS || work + slots[rt] > TILES_PER_DRAW ||
                       rt - start + 1 > maxTextureSize)) {
      bounds.push([start, rt]);
      start = rt;
      work = 0;
    }
    work += slots[rt];
  }
  bounds.push([start, rowTiles]);
  const rowRanges = bounds.map(([tileStart, tileEnd]): RowRange => {
    const widest = Math.max(1, ...slots.slice(tileStart, tileEnd));
    const parts = Math.ceil(widest / MAX_SLOTS_PER_DRAW), perPart = Math.ceil(widest / parts);
    const slotRanges = Array.from({length: parts}, (_, p): Chunk => {
      const slotStart = p * perPart, slotEnd = Math.min(widest, slotStart + perPart);
      const slotTexels = (slotEnd - slotStart) * (TILE / 2);
      const tiles = texelLayout((tileEnd - tileStart) * (TILE / 2) * slotTexels, TILE / 2, maxTextureSize,
                                'a chunk of attention scores');
      // The eight-target block layout (BLOCK_LAYOUT_UNIFORMS): lines of slotsPerLine slots, linesPerTile per tile.
      const rangeSlots = slotEnd - slotStart, rangeTiles = tileEnd - tileStart;
      let slotsPerLine = 1;
      while (rangeTiles * Math.ceil(rangeSlots / slotsPerLine) > maxTextureSize && slotsPerLine < rangeSlots) {
        slotsPerLine *= 2;
      }
      const linesPerTile = Math.ceil(rangeSlots / slotsPerLine);
      const blocks = texelLayout(rangeTiles * linesPerTile * slotsPerLine * TILE, slotsPerLine * TILE, maxTextureSize,
                                 'a chunk of attention score blocks');
      return {slotStart, slotEnd, tiles, blocks, uniforms: {
        chunkTileStart: tileStart, chunkTileEnd: tileEnd, slotStart, slotEnd, slotTexels, tilesWidth: tiles.width,
        blockSlotsPerLine: slotsPerLine, blockLinesPerTile: linesPerTile,
      }};
    });
    return {tileStart, tileEnd, slotRanges};
  });

  const layout = plan.layout;
  const uniforms: UniformValues = {
    seqQ: plan.seqQ, seqK: plan.seqK, seqQPad, seqKPad, heads: plan.heads, kvHeads: plan.kvHeads,
    groupSize: plan.groupSize, diagOffset: plan.diagonalOffset, windowLeft: plan.windowLeft,
    windowRight: plan.windowRight, numQueryTiles: s.numQueryTiles, numKeyTiles: s.numKeyTiles, maskHeads: s.numHeads,
    layoutBlock: layout?.blockSize ?? 1, layoutQueryBlocks: layout?.numQueryBlocks ?? 1,
    layoutKeyBlocks: layout?.numKeyBlocks ?? 1, tableWidth: table.layout.width,
    rowSlotBase: table.offsets.rowSlot, colHeaderBase: table.offsets.colHeader, colEntryBase: table.offsets.colEntry,
    layoutBase: table.offsets.layout, scale: plan.scale, softcap: plan.softcap,
    qWidth: queryRows.width, kWidth: keyRows.width, statsWidth: rowStats.width,
    rowCount: plan.batch * plan.heads * seqQPad, keyRowCount: plan.batch * plan.kvHeads * seqKPad,
  };
  const variant: AttentionVariant = {
    headTexels, hasLayout: layout != null, hasKeyLengths: plan.hasKeyLengths, hasSoftcap: plan.softcap > 0,
  };
  const options = optionVariant(plan);
  if (options != null) {
    tileSkipFlags(options);
    variant.options = options;
    Object.assign(uniforms, optionUniformValues(plan, null));
  }
  return {plan, maxTextureSize, headTexels, seqQPad, seqKPad, table, variant, queryRows, keyRows, rowStats, rowRanges,
          uniforms};
}

function slotCount(table: ScheduleTable, plan: AttentionPlan, rowTile: number): number {
  const s = table.schedule;
  const qt = rowTile % s.numQueryTiles;
  const h = Math.floor(rowTile / s.numQueryTiles) % plan.heads;
  const row = (h % s.numHeads) * s.numQueryTiles + qt;
  let n = 0;
  for (let r = s.rowRunStart[row]; r < s.rowRunStart[row + 1]; r++) n += s.rowRuns[3 * r + 1];
  return n;
}

/** The plan's option inputs as texel arrays (attention_options.ts): none without options. */
export interface PackedOptions {
  /** In scoreOptionInputs order: the inputs of every program that reads the score options. */
  inputs: TensorInfo[];
  /** inputs, then the tile summaries (tileSkipInputs order): the inputs of the score programs. */
  scoreInputs: TensorInfo[];
  /** What tileHidden reads in the passes after the scores (hiddenTileSkip's inputs; none when they do not skip). */
  tileSkipInputs: TensorInfo[];
  /** Every tensor made (the caller disposes them). */
  all: TensorInfo[];
}

/** Packs the plan's option inputs (mask, bias, offsets, slopes, segment ids) and sets their widths in g.uniforms. */
export function packOptions(backend: MathBackendWebGL, g: AttentionGeometry, inputs: AttentionInputs): PackedOptions {
  const packed = packOptionInputs(backend, g.plan, g.variant.options, inputs, g.maxTextureSize);
  if (packed == null) return {inputs: [], scoreInputs: [], tileSkipInputs: [], all: []};
  Object.assign(g.uniforms, optionUniformValues(g.plan, packed));
  const scoreInputs = [...packed.inputs, ...packed.tileInputs];
  const o = g.variant.options;
  const tileSkipInputs = !skipsHiddenTiles(o) ? [] : [...(o.queryOffsets ? [packed.inputs[0]] : []), ...packed.tileInputs];
  return {inputs: packed.inputs, scoreInputs, tileSkipInputs, all: scoreInputs};
}

/** Runs one attention program; checks that a texel-array output got the texture shape the kernels address. */
export function runProgram(
    backend: MathBackendWebGL, program: AttentionProgram, inputs: TensorInfo[], layout: TexelLayout|null): TensorInfo {
  const out = backend.runWebGLProgram(program, inputs, 'float32', program.uniformValues, true);
  if (layout != null) assertTexelLayout(backend, out, layout);
  return out;
}

/** Packs a [batch, seq, heads, headDim] tensor into a row buffer. */
export function packRows(
    backend: MathBackendWebGL, g: AttentionGeometry, x: TensorInfo, seq: number, seqPad: number, heads: number,
    layout: TexelLayout): TensorInfo {
  const rowCount = g.plan.batch * heads * seqPad;
  const program = new PackRowsProgram(layout.shape, g.headTexels,
                                      {outWidth: layout.width, rowCount, seq, seqPad, heads, dim: g.plan.headDim});
  return runProgram(backend, program, [x], layout);
}

/** Unpacks a row buffer into a [batch, seq, heads, headDim] tensor. */
export function unpackRows(
    backend: MathBackendWebGL, g: AttentionGeometry, rows: TensorInfo, seq: number, seqPad: number, heads: number,
    layout: TexelLayout): TensorInfo {
  const program = new UnpackRowsProgram([g.plan.batch, seq, heads, g.plan.headDim], g.headTexels,
                                        {rowsWidth: layout.width, seqPad, heads});
  return runProgram(backend, program, [rows], null);
}

export function disposeAll(backend: MathBackendWebGL, infos: Array<TensorInfo|null>): void {
  for (const info of infos) if (info != null) backend.disposeIntermediateTensorInfo(info);
}
