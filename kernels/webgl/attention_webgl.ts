/**
 * Executes an AttentionPlan's forward pass on the webgl backend (WebGL2): pack q/k/v into row buffers, then per
 * range of query tiles and per slot range: Scores (the scores t, each dot product once), TileStats (lse, merged over
 * slot ranges), Probabilities (P = exp(t − lse)) and RowAccumulate (O += P·V, rescaled to the new lse when a row
 * spans several slot ranges); finally unpack O and lse. Where the context has eight float render targets, Scores,
 * Probabilities and P·V are eight-target block programs, and Scores / Probabilities shade only the visited slots.
 *
 * Row ranges bound the memory of the P tile buffer (never seq × seq: a range's query tiles × their visible key tiles)
 * and the work of one draw (long draws stall a page and trip GPU watchdogs); slot ranges (at most MAX_SLOTS_PER_DRAW
 * key tiles per query tile) bound every loop of a draw (llvmpipe's 65,535-iteration limit, see attention_gpu.ts).
 */
import type {TensorInfo} from '@tensorflow/tfjs-core';
import * as tf from '@tensorflow/tfjs-core';
import type {MathBackendWebGL} from '@tensorflow/tfjs-backend-webgl';
import {AttentionPlan} from '../../src/plan/plan.js';
import {
  AttentionProgram, AttentionVariant, BLOCK_TARGETS, channelGroups, KeyEndsProgram, MAX_SLOTS_PER_DRAW,
  mergeValueBlocksProgram, NonFiniteKeyTilesProgram, PackRowsProgram, probabilityBlocksProgram, ProbabilitiesProgram,
  RowAccumulateProgram, scoreBlocksProgram, ScoresProgram, TileStatsProgram, TILE, UniformValues, UnpackRowsProgram,
  UnpackRowStatsProgram, valueBlocksProgram,
} from './attention_gpu.js';
import {runMultiTarget, supportsMultiTarget} from './multi_target_webgl.js';
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
  /** The same scores as scoreBlocksProgram's eight targets: each target's layout. */
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

  // Multiple render targets (scoreBlocksProgram) when the context has them; keyEnds: keyLengths as a texel array
  // for it (null without keyLengths; undefined: no multi-target path).
  const keyEndsLayout = texelLayout(Math.ceil(plan.batch / 4), 1, g.maxTextureSize, 'the key limits');
  const keyEnds = !supportsMultiTarget(backend, BLOCK_TARGETS) ? undefined : !plan.hasKeyLengths ? null :
      runProgram(backend, new KeyEndsProgram(keyEndsLayout.shape, g.variant,
                                             {outWidth: keyEndsLayout.width, seqK: plan.seqK, batch: plan.batch}),
                 [keyLengths], keyEndsLayout);
  // Which key tiles of v hold a NaN or an infinity: valueBlocksProgram's fix-up pass redoes the rows they reach.
  const keyTileCount = g.uniforms.keyRowCount / TILE;
  const nonFiniteLayout = texelLayout(Math.ceil(keyTileCount / 4), 1, g.maxTextureSize, 'the value tile flags');
  const nonFiniteTiles = keyEnds === undefined ? null :
      runProgram(backend, new NonFiniteKeyTilesProgram(nonFiniteLayout.shape, g.headTexels,
                                                       {outWidth: nonFiniteLayout.width, valuesWidth: g.keyRows.width,
                                                        keyTileCount}),
                 [vRows], nonFiniteLayout);
  const outBlocks = texelLayout(g.uniforms.rowCount / 4 * channelGroups(g.headTexels), 1, g.maxTextureSize,
                                'the output blocks');
  let stats: TensorInfo|null = null, out: TensorInfo[] = [];
  for (const range of g.rowRanges) {
    // Rows longer than one slot range: O stays normalized to the lse of the slot ranges so far (rescaled as it grows).
    const rescale = range.slotRanges.length > 1;
    range.slotRanges.forEach((chunk, index) => {
      const c = {...u, ...chunk.uniforms, outWidth: chunk.tiles.width};
      // The scores t, once per visible (query, key): eight-target blocks where the context can draw them.
      const scores = keyEnds !== undefined ?
          runMultiTarget(backend, scoreBlocksProgram(g.variant, {...c, outWidth: chunk.blocks.width,
                                                                 outLines: chunk.blocks.lines,
                                                                 keyEndsWidth: keyEndsLayout.width}),
                         [qRows, kRows, g.table.tensor, ...(keyEnds != null ? [keyEnds] : [])], chunk.blocks) :
          [runProgram(backend, new ScoresProgram(chunk.tiles.shape, g.variant, c, 'scores'),
                      [qRows, kRows, g.table.tensor, keyLengths], chunk.tiles)];
      const blocks = keyEnds !== undefined;
      const newStats = runProgram(
          backend,
          new TileStatsProgram(g.rowStats.shape, g.variant, stats != null,
                               {...c, outWidth: g.rowStats.width, mergePrevious: index > 0 ? 1 : 0}, blocks),
          [...scores, g.table.tensor, keyLengths, ...(stats != null ? [stats] : [])], g.rowStats);
      const probs = blocks ?
          runMultiTarget(backend, probabilityBlocksProgram({...c, outWidth: chunk.blocks.width,
                                                            outLines: chunk.blocks.lines}),
                         [...scores, newStats, g.table.tensor], chunk.blocks) :
          [runProgram(backend, new ProbabilitiesProgram(chunk.tiles.shape, {...c, tileTexels: chunk.tiles.texels}),
                      [...scores, newStats], chunk.tiles)];
      disposeAll(backend, scores);
      const previousStats = stats ?? newStats;  // no stats yet means no output yet either: the sum starts at 0
      let newOut: TensorInfo[];
      if (blocks) {
        // O as eight-target blocks too (4 rows × 8 channels per fragment): this chunk's P·V, added to O so far.
        const pv = {...c, outWidth: outBlocks.width, valuesWidth: g.keyRows.width, keyEndsWidth: keyEndsLayout.width,
                    nonFiniteWidth: nonFiniteLayout.width, outLines: outBlocks.lines};
        const keyEndsInput = keyEnds != null ? [keyEnds] : [];
        const chunkOut = runMultiTarget(backend, valueBlocksProgram(g.variant, pv, 'unguarded'),
                                        [...probs, vRows, g.table.tensor, ...keyEndsInput], outBlocks);
        runMultiTarget(backend, valueBlocksProgram(g.variant, pv, 'nonFiniteFixup'),
                       [...probs, vRows, nonFiniteTiles!, g.table.tensor, ...keyEndsInput], outBlocks, chunkOut);
        if (out.length === 0) {
          newOut = chunkOut;  // the first chunk: nothing to add it to
        } else {
          newOut = ([0, 1] as const).flatMap((half) => runMultiTarget(
              backend, mergeValueBlocksProgram(g.headTexels, half, rescale, {...c, outWidth: outBlocks.width}),
              [...out.slice(4 * half, 4 * half + 4), ...chunkOut.slice(4 * half, 4 * half + 4),
               ...(rescale ? [previousStats, newStats] : [])],
              outBlocks));
          disposeAll(backend, chunkOut);
        }
      } else {
        const accumulate = new RowAccumulateProgram(
            g.queryRows.shape, g.variant, out.length > 0,
            {...c, outWidth: g.queryRows.width, valuesWidth: g.keyRows.width}, rescale);
        newOut = [runProgram(backend, accumulate, [...probs, vRows, g.table.tensor, keyLengths, ...out,
                                                   ...(rescale ? [previousStats, newStats] : [])], g.queryRows)];
      }
      disposeAll(backend, [...probs, ...out, stats]);
      out = newOut;
      stats = newStats;
    });
  }

  const output = keyEnds !== undefined ?
      runProgram(backend, new UnpackRowsProgram([plan.batch, plan.seqQ, plan.heads, plan.headDim], g.headTexels,
                                                {rowsWidth: outBlocks.width, seqPad: g.seqQPad, heads: plan.heads},
                                                true),
                 out, null) :
      unpackRows(backend, g, out[0], plan.seqQ, g.seqQPad, plan.heads, g.queryRows);
  const lse = runProgram(backend, new UnpackRowStatsProgram([plan.batch, plan.heads, plan.seqQ],
                                                            {statsWidth: g.rowStats.width, seqPad: g.seqQPad,
                                                             heads: plan.heads}),
                         [stats!], null);
  disposeAll(backend, [qRows, kRows, vRows, stats, ...out, keyEnds ?? null, nonFiniteTiles]);
  return [output, lse];
}
