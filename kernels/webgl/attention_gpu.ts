/**
 * WebGL2 fragment programs of the attention forward pass (and the pieces the backward pass shares).
 *
 * A fragment writes one RGBA texel and cannot share work with its neighbours, so the kernels split attention into
 * passes whose fragments each own a small output and stream over the plan's visible key tiles:
 *   scoreBlocksProgram   the scores t of a chunk of query rows × their visible key tiles, every score's dot product
 *                        once, 4 rows × 8 keys per fragment into eight render targets (multi_target_webgl.ts)
 *   ScoresProgram        the same as one tile buffer, 2 × 2 per fragment, where eight float targets are missing (or
 *                        P = exp(t − lse) from a given lse, for the backward)
 *   TileStatsProgram     lse of four query rows from the chunk's scores (online logsumexp, no dot products)
 *   ProbabilitiesProgram P = exp(t − lse), elementwise over the chunk's tile buffer (probabilityBlocksProgram: over
 *                        the eight score targets, into eight targets)
 *   RowAccumulateProgram O = P·V (and dQ = dS·K): two rows × two channels, streaming the chunk's tiles
 *                        (valueBlocksProgram: 4 rows × 8 channels into eight targets, from the probability blocks)
 * The eight-target score and probability passes shade only the fragments of visited key tiles (blockCoverVertices).
 * Masked-out tiles are never visited (loop bounds come from the schedule table); full tiles skip per-element masks.
 *
 * Loop bounds: Mesa's llvmpipe silently ends a loop after 65,535 iterations — counted over every entry into the loop
 * within one fragment, so nesting does not help. Loops over channels and over the rows/keys of a tile are therefore
 * unrolled when the shader is generated, and a draw covers at most MAX_SLOTS_PER_DRAW key tiles per query tile
 * (the executor splits longer rows into slot ranges and merges them: lse by logaddexp, O/dQ/dK/dV by addition), so
 * the longest remaining loop runs at most MAX_SLOTS_PER_DRAW * TILE / 2 times. Texel layouts: texel_layout_webgl.ts.
 */
import type {GPGPUProgram} from '@tensorflow/tfjs-backend-webgl';
import type {MultiTargetProgram} from './multi_target_webgl.js';

/** Query rows per tile and keys per tile (the schedule's block size on webgl). */
export const TILE = 32;
/** Key tiles per query tile in one draw (keeps every loop far below llvmpipe's 65,535 iterations). */
export const MAX_SLOTS_PER_DRAW = 1024;

/** GLSL statements body(0) … body(count - 1): loops over channels and tile rows are unrolled (see above). */
export function unroll(count: number, body: (i: number) => string): string {
  return Array.from({length: count}, (_, i) => body(i)).join('\n');
}

export type UniformValues = Record<string, number>;
type Uniform = {name: string, type: 'int' | 'float'};

const FLOAT_UNIFORMS = new Set(['scale', 'softcap']);

/** What the plan-level GLSL helpers read (declared by every program that masks or walks the schedule). */
export const PLAN_UNIFORMS = [
  'seqQ', 'seqK', 'seqQPad', 'seqKPad', 'heads', 'kvHeads', 'groupSize', 'diagOffset', 'windowLeft', 'windowRight',
  'numQueryTiles', 'numKeyTiles', 'maskHeads', 'layoutBlock', 'layoutQueryBlocks', 'layoutKeyBlocks', 'tableWidth',
  'rowSlotBase', 'colHeaderBase', 'colEntryBase', 'layoutBase', 'scale', 'softcap',
];

/** Compile-time variants of a program (part of its shader key). */
export interface AttentionVariant {
  /** Head dimension in texels (channel pairs). */
  headTexels: number;
  hasLayout: boolean;
  hasKeyLengths: boolean;
  hasSoftcap: boolean;
}

/**
 * Base of the attention programs: tfjs GPGPUProgram fields plus the uniform values of this draw.
 *
 * Texel-array programs read their inputs with texelFetch and write [2L, 2W] packed outputs, so they use shape
 * uniforms (one compiled shader serves every size). Programs that read user tensors through tfjs's generated getters
 * (or write user-facing shapes) turn them off: with shape uniforms on, tfjs 4.22 can reuse a shader compiled for an
 * input whose texture matched its shape for an input whose texture was squarified (e.g. more rows than
 * MAX_TEXTURE_SIZE), and read garbage.
 */
export abstract class AttentionProgram implements GPGPUProgram {
  abstract variableNames: string[];
  outputShape: number[];
  userCode = '';
  packedInputs = true;
  packedOutput = true;
  enableShapeUniforms = true;
  customUniforms: Uniform[] = [];
  /** customUniformValues for backend.runWebGLProgram, in customUniforms order. */
  uniformValues: number[][] = [];

  constructor(outputShape: [number, number]) {
    this.outputShape = outputShape;
  }

  protected declareUniforms(names: string[], values: UniformValues): void {
    for (const {name, type, value} of typedUniforms(names, values)) {
      this.customUniforms.push({name, type});
      this.uniformValues.push([value]);
    }
  }
}

/** The uniforms `names` with their GLSL types (float for scale / softcap, else int) and values; throws if one is
 *  missing, so a program never runs with an unset uniform. */
function typedUniforms(names: string[], values: UniformValues):
    Array<{name: string; type: 'float' | 'int'; value: number}> {
  return names.map((name) => {
    const value = values[name];
    if (value === undefined || Number.isNaN(value)) throw new Error(`webgl attention: uniform ${name} not set`);
    return {name, type: FLOAT_UNIFORMS.has(name) ? 'float' as const : 'int' as const, value};
  });
}

/** Texel addressing, output position, -Infinity and softcap: every packed attention program starts with these. */
export function texelHelpers(writesTexelArray = true): string {
  return `
    const float MASKED = -1.0e38;
    ivec2 texelXY(int t, int width) {
      int y = t / width;
      return ivec2(t - y * width, y);
    }
    vec4 fetchTexel(sampler2D s, int t, int width) {
      return texelFetch(s, texelXY(t, width), 0);
    }
    ${writesTexelArray ? `
    // Flat index of the texel this fragment writes (outputs are texel arrays of width outWidth).
    int outputTexel() {
      ivec2 rc = getOutputCoords();
      return (rc.x / 2) * outWidth + rc.y / 2;
    }` : ''}
    float negativeInfinity() {
      return uintBitsToFloat(0xff800000u);
    }
    // Component lane (0 … 3) of a texel (texel arrays pack four values per texel).
    float texelLane(vec4 texel, int lane) {
      return lane == 0 ? texel.x : lane == 1 ? texel.y : lane == 2 ? texel.z : texel.w;
    }
    // NaN / Inf semantics are decided on bits, never on float compares: GLSL compilers (ANGLE, SwiftShader) may assume
    // no NaN, and min / max / comparisons with NaN are undefined.
    float nanValue() {
      return uintBitsToFloat(0x7fc00000u);
    }
    // -0.0 marks a masked entry of a P or dS tile (an entry the row cannot see, or of a row that sees nothing): it is
    // a zero wherever it is summed unchecked, and partial tiles' accumulations skip it (0 · NaN would be NaN), while a
    // visible zero (+0.0: a -Infinity score, a saturated softcap) still multiplies, as the reference's does.
    float maskedZero() {
      return uintBitsToFloat(0x80000000u);
    }
    bvec4 isLive(vec4 x) {
      return notEqual(floatBitsToUint(x), uvec4(0x80000000u));
    }
    bvec4 both4(bvec4 a, bvec4 b) {
      return bvec4(uvec4(a) * uvec4(b));
    }
    // NaN or +Infinity (a row statistic that makes the row NaN).
    bvec4 isPoisoned(vec4 x) {
      uvec4 u = floatBitsToUint(x);
      return both4(greaterThanEqual(u & uvec4(0x7fffffffu), uvec4(0x7f800000u)), notEqual(u, uvec4(0xff800000u)));
    }
    bvec4 isNegativeInfinity(vec4 x) {
      return equal(floatBitsToUint(x), uvec4(0xff800000u));
    }
  `;
}

/** GLSL body of keyLimit(b): from tfjs's getter of keyLengths, or from KeyEndsProgram's texel array. */
function keyLimitBody(v: AttentionVariant, keyEnds: boolean): string {
  if (!v.hasKeyLengths) return 'return seqK;';
  return keyEnds ? `
      vec4 texel = texelFetch(keyEnds, texelXY(b / 4, keyEndsWidth), 0);
      int lane = b - 4 * (b / 4);
      return int(texelLane(texel, lane));` : `
      vec4 texel = getKeyLengths(b);
      return min(seqK, int((b - 2 * (b / 2)) == 0 ? texel.x : texel.y));`;
}

/**
 * Plan helpers: tile bounds, the schedule table, element visibility, softcap. Needs PLAN_UNIFORMS. `keyEnds`: read
 * the key limits from a texel array made by KeyEndsProgram (multi-target programs have no tfjs getters).
 */
export function planHelpers(v: AttentionVariant, keyEnds = false): string {
  return `
    // Keys at or past keyLimit(b) are padding: seqK, or keyLengths[b] when the op was given keyLengths.
    int keyLimit(int b) {
      ${keyLimitBody(v, keyEnds)}
    }
    vec4 tableTexel(int t) {
      return texelFetch(table, texelXY(t, tableWidth), 0);
    }
    // Per-element visibility inside a partial tile: the query row exists, the window, the layout block, the key
    // exists and is not padding.
    bool isVisible(int i, int j, int maskHead, int keyEnd) {
      int diag = i + diagOffset;
      bool visible = i < seqQ && j < keyEnd &&
          (windowLeft < 0 || j >= diag - windowLeft) && (windowRight < 0 || j <= diag + windowRight);
      ${v.hasLayout ? `
      if (visible) {
        int block = (maskHead * layoutQueryBlocks + i / layoutBlock) * layoutKeyBlocks + j / layoutBlock;
        int word = block / 4;
        vec4 bits = tableTexel(layoutBase + word);
        int lane = block - 4 * word;
        visible = texelLane(bits, lane) != 0.0;
      }` : ''}
      return visible;
    }
    // Visibility of the 2×2 block (rows i, i+1) × (keys j, j+1) as (r0k0, r0k1, r1k0, r1k1).
    bvec4 visibleBlock(int i, int j, int maskHead, int keyEnd) {
      return bvec4(isVisible(i, j, maskHead, keyEnd), isVisible(i, j + 1, maskHead, keyEnd),
                   isVisible(i + 1, j, maskHead, keyEnd), isVisible(i + 1, j + 1, maskHead, keyEnd));
    }
    // The final score t from the scaled score s: softcap · tanh(s / softcap). tanh through exp(-2|x|) stays finite
    // and keeps NaN a NaN; below |x| = 1/8, where 1 - exp(-2|x|) cancels, tanh's odd series to x^7 (as on webgpu).
    vec4 capScores(vec4 s) {
      ${v.hasSoftcap ? `
      vec4 x = s / softcap;
      vec4 e = exp(-2.0 * abs(x));
      vec4 x2 = x * x;
      vec4 series = x * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0))));
      return softcap * mix(sign(x) * (1.0 - e) / (1.0 + e), series, lessThan(abs(x), vec4(0.125)));` : 'return s;'}
    }
  `;
}

/**
 * Copies a [batch, seq, heads, headDim] tensor (any tfjs layout) into a row buffer, rows (b, h, position) with the
 * position padded to seqPad and the channels to an even count with zeros.
 */
export class PackRowsProgram extends AttentionProgram {
  variableNames = ['x'];
  packedInputs = false;
  enableShapeUniforms = false;  // tfjs's generic getter for x: see AttentionProgram

  constructor(outShape: [number, number], headTexels: number, values: UniformValues) {
    super(outShape);
    this.declareUniforms(['outWidth', 'rowCount', 'seq', 'seqPad', 'heads', 'dim'], values);
    this.userCode = `
      ${texelHelpers()}
      float element(int r, int d) {
        int bh = r / seqPad;
        int i = r - bh * seqPad;
        int b = bh / heads;
        int h = bh - b * heads;
        return (r < rowCount && i < seq && d < dim) ? getX(b, i, h, d) : 0.0;
      }
      void main() {
        int t = outputTexel();
        int pair = t / ${headTexels};
        int c = t - pair * ${headTexels};
        int r = 2 * pair, d = 2 * c;
        setOutput(vec4(element(r, d), element(r, d + 1), element(r + 1, d), element(r + 1, d + 1)));
      }
    `;
  }
}

/** Reads a row buffer back into a [batch, seq, heads, headDim] tensor (the kernels' outputs). */
export class UnpackRowsProgram extends AttentionProgram {
  variableNames = ['rows'];
  packedOutput = false;
  enableShapeUniforms = false;  // a user-facing output shape: see AttentionProgram

  constructor(outShape: number[], headTexels: number, values: UniformValues, blocks = false) {
    super(outShape as [number, number]);
    // blocks: the rows come as valueBlocksProgram's eight targets.
    if (blocks) this.variableNames = blockNames('rows');
    this.declareUniforms(['rowsWidth', 'seqPad', 'heads'], values);
    this.userCode = `
      ${texelHelpers(false)}
      ${blocks ? `
      vec4 rowTexel(int r, int d) {
        int f = (r / 4) * ${channelGroups(headTexels)} + d / 8;
        int target = 4 * ((r / 2) - 2 * (r / 4)) + (d / 2 - 4 * (d / 8));
        ivec2 xy = texelXY(f, rowsWidth);
        ${blockNames('rows').map((name, o) => `if (target == ${o}) return texelFetch(${name}, xy, 0);`).join('\n')}
        return vec4(0.0);
      }` : ''}
      void main() {
        ivec4 o = getOutputCoords();  // (b, i, h, d)
        int r = (o.x * heads + o.z) * seqPad + o.y;
        vec4 texel = ${blocks ? 'rowTexel(r, o.w)' : `fetchTexel(rows, (r / 2) * ${headTexels} + o.w / 2, rowsWidth)`};
        int lane = 2 * (r - 2 * (r / 2)) + (o.w - 2 * (o.w / 2));
        setOutput(texelLane(texel, lane));
      }
    `;
  }
}

/** Reads a quad buffer (one value per row) back into a [batch, heads, seq] tensor (lse). */
export class UnpackRowStatsProgram extends AttentionProgram {
  variableNames = ['stats'];
  packedOutput = false;
  enableShapeUniforms = false;  // a user-facing output shape: see AttentionProgram

  constructor(outShape: number[], values: UniformValues) {
    super(outShape as [number, number]);
    this.declareUniforms(['statsWidth', 'seqPad', 'heads'], values);
    this.userCode = `
      ${texelHelpers(false)}
      void main() {
        ivec3 o = getOutputCoords();  // (b, h, i)
        int r = (o.x * heads + o.y) * seqPad + o.z;
        vec4 texel = fetchTexel(stats, r / 4, statsWidth);
        int lane = r - 4 * (r / 4);
        setOutput(texelLane(texel, lane));
      }
    `;
  }
}

/** Where a texel of a tile buffer sits: shared by ScoresProgram and ScoreGradProgram. */
export function tileTexelHelpers(headTexels: number): string {
  return `
    // Decodes texel t of a tile buffer into (global row, query position, key tile, ...). Returns false when the
    // texel holds nothing (past the chunk, the row's slots, or keyLengths).
    bool tileTexel(int t, out int r, out int i, out int b, out int h, out int maskHead, out int keyRowBase,
                   out int j, out bool partial, out int keyEnd) {
      int pair = t / slotTexels;
      int rest = t - pair * slotTexels;
      int localSlot = rest / ${TILE / 2};
      int jp = rest - localSlot * ${TILE / 2};
      int s = slotStart + localSlot;
      r = chunkTileStart * ${TILE} + 2 * pair;
      int bh = r / seqQPad;
      i = r - bh * seqQPad;
      int queryTile = i / ${TILE};
      b = bh / heads;
      h = bh - b * heads;
      maskHead = h - maskHeads * (h / maskHeads);
      keyRowBase = (b * kvHeads + h / groupSize) * seqKPad;
      if (bh * numQueryTiles + queryTile >= chunkTileEnd) return false;
      vec4 header = tableTexel(maskHead * numQueryTiles + queryTile);
      if (s >= int(header.y)) return false;
      vec4 slot = tableTexel(rowSlotBase + int(header.x) + s);
      int k0 = int(slot.x) * ${TILE};
      keyEnd = keyLimit(b);
      if (k0 >= keyEnd) return false;
      partial = slot.y == 0.0 || k0 + ${TILE} > keyEnd;
      j = k0 + 2 * jp;
      return true;
    }
    // Dot products of rows (r, r + 1) of row buffer a with rows (j, j + 1) of row buffer b (both even), as
    // (r0j0, r0j1, r1j0, r1j1).
    vec4 blockDot(sampler2D a, int aWidth, int r, sampler2D b, int bWidth, int j) {
      ivec2 axy = texelXY((r / 2) * HEAD_TEXELS, aWidth);
      ivec2 bxy = texelXY((j / 2) * HEAD_TEXELS, bWidth);
      vec4 acc = vec4(0.0), x, y;
      ${unroll(headTexels, (c) => `
      x = texelFetch(a, axy + ivec2(${c}, 0), 0);
      y = texelFetch(b, bxy + ivec2(${c}, 0), 0);
      acc += x.xxzz * y.xzxz + x.yyww * y.ywyw;`)}
      return acc;
    }
    // lse of rows (r, r + 1) from the quad buffer.
    vec2 rowPairStat(sampler2D stats, int r) {
      vec4 texel = fetchTexel(stats, r / 4, statsWidth);
      return (r - 4 * (r / 4)) == 0 ? texel.xy : texel.zw;
    }
  `;
}

/**
 * Scores of a chunk of query tiles × their visible key tiles, written as a tile buffer. `output` 'scores': the final
 * scores t (scaled, softcapped), MASKED where masked, past keyLengths, or for padding rows (the forward computes every
 * score once; TileStatsProgram and ProbabilitiesProgram take it from there). 'probabilities': P = exp(t − lse) from a
 * given lse, maskedZero() (-0.0) where masked or for rows that see nothing, NaN where the row's lse is NaN or
 * +Infinity (the backward's recomputation).
 */
export class ScoresProgram extends AttentionProgram {
  variableNames: string[];

  constructor(outShape: [number, number], v: AttentionVariant, values: UniformValues,
              output: 'scores' | 'probabilities' = 'probabilities') {
    super(outShape);
    const probabilities = output === 'probabilities';
    this.variableNames = probabilities ? ['q', 'k', 'lse', 'table', 'keyLengths'] : ['q', 'k', 'table', 'keyLengths'];
    this.declareUniforms(
        [...PLAN_UNIFORMS, 'outWidth', 'qWidth', 'kWidth', 'statsWidth', 'chunkTileStart', 'chunkTileEnd', 'slotStart',
         'slotTexels'],
        values);
    const empty = probabilities ? 'vec4(maskedZero())' : 'vec4(MASKED)';
    this.userCode = `
      #define HEAD_TEXELS ${v.headTexels}
      ${texelHelpers()}
      ${planHelpers(v)}
      ${tileTexelHelpers(v.headTexels)}
      void main() {
        int r, i, b, h, maskHead, keyRowBase, j, keyEnd;
        bool partial;
        bool used = tileTexel(outputTexel(), r, i, b, h, maskHead, keyRowBase, j, partial, keyEnd);
        vec4 result = ${empty};
        // (An if, not a one-trip loop: SwiftShader skips the block when no lane of the quad needs it, so causal's
        // empty slots cost little; the loop form measured ~10% slower.)
        if (used) {
          vec4 scores = capScores(scale * blockDot(q, qWidth, r, k, kWidth, keyRowBase + j));
          ${probabilities ? `
          vec2 rowLse = rowPairStat(lse, r);
          bvec4 emptyRow = isNegativeInfinity(rowLse.xxyy);
          bool row0 = !emptyRow.x && i < seqQ;
          bool row1 = !emptyRow.z && i + 1 < seqQ;` : `
          bool row0 = i < seqQ, row1 = i + 1 < seqQ;`}
          bvec4 keep = bvec4(row0, row0, row1, row1);
          if (partial) {
            bvec4 visible = visibleBlock(i, j, maskHead, keyEnd);
            keep = bvec4(keep.x && visible.x, keep.y && visible.y, keep.z && visible.z, keep.w && visible.w);
          }
          ${probabilities ? `
          vec4 safeLse = mix(vec4(0.0), rowLse.xxyy, keep);
          result = mix(vec4(maskedZero()), exp(min(scores - safeLse, 0.0)), keep);
          // A NaN or +Infinity lse (the row saw a NaN or +Infinity score): every entry it sees is NaN.
          result = mix(result, vec4(nanValue()), both4(keep, isPoisoned(rowLse.xxyy)));` : `
          // Selects (mix with bvec4), never blends: MASKED + (s - MASKED) would cancel to 0.
          result = mix(vec4(MASKED), scores, keep);`}
        }
        setOutput(result);
      }
    `;
  }
}

/** keyLimit(b) of every batch, four per texel (for multi-target programs, which cannot use tfjs's getters). */
export class KeyEndsProgram extends AttentionProgram {
  variableNames = ['keyLengths'];

  constructor(outShape: [number, number], v: AttentionVariant, values: UniformValues) {
    super(outShape);
    this.declareUniforms(['outWidth', 'seqK', 'batch'], values);
    this.userCode = `
      ${texelHelpers()}
      int keyLimit(int b) {
        if (b >= batch) return 0;
        ${keyLimitBody(v, false)}
      }
      void main() {
        int b = 4 * outputTexel();
        setOutput(vec4(keyLimit(b), keyLimit(b + 1), keyLimit(b + 2), keyLimit(b + 3)));
      }
    `;
  }
}

/**
 * Per key tile of a row buffer of values (global key tile kt = (b · kvHeads + hk) · numKeyTiles + tile, four per
 * texel): 1 when the tile holds a NaN or an infinity, else 0 (decided on bits). valueBlocksProgram's fix-up pass
 * redoes only the fragments whose partial tiles have such values.
 */
export class NonFiniteKeyTilesProgram extends AttentionProgram {
  variableNames = ['values'];

  constructor(outShape: [number, number], headTexels: number, values: UniformValues) {
    super(outShape);
    this.declareUniforms(['outWidth', 'valuesWidth', 'keyTileCount'], values);
    const tileTexels = (TILE / 2) * headTexels;
    this.userCode = `
      ${texelHelpers()}
      float nonFinite(int tile) {
        if (tile >= keyTileCount) return 0.0;
        uvec4 largest = uvec4(0u);  // of the magnitudes' bit patterns: >= 0x7f800000 is an infinity or a NaN
        for (int e = 0; e < ${tileTexels}; e++) {
          largest = max(largest, floatBitsToUint(fetchTexel(values, tile * ${tileTexels} + e, valuesWidth)) &
                                     uvec4(0x7fffffffu));
        }
        return any(greaterThanEqual(largest, uvec4(0x7f800000u))) ? 1.0 : 0.0;
      }
      void main() {
        int tile = 4 * outputTexel();
        setOutput(vec4(nonFinite(tile), nonFinite(tile + 1), nonFinite(tile + 2), nonFinite(tile + 3)));
      }
    `;
  }
}

/** Sampler names of the eight score block targets, in target order. */
export function blockNames(prefix = 'scores'): string[] {
  return Array.from({length: BLOCK_TARGETS}, (_, o) => `${prefix}${o}`);
}

/** Score block outputs: target 4·ρ + n holds row pair 2g + ρ × key pair 4·kg + n of fragment (g, slot, kg). */
export const BLOCK_TARGETS = 8;

/**
 * Where the score / probability blocks of a chunk live (fragment = 4 rows × 8 keys, eight targets). Each query tile
 * of the chunk owns blockLinesPerTile lines; a line holds blockSlotsPerLine slots; a slot is a run of TILE fragments
 * (group g = 0 … 7 of 4 rows, then kg = 0 … 3 of 8 keys). So the slots a query tile visits are a prefix of its lines:
 * one or two rectangles, and the draws cover only those (blockCoverVertices) — causal's empty slots, half of a dense
 * chunk, are never shaded (an empty fragment that only checked the schedule cost ~half a full one on SwiftShader).
 * Regions outside the rectangles stay unwritten and are never read.
 */
export const BLOCK_LAYOUT_UNIFORMS = ['blockSlotsPerLine', 'blockLinesPerTile'];

/** GLSL blockXY(localGroup, localSlot): the kg = 0 fragment of rows 4·localGroup … (chunk-local) × a local slot. */
const BLOCK_XY_HELPER = `
    ivec2 blockXY(int localGroup, int localSlot) {
      int tile = localGroup / ${TILE / 4};
      int line = localSlot / blockSlotsPerLine;
      return ivec2((localSlot - line * blockSlotsPerLine) * ${TILE} + (localGroup - ${TILE / 4} * tile) * 4,
                   tile * blockLinesPerTile + line);
    }
`;

/**
 * Vertex shader body drawing, for each query tile of the chunk, the rectangles of its visited slots in
 * [slotStart, slotEnd): 12 vertices (two rectangles: the full lines, then the rest of the last line) per query tile.
 * Needs PLAN_UNIFORMS' schedule fields, chunkTileStart / slotStart / slotEnd, BLOCK_LAYOUT_UNIFORMS, outWidth /
 * outLines (the output's size in fragments) and the table sampler.
 */
export function blockCoverVertices(rowTiles: number): {vertices: number, body: string} {
  return {
    vertices: 12 * rowTiles,
    body: `
      void main() {
        int rect = gl_VertexID / 6, corner = gl_VertexID - 6 * (gl_VertexID / 6);
        int localTile = rect / 2;
        int rowTile = chunkTileStart + localTile;
        int bh = rowTile / numQueryTiles;
        int queryTile = rowTile - bh * numQueryTiles;
        int h = bh - heads * (bh / heads);
        int maskHead = h - maskHeads * (h / maskHeads);
        int row = maskHead * numQueryTiles + queryTile;  // the schedule row: (first slot, slot count, -, -)
        vec4 header = texelFetch(table, ivec2(row - tableWidth * (row / tableWidth), row / tableWidth), 0);
        int n = clamp(min(int(header.y), slotEnd) - slotStart, 0, slotEnd - slotStart);
        int fullLines = n / blockSlotsPerLine;
        int top = localTile * blockLinesPerTile;
        // (x0, y0, x1, y1) in fragments: the full lines, or the last line's remaining slots.
        vec4 box = rect - 2 * localTile == 0 ?
            vec4(0.0, float(top), float(outWidth), float(top + fullLines)) :
            vec4(0.0, float(top + fullLines), float((n - fullLines * blockSlotsPerLine) * ${TILE}),
                 float(top + fullLines + 1));
        // Two triangles: corners (0, 0), (1, 0), (0, 1), (1, 0), (1, 1), (0, 1).
        bool right = corner == 1 || corner == 3 || corner == 4;
        bool up = corner == 2 || corner == 4 || corner == 5;
        vec2 p = vec2(right ? box.z : box.x, up ? box.w : box.y);
        gl_Position = vec4(2.0 * p.x / float(outWidth) - 1.0, 2.0 * p.y / float(outLines) - 1.0, 0.0, 1.0);
      }
    `,
  };
}

/**
 * The forward's scores t as a multiple-render-target draw (multi_target_webgl.ts): each fragment computes 4 query
 * rows × 8 keys (2 row pairs × 4 key pairs, one texel per output target), fetching 6 texels per score instead of the
 * 16 of a one-texel fragment, in the block layout of BLOCK_LAYOUT_UNIFORMS (drawn over blockCoverVertices' rectangles:
 * the visited slots only). MASKED where invisible, as the 'scores' mode of ScoresProgram (the path for contexts
 * without eight float render targets).
 */
export function scoreBlocksProgram(v: AttentionVariant, values: UniformValues): MultiTargetProgram {
  const D = v.headTexels;
  const names = [...PLAN_UNIFORMS, ...BLOCK_LAYOUT_UNIFORMS, 'outWidth', 'outLines', 'qWidth', 'kWidth',
                 'chunkTileStart', 'chunkTileEnd', 'slotStart', 'slotEnd',
                 ...(v.hasKeyLengths ? ['keyEndsWidth'] : [])];
  const uniforms = typedUniforms(names, values);
  const pairs = [0, 1, 2, 3, 4, 5, 6, 7];
  return {
    samplers: ['q', 'k', 'table', ...(v.hasKeyLengths ? ['keyEnds'] : [])],
    uniforms,
    cover: blockCoverVertices(values.chunkTileEnd - values.chunkTileStart),
    targets: BLOCK_TARGETS,
    body: `
      ${texelHelpers(false)}
      ${planHelpers(v, true)}
      void main() {
        // The fragment's place in the block layout (see BLOCK_LAYOUT_UNIFORMS).
        ivec2 xy = ivec2(gl_FragCoord.xy);
        int localTile = xy.y / blockLinesPerTile;
        int slotRun = xy.x / ${TILE};
        int s = slotStart + (xy.y - localTile * blockLinesPerTile) * blockSlotsPerLine + slotRun;
        int group = (xy.x - slotRun * ${TILE}) / 4;
        int kg = xy.x - slotRun * ${TILE} - 4 * group;
        int r = (chunkTileStart + localTile) * ${TILE} + 4 * group;  // rows r … r + 3 (one query tile)
        int bh = r / seqQPad;
        int i = r - bh * seqQPad;
        int queryTile = i / ${TILE};
        int b = bh / heads;
        int h = bh - b * heads;
        int maskHead = h - maskHeads * (h / maskHeads);
        int keyRowBase = (b * kvHeads + h / groupSize) * seqKPad;
        ${pairs.map((o) => `vec4 s${o} = vec4(MASKED);`).join(' ')}
        bool used = bh * numQueryTiles + queryTile < chunkTileEnd;
        vec4 header = tableTexel(maskHead * numQueryTiles + queryTile);
        used = used && s < min(int(header.y), slotEnd);
        vec4 slot = tableTexel(rowSlotBase + int(header.x) + s);
        int k0 = int(slot.x) * ${TILE};
        int keyEnd = keyLimit(b);
        used = used && k0 < keyEnd;
        if (used) {
          bool partial = slot.y == 0.0 || k0 + ${TILE} > keyEnd;
          int j = k0 + 8 * kg;  // keys j … j + 7
          ivec2 a0xy = texelXY((r / 2) * ${D}, qWidth), a1xy = texelXY((r / 2 + 1) * ${D}, qWidth);
          ${[0, 1, 2, 3].map((n) => `
          ivec2 b${n}xy = texelXY(((keyRowBase + j) / 2 + ${n}) * ${D}, kWidth);`).join('')}
          vec4 a0, a1, b0, b1, b2, b3;
          ${pairs.map((o) => `vec4 acc${o} = vec4(0.0);`).join(' ')}
          ${unroll(D, (c) => `
          a0 = texelFetch(q, a0xy + ivec2(${c}, 0), 0);
          a1 = texelFetch(q, a1xy + ivec2(${c}, 0), 0);
          ${[0, 1, 2, 3].map((n) => `b${n} = texelFetch(k, b${n}xy + ivec2(${c}, 0), 0);`).join(' ')}
          ${pairs.map((o) => `
          acc${o} += a${o >> 2}.xxzz * b${o & 3}.xzxz + a${o >> 2}.yyww * b${o & 3}.ywyw;`).join('')}`)}
          ${pairs.map((o) => {
            const rho = o >> 2, n = o & 3;
            return `{
            bool row0 = i + ${2 * rho} < seqQ, row1 = i + ${2 * rho + 1} < seqQ;
            bvec4 keep = bvec4(row0, row0, row1, row1);
            if (partial) {
              bvec4 visible = visibleBlock(i + ${2 * rho}, j + ${2 * n}, maskHead, keyEnd);
              keep = bvec4(keep.x && visible.x, keep.y && visible.y, keep.z && visible.z, keep.w && visible.w);
            }
            s${o} = mix(vec4(MASKED), capScores(scale * acc${o}), keep);
          }`;
          }).join('\n')}
        }
        ${pairs.map((o) => `out${o} = s${o};`).join(' ')}
      }
    `,
  };
}

/** Channel groups of the eight-target output blocks: 4 channel pairs (8 channels) per fragment. */
export function channelGroups(headTexels: number): number {
  return Math.ceil(headTexels / 4);
}

/**
 * GLSL needsFixup(firstSlot, slots, keyRowBase, keyEnd): whether a query tile's visited slots in [slotStart, slots)
 * include a partial tile whose values hold a NaN or an infinity (NonFiniteKeyTilesProgram's flags): the rows that
 * valueBlocksProgram's fix-up pass must redo. Shared by its vertex stage (which draws only such query tiles) and its
 * fragments.
 */
const NON_FINITE_FIXUP_HELPER = `
      bool nonFiniteTile(int keyTile) {
        vec4 flags = texelFetch(nonFiniteTiles, texelXY(keyTile / 4, nonFiniteWidth), 0);
        int lane = keyTile - 4 * (keyTile / 4);
        return texelLane(flags, lane) != 0.0;
      }
      bool needsFixup(int firstSlot, int slots, int keyRowBase, int keyEnd) {
        for (int s = slotStart; s < slots; s++) {
          vec4 slot = tableTexel(rowSlotBase + firstSlot + s);
          int k0 = int(slot.x) * ${TILE};
          if (k0 >= keyEnd) break;
          if ((slot.y == 0.0 || k0 + ${TILE} > keyEnd) && nonFiniteTile((keyRowBase + k0) / ${TILE})) return true;
        }
        return false;
      }
`;

/**
 * Vertex stage of valueBlocksProgram's fix-up pass: per query tile of the chunk, a rectangle over the output lines
 * holding its fragments when needsFixup says so, else nothing. With finite values (the common case) the pass shades
 * no fragment at all: on SwiftShader, fragments that only scanned their schedule and discarded cost as much as a
 * third of the P·V draw.
 */
function nonFiniteFixupCover(v: AttentionVariant, rowTiles: number): {vertices: number, body: string} {
  const fragmentsPerTile = (TILE / 4) * channelGroups(v.headTexels);
  return {
    vertices: 6 * rowTiles,
    body: `
      ${texelHelpers(false)}
      ${planHelpers(v, true)}
      ${NON_FINITE_FIXUP_HELPER}
      void main() {
        int rowTile = chunkTileStart + gl_VertexID / 6, corner = gl_VertexID - 6 * (gl_VertexID / 6);
        int bh = rowTile / numQueryTiles;
        int queryTile = rowTile - bh * numQueryTiles;
        int b = bh / heads;
        int h = bh - b * heads;
        int maskHead = h - maskHeads * (h / maskHeads);
        vec4 header = tableTexel(maskHead * numQueryTiles + queryTile);
        int slots = min(int(header.y), slotEnd);
        int keyRowBase = (b * kvHeads + h / groupSize) * seqKPad;
        if (!needsFixup(int(header.x), slots, keyRowBase, keyLimit(b))) {
          gl_Position = vec4(0.0, 0.0, 0.0, 1.0);  // every corner at one point: nothing drawn
          return;
        }
        // The lines holding fragments rowTile · ${fragmentsPerTile} … (neighbours sharing a line are drawn too; their
        // fragments decide for themselves).
        int f0 = rowTile * ${fragmentsPerTile};
        float y0 = float(f0 / outWidth), y1 = float((f0 + ${fragmentsPerTile} - 1) / outWidth + 1);
        // Two triangles: corners (0, 0), (1, 0), (0, 1), (1, 0), (1, 1), (0, 1).
        bool right = corner == 1 || corner == 3 || corner == 4;
        bool up = corner == 2 || corner == 4 || corner == 5;
        gl_Position = vec4(right ? 1.0 : -1.0, 2.0 * (up ? y1 : y0) / float(outLines) - 1.0, 0.0, 1.0);
      }
    `,
  };
}

/**
 * The forward's P·V of one chunk as a multiple-render-target draw: each fragment owns 4 rows × 8 channels (target
 * 4·ρ + n = row pair ρ × channel pair n of fragment f = rowGroup · channelGroups + cg, rows 4·rowGroup …), fetching 6
 * texels per 2 keys × 4 rows × 8 channels instead of 16, P from probabilityBlocksProgram's eight targets. Rows outside
 * the chunk are 0; mergeValueBlocksProgram adds a chunk to the O so far. (O is not read here: with it the draw would
 * need 8 more samplers, 21 in all, past the 16 that WebGL2 guarantees a fragment shader.) O lives in the eight
 * targets until UnpackRowsProgram (blocks) reads it back.
 *
 * Two passes, so that the common case carries no guard code:
 * - 'unguarded' sums every entry. A masked entry's P is -0.0 (maskedZero), which adds nothing as long as its key's
 *   value is finite.
 * - 'nonFiniteFixup' draws into the same targets afterwards and redoes, with masked entries skipped, only the
 *   fragments whose partial tiles (the only ones with masked entries) hold a NaN or infinite value
 *   (NonFiniteKeyTilesProgram): its vertex stage (nonFiniteFixupCover) draws only the query tiles that need it, and
 *   fragments there that do not are discarded. A masked key's NaN or Infinity must not reach a row through 0 · NaN.
 * Why not one pass with a guarded branch for partial tiles: on SwiftShader the mere presence of the guarded copy in
 * the shader made the draw ~30% slower (causal seq 1024: 38–42 ms → 28–30 ms without it), although full tiles never
 * run it.
 */
export function valueBlocksProgram(v: AttentionVariant, values: UniformValues,
                                   pass: 'unguarded' | 'nonFiniteFixup'): MultiTargetProgram {
  const D = v.headTexels;
  const fixup = pass === 'nonFiniteFixup';
  const names = [...PLAN_UNIFORMS, ...BLOCK_LAYOUT_UNIFORMS, 'outWidth', 'valuesWidth', 'chunkTileStart',
                 'chunkTileEnd', 'slotStart', 'slotEnd', 'rowCount', ...(fixup ? ['nonFiniteWidth', 'outLines'] : []),
                 ...(v.hasKeyLengths ? ['keyEndsWidth'] : [])];
  const uniforms = typedUniforms(names, values);
  const targets = [0, 1, 2, 3, 4, 5, 6, 7];
  // The slot loop's head: the slot's key tile, its first key k0, and the end of the row's keys.
  const slotHead = `
            vec4 slot = tableTexel(rowSlotBase + firstSlot + s);
            int k0 = int(slot.x) * ${TILE};
            if (k0 >= keyEnd) break;`;
  return {
    samplers: [...blockNames('probs'), 'values', ...(fixup ? ['nonFiniteTiles'] : []), 'table',
               ...(v.hasKeyLengths ? ['keyEnds'] : [])],
    uniforms,
    targets: BLOCK_TARGETS,
    ...(fixup ? {cover: nonFiniteFixupCover(v, values.chunkTileEnd - values.chunkTileStart)} : {}),
    body: `
      ${texelHelpers(false)}
      ${planHelpers(v, true)}
      ${BLOCK_XY_HELPER}${fixup ? NON_FINITE_FIXUP_HELPER : ''}
      void main() {
        int f = int(gl_FragCoord.y) * outWidth + int(gl_FragCoord.x);
        int rowGroup = f / ${channelGroups(D)};
        int cg = f - rowGroup * ${channelGroups(D)};
        int r = 4 * rowGroup;
        int rowTile = r / ${TILE};
        ${targets.map((o) => `vec4 acc${o} = vec4(0.0);`).join(' ')}
        ${fixup ? `
        if (r >= rowCount || rowTile < chunkTileStart || rowTile >= chunkTileEnd) discard;` : `
        if (r < rowCount && rowTile >= chunkTileStart && rowTile < chunkTileEnd)`} {
          int bh = r / seqQPad;
          int queryTile = rowTile - bh * numQueryTiles;
          int b = bh / heads;
          int h = bh - b * heads;
          int maskHead = h - maskHeads * (h / maskHeads);
          int keyRowBase = (b * kvHeads + h / groupSize) * seqKPad;
          int keyEnd = keyLimit(b);
          int localGroup = rowGroup - chunkTileStart * ${TILE / 4};
          vec4 header = tableTexel(maskHead * numQueryTiles + queryTile);
          int firstSlot = int(header.x), slots = min(int(header.y), slotEnd);${fixup ? `
          if (!needsFixup(firstSlot, slots, keyRowBase, keyEnd)) discard;` : ''}
          vec4 p0, p1, x0, x1, x2, x3;${fixup ? `
          bvec4 live0, live1;` : ''}
          for (int s = slotStart; s < slots; s++) {${slotHead}
            // P of rows r … r + 3 × the slot's keys: probability blocks kg = 0 … 3 (neighbours on one line).
            ivec2 pxy = blockXY(localGroup, s - slotStart);
            int vBase = ((keyRowBase + k0) / 2) * ${D} + 4 * cg;
            ${[0, 1, 2, 3].map((n) => `
            ivec2 v${n}xy = texelXY(vBase + ${n}, valuesWidth);`).join('')}
            ${fixup ? '// Masked entries skipped on every tile (full tiles have none).' : ''}
            ${valueBlockSteps(D, fixup)}
          }
        }
        ${targets.map((o) => `out${o} = acc${o};`).join(' ')}
      }
    `,
  };
}

/** The unrolled P·V steps of valueBlocksProgram over one key tile; `guarded`: masked entries add nothing. */
function valueBlockSteps(D: number, guarded: boolean): string {
  const targets = [0, 1, 2, 3, 4, 5, 6, 7];
  if (guarded) {
    // A loop over the four key groups, not unrolled: the guarded steps stay small (they run only in the rare fix-up
    // pass).
    return `
            for (int kg = 0; kg < 4; kg++) {
              ${unroll(4, (n) => `
              p0 = texelFetch(probs${n}, pxy + ivec2(kg, 0), 0);
              p1 = texelFetch(probs${4 + n}, pxy + ivec2(kg, 0), 0);
              ${[0, 1, 2, 3].map((m) => `x${m} = texelFetch(values, v${m}xy + ivec2((4 * kg + ${n}) * ${D}, 0), 0);`)
                  .join(' ')}
              live0 = isLive(p0); live1 = isLive(p1);
              ${targets.map((o) => {
                const p = `p${o >> 2}`, x = `x${o & 3}`, live = `live${o >> 2}`;
                return `
              acc${o} += mix(vec4(0.0), ${p}.xxzz * ${x}.xyxy, ${live}.xxzz) +
                         mix(vec4(0.0), ${p}.yyww * ${x}.zwzw, ${live}.yyww);`;
              }).join('')}`)}
            }`;
  }
  return unroll(TILE / 2, (jp) => `
            p0 = texelFetch(probs${jp & 3}, pxy + ivec2(${jp >> 2}, 0), 0);
            p1 = texelFetch(probs${4 + (jp & 3)}, pxy + ivec2(${jp >> 2}, 0), 0);
            ${[0, 1, 2, 3].map((n) => `x${n} = texelFetch(values, v${n}xy + ivec2(${jp * D}, 0), 0);`).join(' ')}
            ${targets.map((o) => `
            acc${o} += p${o >> 2}.xxzz * x${o & 3}.xyxy + p${o >> 2}.yyww * x${o & 3}.zwzw;`).join('')}`);
}

/**
 * O after one more chunk, for half of the eight O targets (targets 4·half … 4·half + 3: rows 2·half, 2·half + 1 of
 * each fragment's four): previous + chunk for the chunk's rows, previous elsewhere. With `rescale` (rows spanning
 * several slot ranges, whose P is exp(t − lse) with lse over the slot ranges so far), previous is first multiplied by
 * exp(previousLse − lse). Four targets per draw: 4 + 4 (+ 2) samplers.
 */
export function mergeValueBlocksProgram(headTexels: number, half: 0 | 1, rescale: boolean,
                                        values: UniformValues): MultiTargetProgram {
  const targets = [0, 1, 2, 3];
  return {
    samplers: [...blockNames('previous').slice(0, 4), ...blockNames('chunk').slice(0, 4),
               ...(rescale ? ['previousLse', 'lse'] : [])],
    uniforms: typedUniforms(['outWidth', 'chunkTileStart', 'chunkTileEnd', 'rowCount',
                             ...(rescale ? ['statsWidth'] : [])], values),
    targets: 4,
    body: `
      ${texelHelpers(false)}
      void main() {
        ivec2 xy = ivec2(gl_FragCoord.xy);
        int r = 4 * ((xy.y * outWidth + xy.x) / ${channelGroups(headTexels)});
        int rowTile = r / ${TILE};
        bool inChunk = r < rowCount && rowTile >= chunkTileStart && rowTile < chunkTileEnd;
        vec4 factor = vec4(1.0);
        ${rescale ? `
        if (inChunk) {
          vec4 before = fetchTexel(previousLse, r / 4, statsWidth), now = fetchTexel(lse, r / 4, statsWidth);
          bvec4 seen = notEqual(before, vec4(negativeInfinity()));
          factor = mix(vec4(0.0), exp(mix(vec4(0.0), before - now, seen)), seen);
        }` : ''}
        ${targets.map((o) => `
        out${o} = texelFetch(previous${o}, xy, 0) * factor.${half === 0 ? 'xxyy' : 'zzww'} +
                  (inChunk ? texelFetch(chunk${o}, xy, 0) : vec4(0.0));`).join('')}
      }
    `,
  };
}

/**
 * lse of four consecutive query rows per fragment (a quad buffer) from a chunk's tile buffer of scores (MASKED where
 * invisible): rows of the chunk's query tiles [chunkTileStart, chunkTileEnd) over its slot range. With `previous`,
 * other rows are copied from it and, when mergePrevious is 1, the chunk's rows merge it in (logaddexp over slot
 * ranges); without it other rows are -Infinity. Reads one texel per two rows and two keys: no dot products.
 */
export class TileStatsProgram extends AttentionProgram {
  variableNames = ['tiles', 'table', 'keyLengths'];

  constructor(outShape: [number, number], v: AttentionVariant, accumulate: boolean, values: UniformValues,
              blocks = false) {
    super(outShape);
    // blocks: the scores come as scoreBlocksProgram's eight targets (block layout) instead of one tile buffer.
    if (blocks) this.variableNames = [...blockNames(), 'table', 'keyLengths'];
    if (accumulate) this.variableNames.push('previous');
    this.declareUniforms(
        [...PLAN_UNIFORMS, 'outWidth', 'chunkTileStart', 'chunkTileEnd', 'slotStart', 'slotEnd', 'rowCount',
         ...(blocks ? BLOCK_LAYOUT_UNIFORMS : ['tilesWidth', 'slotTexels']), ...(accumulate ? ['mergePrevious'] : [])],
        values);
    this.userCode = `
      ${texelHelpers()}
      ${planHelpers(v)}
      ${blocks ? BLOCK_XY_HELPER : ''}
      void main() {
        int t = outputTexel();
        int r = 4 * t;  // first of the four rows (two row pairs of the tile buffer)
        int bh = r / seqQPad;
        int i = r - bh * seqQPad;
        int queryTile = i / ${TILE};
        int rowTile = bh * numQueryTiles + queryTile;
        vec4 previousLse = ${accumulate ? 'fetchTexel(previous, t, outWidth)' : 'vec4(negativeInfinity())'};
        if (r >= rowCount || rowTile < chunkTileStart || rowTile >= chunkTileEnd) {
          setOutput(previousLse);
          return;
        }
        int b = bh / heads;
        int h = bh - b * heads;
        int maskHead = h - maskHeads * (h / maskHeads);
        int keyEnd = keyLimit(b);
        int localPair = (r - chunkTileStart * ${TILE}) / 2;

        vec4 m = vec4(MASKED);  // running max of the four rows
        vec4 l = vec4(0.0);     // running sum of exp(t - m)
        vec4 header = tableTexel(maskHead * numQueryTiles + queryTile);
        int firstSlot = int(header.x), slots = min(int(header.y), slotEnd);
        for (int s = slotStart; s < slots; s++) {
          if (int(tableTexel(rowSlotBase + firstSlot + s).x) * ${TILE} >= keyEnd) break;  // the rest is padding
          ${blocks ? `
          ivec2 xy = blockXY(localPair / 2, s - slotStart);` : `
          ivec2 axy = texelXY(localPair * slotTexels + (s - slotStart) * ${TILE / 2}, tilesWidth);
          ivec2 bxy = texelXY((localPair + 1) * slotTexels + (s - slotStart) * ${TILE / 2}, tilesWidth);`}
          vec4 ta, tb;
          // (key 2jp, key 2jp + 1) of the four rows, and the tile's max: one rescale per tile, not per key pair.
          ${unroll(TILE / 2, (jp) => (blocks ? `
          ta = texelFetch(scores${jp & 3}, xy + ivec2(${jp >> 2}, 0), 0);
          tb = texelFetch(scores${4 + (jp & 3)}, xy + ivec2(${jp >> 2}, 0), 0);` : `
          ta = texelFetch(tiles, axy + ivec2(${jp}, 0), 0);
          tb = texelFetch(tiles, bxy + ivec2(${jp}, 0), 0);`) + `
          vec4 s0_${jp} = vec4(ta.x, ta.z, tb.x, tb.z), s1_${jp} = vec4(ta.y, ta.w, tb.y, tb.w);`)}
          vec4 tileMax = max(s0_0, s1_0);
          ${unroll(TILE / 2 - 1, (n) => `tileMax = max(tileMax, max(s0_${n + 1}, s1_${n + 1}));`)}
          if (any(greaterThan(tileMax, m))) {
            vec4 mNew = max(m, tileMax);
            l *= exp(m - mNew);
            m = mNew;
          }
          // Unselected: a MASKED score adds exp(MASKED - m) = 0 once m is a score, and while m is still MASKED its
          // 1s are rescaled away by exp(MASKED - m) when a score comes (or the row ends empty: m stays MASKED). A NaN
          // score makes l NaN, a +Infinity one makes m +Infinity (and l NaN): the row's lse is NaN, below.
          ${unroll(TILE / 2, (jp) => `
          l += exp(s0_${jp} - m) + exp(s1_${jp} - m);`)}
        }
        bvec4 seesKeys = notEqual(floatBitsToUint(m), uvec4(floatBitsToUint(MASKED)));
        bvec4 poisoned = bvec4(uvec4(isPoisoned(m)) + uvec4(isPoisoned(l)));
        vec4 lse = mix(vec4(negativeInfinity()), m + log(l), seesKeys);
        lse = mix(lse, vec4(nanValue()), poisoned);
        ${accumulate ? `
        if (mergePrevious == 1) {
          // logaddexp(previousLse, lse), where either may be -Infinity.
          vec4 hi = max(previousLse, lse), lo = min(previousLse, lse);
          bvec4 both = bvec4(ivec4(greaterThan(lo, vec4(MASKED))) * ivec4(seesKeys));
          lse = mix(hi, hi + log(1.0 + exp(mix(vec4(0.0), lo - hi, both))), both);
          // NaN from either side stays NaN (max and min may drop it).
          lse = mix(lse, vec4(nanValue()), bvec4(uvec4(poisoned) + uvec4(isPoisoned(previousLse))));
        }` : ''}
        bvec4 rowExists = lessThan(ivec4(i) + ivec4(0, 1, 2, 3), ivec4(seqQ));
        setOutput(mix(vec4(negativeInfinity()), lse, rowExists));
      }
    `;
  }
}

/**
 * GLSL probability(t, lse, rowSees, rowNaN): exp(t − lse); maskedZero() (-0.0) where t is MASKED or the row sees
 * nothing (lse = -Infinity); NaN for the visible entries of a row whose lse is NaN or +Infinity.
 */
const PROBABILITY_HELPER = `
    // rowSees: the rows' lse is not -Infinity; rowNaN: it is NaN or +Infinity (TileStatsProgram: the row saw a NaN or
    // +Infinity score), which makes every entry the row sees NaN (explicitly: SwiftShader's exp(NaN) is not NaN).
    vec4 probability(vec4 t, vec4 rowLse, bvec4 rowSees, bvec4 rowNaN) {
      bvec4 keep = both4(notEqual(floatBitsToUint(t), uvec4(floatBitsToUint(MASKED))), rowSees);
      vec4 p = mix(vec4(maskedZero()), exp(min(t - mix(vec4(0.0), rowLse, keep), 0.0)), keep);
      return mix(p, vec4(nanValue()), both4(keep, rowNaN));
    }
`;

/** P = exp(t − lse) of a chunk's tile buffer of scores (0 where MASKED or for rows that see nothing). */
export class ProbabilitiesProgram extends AttentionProgram {
  variableNames = ['scores', 'lse'];

  constructor(outShape: [number, number], values: UniformValues) {
    super(outShape);
    this.declareUniforms(['outWidth', 'statsWidth', 'chunkTileStart', 'slotTexels', 'tileTexels'], values);
    this.userCode = `
      ${texelHelpers()}
      ${PROBABILITY_HELPER}
      void main() {
        int t = outputTexel();
        vec4 s = fetchTexel(scores, t, outWidth);
        int r = chunkTileStart * ${TILE} + 2 * (min(t, tileTexels - 1) / slotTexels);
        vec4 texel = fetchTexel(lse, r / 4, statsWidth);
        vec2 rowLse = (r - 4 * (r / 4)) == 0 ? texel.xy : texel.zw;
        setOutput(t < tileTexels ?
                  probability(s, rowLse.xxyy, not(isNegativeInfinity(rowLse.xxyy)), isPoisoned(rowLse.xxyy)) :
                  vec4(0.0));
      }
    `;
  }
}

/**
 * P = exp(t − lse) of scoreBlocksProgram's eight targets, as eight targets of the same block layout, drawn over the
 * same rectangles (blockCoverVertices): one fetch per output texel, and the four rows of a fragment share one lse
 * texel. (A one-output pass over the blocks picked one of eight samplers per texel with a branch that diverges
 * within every quad: 8 fetches per texel, measured ~40 ms of a 230 ms causal forward.)
 */
export function probabilityBlocksProgram(values: UniformValues): MultiTargetProgram {
  const targets = [0, 1, 2, 3, 4, 5, 6, 7];
  return {
    samplers: [...blockNames(), 'lse', 'table'],
    cover: blockCoverVertices(values.chunkTileEnd - values.chunkTileStart),
    uniforms: typedUniforms([...PLAN_UNIFORMS, ...BLOCK_LAYOUT_UNIFORMS, 'outWidth', 'outLines', 'statsWidth',
                             'chunkTileStart', 'slotStart', 'slotEnd'], values),
    targets: BLOCK_TARGETS,
    body: `
      ${texelHelpers(false)}
      ${PROBABILITY_HELPER}
      void main() {
        ivec2 xy = ivec2(gl_FragCoord.xy);
        int localTile = xy.y / blockLinesPerTile;
        int group = (xy.x - ${TILE} * (xy.x / ${TILE})) / 4;
        int r = (chunkTileStart + localTile) * ${TILE} + 4 * group;  // rows r … r + 3
        vec4 rowLse = fetchTexel(lse, r / 4, statsWidth);
        bvec4 rowSees = not(isNegativeInfinity(rowLse)), rowNaN = isPoisoned(rowLse);
        ${targets.map((o) => {
          const rows = o < 4 ? 'xxyy' : 'zzww';
          return `
        out${o} = probability(texelFetch(scores${o}, xy, 0), rowLse.${rows}, rowSees.${rows}, rowNaN.${rows});`;
        }).join('')}
      }
    `,
  };
}

/**
 * Row-side accumulation over a chunk's tile buffer: out[r, c] = previous[r, c] + Σ_keys tiles[r, key] · values[key, c]
 * for the rows of the chunk (O = P·V, or dQ = dS·K) over its slot range; other rows are copied from `previous` (0
 * without it). With `rescale` (the forward's rows that span several slot ranges, whose tiles are exp(t − lse) with
 * lse over the ranges so far), previous[r, ·] is first multiplied by exp(previousLse[r] − lse[r]).
 */
export class RowAccumulateProgram extends AttentionProgram {
  variableNames = ['tiles', 'values', 'table', 'keyLengths'];

  constructor(outShape: [number, number], v: AttentionVariant, accumulate: boolean, values: UniformValues,
              rescale = false) {
    super(outShape);
    if (accumulate) this.variableNames.push('previous');
    if (rescale) this.variableNames.push('previousLse', 'lse');
    this.declareUniforms(
        [...PLAN_UNIFORMS, 'outWidth', 'valuesWidth', 'tilesWidth', 'chunkTileStart', 'chunkTileEnd', 'slotStart',
         'slotEnd', 'slotTexels', 'rowCount', ...(rescale ? ['statsWidth'] : [])],
        values);
    const D = v.headTexels;
    this.userCode = `
      ${texelHelpers()}
      ${planHelpers(v)}
      void main() {
        int t = outputTexel();
        int pair = t / ${D};
        int c = t - pair * ${D};
        int r = 2 * pair;
        int rowTile = r / ${TILE};
        vec4 acc = ${accumulate ? 'fetchTexel(previous, t, outWidth)' : 'vec4(0.0)'};
        if (r >= rowCount || rowTile < chunkTileStart || rowTile >= chunkTileEnd) {
          setOutput(acc);
          return;
        }
        ${rescale ? `
        // The tiles are exp(t − lse) with lse over the slot ranges so far: rescale the earlier ranges' sum to it.
        vec4 before = fetchTexel(previousLse, r / 4, statsWidth), now = fetchTexel(lse, r / 4, statsWidth);
        vec2 lseBefore = (r - 4 * (r / 4)) == 0 ? before.xy : before.zw;
        vec2 lseNow = (r - 4 * (r / 4)) == 0 ? now.xy : now.zw;
        bvec2 seen = notEqual(lseBefore, vec2(negativeInfinity()));
        acc *= mix(vec2(0.0), exp(mix(vec2(0.0), lseBefore - lseNow, seen)), seen).xxyy;` : ''}
        int bh = r / seqQPad;
        int queryTile = rowTile - bh * numQueryTiles;
        int b = bh / heads;
        int h = bh - b * heads;
        int maskHead = h - maskHeads * (h / maskHeads);
        int keyRowBase = (b * kvHeads + h / groupSize) * seqKPad;
        int keyEnd = keyLimit(b);
        int localPair = pair - chunkTileStart * ${TILE / 2};
        vec4 header = tableTexel(maskHead * numQueryTiles + queryTile);
        int firstSlot = int(header.x), slots = min(int(header.y), slotEnd);
        vec4 p, x;
        bvec4 live;
        for (int s = slotStart; s < slots; s++) {
          vec4 slot = tableTexel(rowSlotBase + firstSlot + s);
          int k0 = int(slot.x) * ${TILE};
          if (k0 >= keyEnd) break;
          ivec2 pxy = texelXY(localPair * slotTexels + (s - slotStart) * ${TILE / 2}, tilesWidth);
          ivec2 vxy = texelXY(((keyRowBase + k0) / 2) * ${D} + c, valuesWidth);
          // Partial tiles skip masked entries (maskedZero): see valueBlocksProgram.
          // (A loop over four groups of key pairs, not unrolled, keeps the guarded copy small: see valueBlockSteps.)
          if (slot.y == 0.0 || k0 + ${TILE} > keyEnd) {
            for (int q4 = 0; q4 < ${TILE / 8}; q4++) {
              ${unroll(4, (n) => `
              p = texelFetch(tiles, pxy + ivec2(4 * q4 + ${n}, 0), 0);
              x = texelFetch(values, vxy + ivec2((4 * q4 + ${n}) * ${D}, 0), 0);
              live = isLive(p);
              acc += mix(vec4(0.0), p.xxzz * x.xyxy, live.xxzz) + mix(vec4(0.0), p.yyww * x.zwzw, live.yyww);`)}
            }
          } else {
            ${unroll(TILE / 2, (jp) => `
            p = texelFetch(tiles, pxy + ivec2(${jp}, 0), 0);          // (r0k0, r0k1, r1k0, r1k1)
            x = texelFetch(values, vxy + ivec2(${jp * D}, 0), 0);     // (k0c0, k0c1, k1c0, k1c1)
            acc += p.xxzz * x.xyxy + p.yyww * x.zwzw;`)}
          }
        }
        setOutput(acc);
      }
    `;
  }
}
