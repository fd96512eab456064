/**
 * Executes an AttentionPlan's forward pass on the webgl backend (WebGL2): pack q/k/v into row buffers, then per
 * chunk (a range of query tiles × a slot range, attention_geometry.ts): the scores t (each dot product once), lse
 * (merged over slot ranges), P = exp(t − lse) and O += P·V (rescaled to the new lse when a row spans several slot
 * ranges); finally unpack O and lse.
 *
 * Two pipelines with one signature, chosen once per call (as tfjs's Conv2D.ts picks its implementation):
 *   forwardWithBlocks  where the context draws eight float render targets: scores, P and P·V are eight-target block
 *                      programs (ScoreBlocksProgram, ProbabilityBlocksProgram, ValueBlocksProgram), and the score and
 *                      probability draws shade only the visited slots
 *   forwardWithTiles   elsewhere: one output per fragment, through one tile buffer per chunk (ScoresProgram,
 *                      ProbabilitiesProgram, RowAccumulateProgram)
 * Both share the lse pass (TileStatsProgram) and the row packing. The plan's options (attention_options.ts) enter
 * the score programs (offsets, mask, segments, bias, ALiBi, tile skipping) and the probabilities (dropout:
 * ProbabilityBlocksProgram itself, DropoutTileProgram after ProbabilitiesProgram); lse never sees dropout. The passes
 * that walk key tiles after the scores (TileStats, RowAccumulate, ValueBlocks) skip the tiles the data hide too
 * (options.tileSkipInputs: attention_options.ts's hiddenTileSkip).
 */
import type {TensorInfo} from '@tensorflow/tfjs-core';
import type {MathBackendWebGL} from '@tensorflow/tfjs-backend-webgl';
import type {AttentionInputs} from '../attention_kernel_func.js';
import {AttentionPlan} from '../../src/plan/plan.js';
import {runDecodeForward, useDecodePath} from './attention_decode.js';
import {
  AttentionGeometry, attentionGeometry, Chunk, disposeAll, packOptions, packRows, runProgram, unpackRows,
} from './attention_geometry.js';
import {BLOCK_TARGETS, channelGroups, TILE, UniformValues} from './attention_program.js';
import {KeyEndsProgram, NonFiniteKeyTilesProgram} from './key_tables_gpu.js';
import {runMultiTarget, supportsMultiTarget} from './multi_target.js';
import {DropoutTileProgram, ProbabilitiesProgram, ProbabilityBlocksProgram} from './probabilities_gpu.js';
import {UnpackRowsProgram, UnpackRowStatsProgram} from './row_packing_gpu.js';
import {TileStatsProgram} from './row_statistics_gpu.js';
import {ScoreBlocksProgram, ScoresProgram} from './scores_gpu.js';
import {texelLayout} from './texel_layout.js';
import {MergeValueBlocksProgram, RowAccumulateProgram, ValueBlocksProgram} from './value_accumulation_gpu.js';

/** One implementation of the forward pass: [output, lse] of `g`'s plan. */
type ForwardPipeline = (backend: MathBackendWebGL, g: AttentionGeometry, inputs: AttentionInputs) => TensorInfo[];

/** [output [batch, seqQ, heads, headDim], lse [batch, heads, seqQ]] of `plan`. */
export function runAttentionForward(
    backend: MathBackendWebGL, plan: AttentionPlan, inputs: AttentionInputs): TensorInfo[] {
  if (useDecodePath(plan)) return runDecodeForward(backend, plan, inputs);  // few query rows: attention_decode.ts
  const g = attentionGeometry(backend, plan);
  return forwardPipeline(backend)(backend, g, inputs);
}

/**
 * The eight-target pipeline where the context can draw it (see multi_target.ts; the tfjs flag
 * ATTENTION_WEBGL_MULTI_TARGET = false forces the other one), else the one-target pipeline.
 */
function forwardPipeline(backend: MathBackendWebGL): ForwardPipeline {
  return supportsMultiTarget(backend, BLOCK_TARGETS) ? forwardWithBlocks : forwardWithTiles;
}

/** The uniforms of one chunk's draws (outWidth: its tile buffer's; each draw sets its own where it differs). */
type ChunkStep = (chunk: Chunk, c: UniformValues, index: number, rescale: boolean) => void;

/** Runs `step` over `g`'s chunks in order: row ranges, and within each its slot ranges (index 0, 1, …). */
function forEachChunk(g: AttentionGeometry, step: ChunkStep): void {
  for (const range of g.rowRanges) {
    // Rows longer than one slot range: O stays normalized to the lse of the slot ranges so far (rescaled as it grows).
    const rescale = range.slotRanges.length > 1;
    range.slotRanges.forEach((chunk, index) => step(chunk, {...g.uniforms, ...chunk.uniforms,
                                                           outWidth: chunk.tiles.width}, index, rescale));
  }
}

/** q, k and v as row buffers. */
function packQueryKeyValue(backend: MathBackendWebGL, g: AttentionGeometry, {q, k, v}: AttentionInputs): TensorInfo[] {
  const plan = g.plan;
  return [
    packRows(backend, g, q, plan.seqQ, g.seqQPad, plan.heads, g.queryRows),
    packRows(backend, g, k, plan.seqK, g.seqKPad, plan.kvHeads, g.keyRows),
    packRows(backend, g, v, plan.seqK, g.seqKPad, plan.kvHeads, g.keyRows),
  ];
}

/**
 * lse of the chunk's rows (a quad buffer over every row) from its scores (`blocks`: ScoreBlocksProgram's eight
 * targets), merged with `stats`, the lse of the slot ranges so far (slot range index > 0), or copied from it (rows
 * outside the chunk).
 */
function chunkRowStats(
    backend: MathBackendWebGL, g: AttentionGeometry, c: UniformValues, index: number, scores: TensorInfo[],
    stats: TensorInfo|null, keyLengths: TensorInfo, blocks: boolean, tileSkipInputs: TensorInfo[]): TensorInfo {
  return runProgram(
      backend,
      new TileStatsProgram(g.rowStats.shape, g.variant, stats != null,
                           {...c, outWidth: g.rowStats.width, mergePrevious: index > 0 ? 1 : 0}, blocks),
      [...scores, g.table.tensor, keyLengths, ...(stats != null ? [stats] : []), ...tileSkipInputs], g.rowStats);
}

/** lse [batch, heads, seqQ] from the quad buffer. */
function unpackLse(backend: MathBackendWebGL, g: AttentionGeometry, stats: TensorInfo): TensorInfo {
  const plan = g.plan;
  return runProgram(backend, new UnpackRowStatsProgram([plan.batch, plan.heads, plan.seqQ],
                                                       {statsWidth: g.rowStats.width, seqPad: g.seqQPad,
                                                        heads: plan.heads}),
                    [stats], null);
}

/** The one-output pipeline: per chunk, Scores → TileStats → Probabilities → RowAccumulate, through tile buffers. */
function forwardWithTiles(backend: MathBackendWebGL, g: AttentionGeometry, inputs: AttentionInputs): TensorInfo[] {
  const {plan, table} = g;
  const keyLengths = inputs.keyLengths;
  const [qRows, kRows, vRows] = packQueryKeyValue(backend, g, inputs);
  const options = packOptions(backend, g, inputs);
  let stats: TensorInfo|null = null, out: TensorInfo|null = null;
  forEachChunk(g, (chunk, c, index, rescale) => {
    // The scores t, once per visible (query, key).
    const scores = runProgram(backend, new ScoresProgram(chunk.tiles.shape, g.variant, c, 'scores'),
                              [qRows, kRows, table.tensor, keyLengths, ...options.scoreInputs], chunk.tiles);
    const newStats = chunkRowStats(backend, g, c, index, [scores], stats, keyLengths, false, options.tileSkipInputs);
    let probs = runProgram(backend,
                           new ProbabilitiesProgram(chunk.tiles.shape, {...c, tileTexels: chunk.tiles.texels}),
                           [scores, newStats], chunk.tiles);
    disposeAll(backend, [scores]);
    if (g.variant.options?.dropout) {
      const dropped = runProgram(backend, new DropoutTileProgram(chunk.tiles.shape, g.variant, c),
                                 [probs, table.tensor, keyLengths], chunk.tiles);
      disposeAll(backend, [probs]);
      probs = dropped;
    }
    const previousStats = stats ?? newStats;  // no stats yet means no output yet either: the sum starts at 0
    const accumulate = new RowAccumulateProgram(
        g.queryRows.shape, g.variant, out != null,
        {...c, outWidth: g.queryRows.width, valuesWidth: g.keyRows.width}, rescale);
    const newOut = runProgram(backend, accumulate,
                              [probs, vRows, table.tensor, keyLengths, ...(out != null ? [out] : []),
                               ...(rescale ? [previousStats, newStats] : []), ...options.tileSkipInputs],
                              g.queryRows);
    disposeAll(backend, [probs, out, stats]);
    out = newOut;
    stats = newStats;
  });

  const output = unpackRows(backend, g, out!, plan.seqQ, g.seqQPad, plan.heads, g.queryRows);
  const lse = unpackLse(backend, g, stats!);
  disposeAll(backend, [qRows, kRows, vRows, stats, out, ...options.all]);
  return [output, lse];
}

/**
 * The eight-target pipeline: per chunk, ScoreBlocks → TileStats → ProbabilityBlocks → ValueBlocks (an unguarded
 * pass, then the NaN/Inf fix-up) → MergeValueBlocks into the O so far; O stays in eight block targets until the end.
 */
function forwardWithBlocks(backend: MathBackendWebGL, g: AttentionGeometry, inputs: AttentionInputs): TensorInfo[] {
  const {plan, table} = g;
  const keyLengths = inputs.keyLengths;
  const [qRows, kRows, vRows] = packQueryKeyValue(backend, g, inputs);
  const options = packOptions(backend, g, inputs);
  // keyLengths as a texel array (the block programs have no tfjs getters); none without keyLengths.
  const keyEndsLayout = texelLayout(Math.ceil(plan.batch / 4), 1, g.maxTextureSize, 'the key limits');
  const keyEnds = !plan.hasKeyLengths ? null :
      runProgram(backend, new KeyEndsProgram(keyEndsLayout.shape, g.variant,
                                             {outWidth: keyEndsLayout.width, seqK: plan.seqK, batch: plan.batch}),
                 [keyLengths], keyEndsLayout);
  const keyEndsInput = keyEnds != null ? [keyEnds] : [];
  // Which key tiles of v hold a NaN or an infinity: ValueBlocksProgram's fix-up pass redoes the rows they reach.
  const keyTileCount = g.uniforms.keyRowCount / TILE;
  const nonFiniteLayout = texelLayout(Math.ceil(keyTileCount / 4), 1, g.maxTextureSize, 'the value tile flags');
  const nonFiniteTiles = runProgram(
      backend, new NonFiniteKeyTilesProgram(nonFiniteLayout.shape, g.headTexels,
                                            {outWidth: nonFiniteLayout.width, valuesWidth: g.keyRows.width,
                                             keyTileCount}),
      [vRows], nonFiniteLayout);
  const outBlocks = texelLayout(g.uniforms.rowCount / 4 * channelGroups(g.headTexels), 1, g.maxTextureSize,
                                'the output blocks');
  let stats: TensorInfo|null = null, out: TensorInfo[] = [];
  forEachChunk(g, (chunk, c, index, rescale) => {
    // The scores t, once per visible (query, key), in the block layout.
    const blockUniforms = {...c, outWidth: chunk.blocks.width, outLines: chunk.blocks.lines};
    const scores = runMultiTarget(backend, new ScoreBlocksProgram(g.variant, {...blockUniforms,
                                                                              keyEndsWidth: keyEndsLayout.width}),
                                  [qRows, kRows, table.tensor, ...keyEndsInput, ...options.scoreInputs],
                                  chunk.blocks);
    const newStats = chunkRowStats(backend, g, c, index, scores, stats, keyLengths, true, options.tileSkipInputs);
    const probs = runMultiTarget(backend, new ProbabilityBlocksProgram(blockUniforms, g.variant),
                                 [...scores, newStats, table.tensor, ...options.tileSkipInputs], chunk.blocks);
    disposeAll(backend, scores);
    const previousStats = stats ?? newStats;  // no stats yet means no output yet either: the sum starts at 0
    // O as eight-target blocks too (4 rows × 8 channels per fragment): this chunk's P·V, added to O so far.
    const pv = {...c, outWidth: outBlocks.width, valuesWidth: g.keyRows.width, keyEndsWidth: keyEndsLayout.width,
                nonFiniteWidth: nonFiniteLayout.width, outLines: outBlocks.lines};
    const chunkOut = runMultiTarget(backend, new ValueBlocksProgram(g.variant, pv, 'unguarded'),
                                    [...probs, vRows, table.tensor, ...keyEndsInput, ...options.tileSkipInputs],
                                    outBlocks);
    runMultiTarget(backend, new ValueBlocksProgram(g.variant, pv, 'nonFiniteFixup'),
                   [...probs, vRows, nonFiniteTiles, table.tensor, ...keyEndsInput, ...options.tileSkipInputs],
                   outBlocks, chunkOut);
    let newOut: TensorInfo[];
    if (out.length === 0) {
      newOut = chunkOut;  // the first chunk: nothing to add it to
    } else {
      newOut = ([0, 1] as const).flatMap((half) => runMultiTarget(
          backend, new MergeValueBlocksProgram(g.headTexels, half, rescale, {...c, outWidth: outBlocks.width}),
          [...out.slice(4 * half, 4 * half + 4), ...chunkOut.slice(4 * half, 4 * half + 4),
           ...(rescale ? [previousStats, newStats] : [])],
          outBlocks));
      disposeAll(backend, chunkOut);
    }
    disposeAll(backend, [...probs, ...out, stats]);
    out = newOut;
    stats = newStats;
  });

  const output = runProgram(backend, new UnpackRowsProgram([plan.batch, plan.seqQ, plan.heads, plan.headDim],
                                                           g.headTexels, {rowsWidth: outBlocks.width,
                                                                          seqPad: g.seqQPad, heads: plan.heads},
                                                           true),
                            out, null);
  const lse = unpackLse(backend, g, stats!);
  disposeAll(backend, [qRows, kRows, vRows, stats, ...out, keyEnds, nonFiniteTiles, ...options.all]);
  return [output, lse];
}
