/**
 * Executes an AttentionPlan's forward pass on the webgl backend (WebGL2): pack q/k/v into row buffers, then per
 * chunk of query tiles run RowStats (lse) → Scores (P) → RowAccumulate (O += P·V), then unpack O and lse.
 *
 * Chunks bound both the memory of the P tile buffer (never seq × seq: a chunk's query tiles × their visible key tiles)
 * and the work of one draw (long draws stall a page and trip GPU watchdogs).
 */
import type {TensorInfo} from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import type {MathBackendWebGL} from '@tensorflow/tfjs-backend-webgl';
import {AttentionPlan} from '../../src/plan/plan.js';
import {
  AttentionProgram, AttentionVariant, PackRowsProgram, RowAccumulateProgram, RowStatsProgram, ScoresProgram, TILE,
  UniformValues, UnpackRowsProgram, UnpackRowStatsProgram,
} from './attention_gpu.js';
import {getScheduleTable, ScheduleTable} from './schedule_webgl.js';
import {assertTexelLayout, roundUp, TexelLayout, texelLayout} from './texel_layout_webgl.js';

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
  chunks: Chunk[];
  uniforms: UniformValues;
}

/** A contiguous range of row tiles (global order: batch, head, query tile) and its tile buffer. */
export interface Chunk {
  tileStart: number;
  tileEnd: number;
  tiles: TexelLayout;
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
  const slotTexels = table.maxSlots * (TILE / 2);

  // Chunks: consecutive row tiles while the tile buffer and the draw's work stay within budget.
  const rowTiles = plan.batch * plan.heads * s.numQueryTiles;
  const rowTileFloats = TILE * table.maxSlots * TILE;
  const chunks: Chunk[] = [];
  const chunkOf = (tileStart: number, tileEnd: number): Chunk => ({
    tileStart, tileEnd,
    tiles: texelLayout((tileEnd - tileStart) * (TILE / 2) * slotTexels, TILE / 2, maxTextureSize,
                       'a chunk of attention scores'),
  });
  let start = 0, work = 0;
  for (let rt = 0; rt < rowTiles; rt++) {
    const slots = slotCount(table, plan, rt);
    if (rt > start && ((rt - start + 1) * rowTileFloats > TILE_BUFFER_FLOATS || work + slots > TILES_PER_DRAW)) {
      chunks.push(chunkOf(start, rt));
      start = rt;
      work = 0;
    }
    work += slots;
  }
  chunks.push(chunkOf(start, rowTiles));

  const layout = plan.layout;
  const uniforms: UniformValues = {
    seqQ: plan.seqQ, seqK: plan.seqK, seqQPad, seqKPad, heads: plan.heads, kvHeads: plan.kvHeads,
    groupSize: plan.groupSize, diagOffset: plan.diagonalOffset, windowLeft: plan.windowLeft,
    windowRight: plan.windowRight, numQueryTiles: s.numQueryTiles, numKeyTiles: s.numKeyTiles, maskHeads: s.numHeads,
    layoutBlock: layout?.blockSize ?? 1, layoutQueryBlocks: layout?.numQueryBlocks ?? 1,
    layoutKeyBlocks: layout?.numKeyBlocks ?? 1, tableWidth: table.layout.width,
    rowSlotBase: table.offsets.rowSlot, colHeaderBase: table.offsets.colHeader, colEntryBase: table.offsets.colEntry,
    layoutBase: table.offsets.layout, scale: plan.scale, softcap: plan.softcap,
    slotTexels, qWidth: queryRows.width, kWidth: keyRows.width, statsWidth: rowStats.width,
  };
  const variant: AttentionVariant = {
    headTexels, hasLayout: layout != null, hasKeyLengths: plan.hasKeyLengths, hasSoftcap: plan.softcap > 0,
  };
  return {plan, maxTextureSize, headTexels, seqQPad, seqKPad, table, variant, queryRows, keyRows, rowStats, chunks,
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

/** [output [batch, seqQ, heads, headDim], lse [batch, heads, seqQ]] of `plan`. */
export function runAttentionForward(
    backend: MathBackendWebGL, plan: AttentionPlan, q: TensorInfo, k: TensorInfo, v: TensorInfo,
    keyLengths: TensorInfo): TensorInfo[] {
  const g = attentionGeometry(backend, plan);
  const u = g.uniforms;
  const qRows = packRows(backend, g, q, plan.seqQ, g.seqQPad, plan.heads, g.queryRows);
  const kRows = packRows(backend, g, k, plan.seqK, g.seqKPad, plan.kvHeads, g.keyRows);
  const vRows = packRows(backend, g, v, plan.seqK, g.seqKPad, plan.kvHeads, g.keyRows);
  const rowCount = plan.batch * plan.heads * g.seqQPad;

  let stats: TensorInfo|null = null, out: TensorInfo|null = null;
  for (const chunk of g.chunks) {
    const chunkUniforms = {...u, chunkTileStart: chunk.tileStart, chunkTileEnd: chunk.tileEnd, rowCount};
    const statsProgram = new RowStatsProgram(g.rowStats.shape, g.variant, stats != null,
                                             {...chunkUniforms, outWidth: g.rowStats.width});
    const newStats = runProgram(backend, statsProgram, [qRows, kRows, g.table.tensor, keyLengths,
                                                        ...(stats != null ? [stats] : [])], g.rowStats);
    disposeAll(backend, [stats]);
    stats = newStats;

    const scores = runProgram(
        backend, new ScoresProgram(chunk.tiles.shape, g.variant, {...chunkUniforms, outWidth: chunk.tiles.width}),
        [qRows, kRows, stats, g.table.tensor, keyLengths], chunk.tiles);
    const accumulate = new RowAccumulateProgram(
        g.queryRows.shape, g.variant, out != null,
        {...chunkUniforms, outWidth: g.queryRows.width, valuesWidth: g.keyRows.width, tilesWidth: chunk.tiles.width});
    const newOut = runProgram(backend, accumulate, [scores, vRows, g.table.tensor, keyLengths,
                                                    ...(out != null ? [out] : [])], g.queryRows);
    disposeAll(backend, [scores, out]);
    out = newOut;
  }

  const output = unpackRows(backend, g, out!, plan.seqQ, g.seqQPad, plan.heads, g.queryRows);
  const lse = runProgram(backend, new UnpackRowStatsProgram([plan.batch, plan.heads, plan.seqQ],
                                                            {statsWidth: g.rowStats.width, seqPad: g.seqQPad,
                                                             heads: plan.heads}),
                         [stats!], null);
  disposeAll(backend, [qRows, kRows, vRows, stats, out]);
  return [output, lse];
}
