/**
 * The plan's options beyond causal / window / layout / keyLengths (issues 16–18) on webgl: per-batch query offsets,
 * mask, bias, ALiBi, segment ids and dropout. Each is compiled into a program only when the plan uses it (the
 * variant's `options`; without them every program's GLSL is what it was before the options existed).
 *
 * The user's tensors are read by the programs with texelFetch, broadcast by strides and never expanded: once per
 * call they are copied, in their own shape, into texel arrays (option_packing_gpu.ts — PackPairsProgram for a mask
 * or bias: one texel per 2 × 2 block of (query, key) of each of its [batch | 1] × [heads | 1] planes;
 * PackFlatProgram for the small int / float vectors: queryOffsets, alibiSlopes, queryIds, keyIds, four values per
 * texel), so that the eight-target programs, which have no tfjs getters, read them as the one-output ones do.
 *
 * GLSL (scoreOptionHelpers, DROPOUT_HELPERS, tileSkipHelpers):
 *   queryPosition(b, i)        i + queryOffsets[b] clamped to [offsetMin, offsetMax] (or + diagOffset)
 *   maskAllows(b, h, i, j)     mask[b, h, i, j] != 0
 *   sameSegment(b, i, j)       queryIds[b, i] == keyIds[b, j]
 *   scoreBias(b, h, i, j)      bias[b, h, i, j] − slope[b, h]·|queryPosition(b, i) − j|
 *   keepFactor / keepPairs     the dropout factor (0 or keepScale) from philox_glsl.ts
 *   tileHidden(b, h, qt, kt)   whether the data rule out every entry of a tile (tileSkipHelpers)
 *
 * Tile skipping, on the device and without readback: the host's schedule knows only the static masks, so per call
 * small pre-passes summarize the data per tile — MaskTilesProgram: per (mask plane, query tile, key tile) whether
 * the mask hides all, some or none of it; IdRangesProgram: the [min, max] segment id of every (batch, tile) — and
 * tileHidden says a tile is hidden when the mask hides it entirely, its query and key id ranges are disjoint, or a
 * batch's own query offset puts it outside the window. The score programs skip a hidden tile (no dot products: its
 * entries come out masked), and so does every later pass that walks key tiles (hiddenTileSkip: the lse pass, P·V
 * and the backward's dQ / dK / dV accumulations), so a hidden tile costs a few texel fetches per pass instead of a
 * tile's work. A skipped tile contributed exactly nothing before (masked scores add 0 to the lse sums, masked P and
 * dS add +0 to the accumulations), so the results are unchanged, bit for bit.
 */
import {env} from '@tensorflow/tfjs-core';
import type {TensorInfo} from '@tensorflow/tfjs-core';
import type {MathBackendWebGL} from '@tensorflow/tfjs-backend-webgl';
import type {AttentionInputs} from '../attention_kernel_func.js';
import {AttentionPlan, PairOperand} from '../../src/plan/plan.js';
import {AttentionProgram, TILE, UniformValues} from './attention_program.js';
import {IdRangesProgram, MaskTilesProgram, PackFlatProgram, PackPairsProgram} from './option_packing_gpu.js';
import {PHILOX_GLSL} from './philox_glsl.js';
import {TexelLayout, texelLayout} from './texel_layout.js';

/**
 * tfjs flag (default true): false lets only the score programs skip the tiles that tileHidden rules out, as before
 * 2026-12-07 (the later passes then walk them and add their zeros): for A/B measurements and the tests.
 */
export const SKIP_HIDDEN_TILES_FLAG = 'ATTENTION_WEBGL_SKIP_HIDDEN_TILES';
env().registerFlag(SKIP_HIDDEN_TILES_FLAG, () => true);
/**
 * tfjs flag (default false), a test hook: the score programs write NaN instead of masked entries into the tiles that
 * tileHidden rules out, so any later pass that still reads them turns the results into NaN (test/browser.test.ts).
 */
export const POISON_HIDDEN_TILES_FLAG = 'ATTENTION_WEBGL_POISON_HIDDEN_TILES';
env().registerFlag(POISON_HIDDEN_TILES_FLAG, () => false);

/** Which options a plan uses (compile-time: part of every program's source). */
export interface OptionVariant {
  /** Per-batch offsets from the queryOffsets tensor (a static offset is the diagOffset uniform). */
  queryOffsets: boolean;
  mask: boolean;
  bias: boolean;
  alibi: boolean;
  segments: boolean;
  dropout: boolean;
  /** Whether the passes after the scores skip hidden tiles too (SKIP_HIDDEN_TILES_FLAG; set by tileSkipFlags). */
  skipInEveryPass?: boolean;
  /** POISON_HIDDEN_TILES_FLAG (set by tileSkipFlags). */
  poisonHiddenTiles?: boolean;
}

/** The plan's options, or undefined when it uses none (the programs are then exactly the plain ones). */
export function optionVariant(plan: AttentionPlan): OptionVariant | undefined {
  const o: OptionVariant = {
    queryOffsets: plan.hasQueryOffsets, mask: plan.mask != null, bias: plan.bias != null, alibi: plan.alibi != null,
    segments: plan.hasSegments, dropout: plan.dropout != null,
  };
  return Object.values(o).some((x) => x) ? o : undefined;
}

/** Whether the scores need per-element data (samplers): offsets, mask, bias, ALiBi or segments. */
export function hasScoreOptions(o: OptionVariant | undefined): o is OptionVariant {
  return o != null && (o.queryOffsets || o.mask || o.bias || o.alibi || o.segments);
}

/** Whether the scores get an additive term (bias or ALiBi). */
export function hasScoreBias(o: OptionVariant | undefined): boolean {
  return o != null && (o.bias || o.alibi);
}

/** Sampler names of the score options, in the order of OptionTensors.inputs. */
export function scoreOptionInputs(o: OptionVariant | undefined): string[] {
  if (!hasScoreOptions(o)) return [];
  return [
    ...(o.queryOffsets ? ['batchOffsets'] : []), ...(o.mask ? ['maskPairs'] : []), ...(o.bias ? ['biasPairs'] : []),
    ...(o.alibi ? ['slopes'] : []), ...(o.segments ? ['queryIds', 'keyIds'] : []),
  ];
}

/** Uniforms the score-option helpers read. */
export function scoreOptionUniforms(o: OptionVariant | undefined): string[] {
  if (!hasScoreOptions(o)) return [];
  return [
    ...(o.queryOffsets ? ['offsetMin', 'offsetMax', 'offsetsWidth'] : []),
    ...(o.mask || o.bias ? ['pairHalfQ', 'pairHalfK'] : []),
    ...(o.mask ? ['maskWidth', 'maskBatchPlanes', 'maskHeadPlanes'] : []),
    ...(o.bias ? ['biasWidth', 'biasBatchPlanes', 'biasHeadPlanes'] : []),
    ...(o.alibi ? ['slopesWidth', 'slopesBatchStride'] : []),
    ...(o.segments ? ['queryIdsWidth', 'keyIdsWidth'] : []),
  ];
}

/** Whether the score programs can skip tiles from data: per-batch offsets, a mask or segment ids. */
export function hasTileSkip(o: OptionVariant | undefined): o is OptionVariant {
  return o != null && (o.queryOffsets || o.mask || o.segments);
}

/**
 * Whether a mask, segment ids or a bias (whose -Infinity entries mask) may hide entries of any tile: then a tile the
 * schedule lists as full takes the unguarded path only where the tile summaries show that the data hide none of it
 * (dataPartialTest).
 */
export function hasElementConditions(o: OptionVariant | undefined): o is OptionVariant {
  return o != null && (o.mask || o.segments || o.bias);
}

/**
 * GLSL to append to a tile's `partial` test (`|| …`, b and h in scope): whether the data may hide an entry of tile
 * (queryTile, keyTile) although the schedule lists it as full. '' without element conditions (the GLSL stays what it
 * was); ' || true' where the program does not bind the tile summaries (`summaries`: tileSkipInputs) or the plan has
 * a bias (no summary says where its -Infinity entries are); else ' || !tileFullyVisible(…)' (tileSkipHelpers): issue
 * 16's "tiles that are all true take the unmasked path", decided on the device.
 */
export function dataPartialTest(o: OptionVariant | undefined, summaries: boolean, queryTile: string, keyTile: string):
    string {
  if (!hasElementConditions(o)) return '';
  if (!summaries || o.bias) return ' || true';
  return ` || !tileFullyVisible(b, h, ${queryTile}, ${keyTile})`;
}

/** Sets the tfjs flags' choices (SKIP_HIDDEN_TILES_FLAG, POISON_HIDDEN_TILES_FLAG) on a plan's options. */
export function tileSkipFlags(o: OptionVariant): void {
  if (!hasTileSkip(o)) return;
  o.skipInEveryPass = env().getBool(SKIP_HIDDEN_TILES_FLAG);
  o.poisonHiddenTiles = env().getBool(POISON_HIDDEN_TILES_FLAG);
}

/** Whether the passes after the scores skip the tiles tileHidden rules out (hiddenTileSkip). */
export function skipsHiddenTiles(o: OptionVariant | undefined): o is OptionVariant {
  return hasTileSkip(o) && o.skipInEveryPass === true;
}

/**
 * What a pass that walks key tiles after the scores (lse, P·V, dQ, dK / dV) adds to skip hidden tiles: its extra
 * samplers (after its own; PackedOptions.tileSkipInputs), uniforms and GLSL helpers (tileHidden and what it reads),
 * and `skip(queryTile, keyTile)`, a GLSL statement (b and h in scope) that continues the loop over tiles past a
 * hidden one. All empty where the plan cannot hide tiles, or SKIP_HIDDEN_TILES_FLAG is off.
 */
export interface HiddenTileSkip {
  active: boolean;
  inputs: string[];
  uniforms: string[];
  helpers: string;
  skip: (queryTile: string, keyTile: string) => string;
  /** dataPartialTest for this program (the summaries are bound where `active`). */
  partial: (queryTile: string, keyTile: string) => string;
}

export function hiddenTileSkip(o: OptionVariant | undefined): HiddenTileSkip {
  if (!skipsHiddenTiles(o)) {
    return {active: false, inputs: [], uniforms: [], helpers: '', skip: () => '',
            partial: (queryTile, keyTile) => dataPartialTest(o, false, queryTile, keyTile)};
  }
  return {
    active: true,
    inputs: [...(o.queryOffsets ? ['batchOffsets'] : []), ...tileSkipInputs(o)],
    uniforms: [...(o.queryOffsets ? ['offsetMin', 'offsetMax', 'offsetsWidth'] : []),
               ...(o.mask ? ['maskBatchPlanes', 'maskHeadPlanes'] : []), ...tileSkipUniforms(o)],
    helpers: positionHelpers(o) + tileSkipHelpers(o),
    skip: (queryTile, keyTile) => `
            if (tileHidden(b, h, ${queryTile}, ${keyTile})) continue;  // the data hide the whole tile`,
    partial: (queryTile, keyTile) => dataPartialTest(o, true, queryTile, keyTile),
  };
}

/** Sampler names of the tile summaries (after scoreOptionInputs in the score programs; OptionTensors.tileInputs). */
export function tileSkipInputs(o: OptionVariant | undefined): string[] {
  if (!hasTileSkip(o)) return [];
  return [...(o.mask ? ['maskTiles'] : []), ...(o.segments ? ['queryIdRanges', 'keyIdRanges'] : [])];
}

export function tileSkipUniforms(o: OptionVariant | undefined): string[] {
  if (!hasTileSkip(o)) return [];
  return [...(o.mask ? ['maskTilesWidth'] : []), ...(o.segments ? ['queryRangesWidth', 'keyRangesWidth'] : [])];
}

/**
 * GLSL tileHidden(b, h, queryTile, keyTile) (after scoreOptionHelpers or positionHelpers; needs tileSkipInputs /
 * tileSkipUniforms): true when the data rule out every entry of the tile, so the score programs skip it (and the
 * later passes, hiddenTileSkip). The one place that decides it.
 */
export function tileSkipHelpers(o: OptionVariant): string {
  return `${o.segments ? `
    vec2 idRange(sampler2D s, int width, int tile) {
      vec4 texel = texelFetch(s, texelXY(tile / 2, width), 0);
      return tile - 2 * (tile / 2) == 0 ? texel.xy : texel.zw;
    }` : ''}
    bool tileHidden(int b, int h, int queryTile, int keyTile) {${o.queryOffsets ? `
      // This batch's window misses the tile (the schedule visits the union over every batch's offset).
      int first = queryPosition(b, queryTile * ${TILE}), last = first + ${TILE - 1};
      if (windowRight >= 0 && keyTile * ${TILE} > last + windowRight) return true;
      if (windowLeft >= 0 && keyTile * ${TILE} + ${TILE - 1} < first - windowLeft) return true;` : ''}${o.mask ? `
      int plane = b * maskBatchPlanes + h * maskHeadPlanes;
      if (flatValue(maskTiles, maskTilesWidth, (plane * numQueryTiles + queryTile) * numKeyTiles + keyTile) == 0.0) {
        return true;  // the mask hides the whole tile
      }` : ''}${o.segments ? `
      vec2 queryIds = idRange(queryIdRanges, queryRangesWidth, b * numQueryTiles + queryTile);
      vec2 keyIds = idRange(keyIdRanges, keyRangesWidth, b * numKeyTiles + keyTile);
      if (queryIds.y < keyIds.x || keyIds.y < queryIds.x) return true;  // no id in common` : ''}
      return false;
    }${o.mask || o.segments ? `
    // True when the data show every entry of the tile visible (the mask allows all of it, one segment id on both
    // sides): the tile then takes the unguarded path if the schedule lists it as full (dataPartialTest).
    bool tileFullyVisible(int b, int h, int queryTile, int keyTile) {${o.mask ? `
      int plane = b * maskBatchPlanes + h * maskHeadPlanes;
      if (flatValue(maskTiles, maskTilesWidth, (plane * numQueryTiles + queryTile) * numKeyTiles + keyTile) != 2.0) {
        return false;
      }` : ''}${o.segments ? `
      vec2 queryIds = idRange(queryIdRanges, queryRangesWidth, b * numQueryTiles + queryTile);
      vec2 keyIds = idRange(keyIdRanges, keyRangesWidth, b * numKeyTiles + keyTile);
      if (queryIds.x != queryIds.y || keyIds.x != keyIds.y || queryIds.x != keyIds.x) return false;` : ''}
      return true;
    }` : ''}
  `;
}

/** Uniforms of the dropout helpers: the seed's two words and the threshold as int bit patterns, keepScale float. */
export const DROPOUT_UNIFORMS = ['dropoutSeedLo', 'dropoutSeedHi', 'dropoutThreshold', 'keepScale'];

/** Extra arguments of isVisible / visibleBlock when the score options are compiled in. */
export function visibilityArgs(o: OptionVariant | undefined): string {
  return hasScoreOptions(o) ? ', b, h' : '';
}

/** GLSL flatValue (a texel array's element e) and queryPosition (needs batchOffsets with per-batch offsets). */
function positionHelpers(o: OptionVariant): string {
  return `
    float flatValue(sampler2D s, int width, int e) {
      int t = e / 4;
      return texelLane(texelFetch(s, texelXY(t, width), 0), e - 4 * t);
    }
    // Key position of query row i of batch b.
    int queryPosition(int b, int i) {
      return i + ${o.queryOffsets ? 'clamp(int(flatValue(batchOffsets, offsetsWidth, b)), offsetMin, offsetMax)' :
                                    'diagOffset'};
    }`;
}

/**
 * GLSL of the score options (needs their samplers and uniforms, scoreOptionInputs / scoreOptionUniforms, and the
 * plan uniforms). Declares queryPosition, and the helpers of the options the plan uses.
 */
export function scoreOptionHelpers(o: OptionVariant): string {
  return `${positionHelpers(o)}${o.mask || o.bias ? `
    // Element (i, j) of plane p of a mask or bias (PackPairsProgram: one texel per 2 × 2 block of a plane).
    float pairValue(sampler2D s, int width, int p, int i, int j) {
      int i2 = i / 2, j2 = j / 2;
      vec4 texel = texelFetch(s, texelXY((p * pairHalfQ + i2) * pairHalfK + j2, width), 0);
      return texelLane(texel, 2 * (i - 2 * i2) + (j - 2 * j2));
    }` : ''}${o.mask ? `
    // Non-zero attends; a NaN mask entry masks, as in the reference (decided on bits: see texelHelpers).
    bool maskAllows(int b, int h, int i, int j) {
      uint bits = floatBitsToUint(pairValue(maskPairs, maskWidth, b * maskBatchPlanes + h * maskHeadPlanes, i, j)) &
                  0x7fffffffu;
      return bits != 0u && bits <= 0x7f800000u;
    }` : ''}${o.segments ? `
    bool sameSegment(int b, int i, int j) {
      return flatValue(queryIds, queryIdsWidth, b * seqQ + i) == flatValue(keyIds, keyIdsWidth, b * seqK + j);
    }` : ''}${o.bias || o.alibi ? `
    // What the bias and ALiBi add to the (softcapped) score of (b, h, i, j).
    float scoreBias(int b, int h, int i, int j) {
      float add = 0.0;${o.bias ? `
      add += pairValue(biasPairs, biasWidth, b * biasBatchPlanes + h * biasHeadPlanes, i, j);` : ''}${o.alibi ? `
      add -= flatValue(slopes, slopesWidth, b * slopesBatchStride + h) * float(abs(queryPosition(b, i) - j));` : ''}
      return add;
    }
    // The same for the 2 × 2 block (rows i, i + 1) × (keys j, j + 1) as (r0k0, r0k1, r1k0, r1k1).
    vec4 scoreBiasBlock(int b, int h, int i, int j) {
      return vec4(scoreBias(b, h, i, j), scoreBias(b, h, i, j + 1), scoreBias(b, h, i + 1, j),
                  scoreBias(b, h, i + 1, j + 1));
    }` : ''}
  `;
}

/** The extra per-element tests of isVisible (GLSL statements on `visible`, with b, h, i, j in scope). */
export function elementMaskTests(o: OptionVariant | undefined): string {
  if (!hasScoreOptions(o)) return '';
  return `${o.mask ? `
      if (visible) visible = maskAllows(b, h, i, j);` : ''}${o.segments ? `
      if (visible) visible = sameSegment(b, i, j);` : ''}`;
}

/**
 * GLSL of the dropout factors (needs DROPOUT_UNIFORMS): keepFactor(b, h, i, j) and keepPairs(b, h, i, j) — the
 * factors of keys j, j + 1 (j even) of rows i and i + 1 as (r0k0, r0k1, r1k0, r1k1) — 0 where dropped, keepScale
 * where kept (src/plan/philox.ts: counter (floor(j / 4), i, h, b), key (seedLo, seedHi), word j mod 4).
 */
export const DROPOUT_HELPERS = `
    ${PHILOX_GLSL}
    // The four words of keys 4·floor(j / 4) … + 3 of row i.
    uvec4 dropoutWords(int b, int h, int i, int j) {
      return philox4x32(uvec4(uint(j / 4), uint(i), uint(h), uint(b)), uvec2(uint(dropoutSeedLo), uint(dropoutSeedHi)));
    }
    vec4 keepFactors(uvec4 words) {
      return mix(vec4(0.0), vec4(keepScale), greaterThanEqual(words, uvec4(uint(dropoutThreshold))));
    }
    float keepFactor(int b, int h, int i, int j) {
      return texelLane(keepFactors(dropoutWords(b, h, i, j)), j - 4 * (j / 4));
    }
    vec4 keepPairs(int b, int h, int i, int j) {
      bool high = j - 4 * (j / 4) >= 2;
      vec4 r0 = keepFactors(dropoutWords(b, h, i, j)), r1 = keepFactors(dropoutWords(b, h, i + 1, j));
      return high ? vec4(r0.zw, r1.zw) : vec4(r0.xy, r1.xy);
    }
`;

/** Uniform values of every option (names absent from a program's declaration are ignored). */
export function optionUniformValues(plan: AttentionPlan, tensors: OptionTensors | null): UniformValues {
  const pair = plan.seqQ * plan.seqK;
  const planes = (o: PairOperand | null) => o == null ? [0, 0] : [o.batchStride / pair, o.headStride / pair];
  const [maskBatchPlanes, maskHeadPlanes] = planes(plan.mask);
  const [biasBatchPlanes, biasHeadPlanes] = planes(plan.bias);
  const width = (name: string) => tensors?.layouts.get(name)?.width ?? 0;
  const d = plan.dropout;
  return {
    offsetMin: plan.offsetMin, offsetMax: plan.offsetMax, offsetsWidth: width('batchOffsets'),
    pairHalfQ: Math.ceil(plan.seqQ / 2), pairHalfK: Math.ceil(plan.seqK / 2),
    maskWidth: width('maskPairs'), maskBatchPlanes, maskHeadPlanes,
    biasWidth: width('biasPairs'), biasBatchPlanes, biasHeadPlanes,
    slopesWidth: width('slopes'), slopesBatchStride: plan.alibi?.batchStride ?? 0,
    queryIdsWidth: width('queryIds'), keyIdsWidth: width('keyIds'),
    maskTilesWidth: width('maskTiles'), queryRangesWidth: width('queryIdRanges'), keyRangesWidth: width('keyIdRanges'),
    // uint32 bit patterns in int uniforms (GLSL reads them back with uint()); float uniforms would round them.
    dropoutSeedLo: (d?.seedLo ?? 0) | 0, dropoutSeedHi: (d?.seedHi ?? 0) | 0, dropoutThreshold: (d?.threshold ?? 0) | 0,
    keepScale: d?.keepScale ?? 1,
  };
}

/** The option inputs as texel arrays: in scoreOptionInputs order, then the tile summaries in tileSkipInputs order. */
export interface OptionTensors {
  inputs: TensorInfo[];
  tileInputs: TensorInfo[];
  layouts: Map<string, TexelLayout>;
}

/** Copies the plan's option inputs into texel arrays (once per call; the caller disposes `inputs`). */
export function packOptionInputs(
    backend: MathBackendWebGL, plan: AttentionPlan, o: OptionVariant | undefined, inputs: AttentionInputs,
    maxTextureSize: number): OptionTensors | null {
  if (!hasScoreOptions(o)) return null;
  const layouts = new Map<string, TexelLayout>();
  const tensors: TensorInfo[] = [], tileTensors: TensorInfo[] = [];
  const run = (name: string, program: AttentionProgram, x: TensorInfo, layout: TexelLayout) => {
    layouts.set(name, layout);
    tensors.push(backend.runWebGLProgram(program, [x], 'float32', program.uniformValues, true));
  };
  const flat = (name: string, x: TensorInfo) => {
    const n = x.shape.reduce((a, b) => a * b, 1);
    const layout = texelLayout(Math.ceil(n / 4), 1, maxTextureSize, `the ${name} input`);
    run(name, new PackFlatProgram(layout.shape, x.shape, {outWidth: layout.width, count: n}), x, layout);
  };
  const pairs = (name: string, x: TensorInfo) => {
    const halfQ = Math.ceil(plan.seqQ / 2), halfK = Math.ceil(plan.seqK / 2);
    const planes = x.shape.slice(0, -2).reduce((a, b) => a * b, 1);
    const layout = texelLayout(planes * halfQ * halfK, 1, maxTextureSize, `the ${name} input`);
    run(name, new PackPairsProgram(layout.shape, x.shape,
                                   {outWidth: layout.width, planes, seqQ: plan.seqQ, seqK: plan.seqK, halfQ, halfK}),
        x, layout);
  };
  try {
    if (o.queryOffsets) flat('batchOffsets', inputs.queryOffsets);
    if (o.mask) pairs('maskPairs', inputs.mask);
    if (o.bias) pairs('biasPairs', inputs.bias);
    if (o.alibi) flat('slopes', inputs.alibiSlopes);
    if (o.segments) {
      flat('queryIds', inputs.queryIds);
      flat('keyIds', inputs.keyIds);
    }
    // The tile summaries, from the packed inputs.
    const tiles = Math.ceil(plan.seqQ / TILE), keyTiles = Math.ceil(plan.seqK / TILE);
    const summary = (name: string, program: AttentionProgram, from: string, layout: TexelLayout) => {
      layouts.set(name, layout);
      tileTensors.push(backend.runWebGLProgram(program, [tensors[scoreOptionInputs(o).indexOf(from)]], 'float32',
                                               program.uniformValues, true));
    };
    if (o.mask) {
      const planes = inputs.mask.shape.slice(0, -2).reduce((a, b) => a * b, 1);
      const count = planes * tiles * keyTiles;
      const layout = texelLayout(Math.ceil(count / 4), 1, maxTextureSize, 'the mask tile summary');
      summary('maskTiles', new MaskTilesProgram(layout.shape, {
        outWidth: layout.width, count, numQueryTiles: tiles, numKeyTiles: keyTiles, seqQ: plan.seqQ, seqK: plan.seqK,
        halfQ: Math.ceil(plan.seqQ / 2), halfK: Math.ceil(plan.seqK / 2), maskWidth: layouts.get('maskPairs')!.width,
      }), 'maskPairs', layout);
    }
    if (o.segments) {
      for (const [name, from, seq, n] of [['queryIdRanges', 'queryIds', plan.seqQ, tiles],
                                          ['keyIdRanges', 'keyIds', plan.seqK, keyTiles]] as const) {
        const count = plan.batch * n;
        const layout = texelLayout(Math.ceil(count / 2), 1, maxTextureSize, 'the segment id ranges');
        summary(name, new IdRangesProgram(layout.shape, {outWidth: layout.width, count, tiles: n, seq,
                                                         idsWidth: layouts.get(from)!.width}),
                from, layout);
      }
    }
  } catch (e) {
    [...tensors, ...tileTensors].forEach((t) => backend.disposeIntermediateTensorInfo(t));
    throw e;
  }
  return {inputs: tensors, tileInputs: tileTensors, layouts};
}
