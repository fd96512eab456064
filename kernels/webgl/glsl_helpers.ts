/**
 * The GLSL building blocks of the webgl attention programs (*_gpu.ts), each written once and named for what it
 * declares: texel addressing and the NaN/Inf bit tests (texelHelpers), the plan's masks and softcap (planHelpers),
 * the row-decode prologue (locateQueryRow, headOfRow), tile-buffer texels (tileTexelHelpers), P from t and lse
 * (PROBABILITY_HELPER), the block layout (BLOCK_XY_HELPER, blockCoverVertices) and the fix-up test of the P·V pass
 * (nonFiniteFixupHelper). Not a program file: it holds GLSL sources only.
 */
import {elementMaskTests, hasScoreOptions, HiddenTileSkip, scoreOptionHelpers} from './attention_options.js';
import {AttentionVariant, TILE} from './attention_program.js';

/** GLSL statements body(0) … body(count - 1): loops over channels and tile rows are unrolled (see above). */
export function unroll(count: number, body: (i: number) => string): string {
  return Array.from({length: count}, (_, i) => body(i)).join('\n');
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
export function keyLimitBody(v: AttentionVariant, keyEnds: boolean): string {
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
 * `withOptions`: the program reads the plan's score options (attention_options.ts: their samplers and uniforms);
 * isVisible and visibleBlock then take (…, b, h) too (visibilityArgs) and test offsets, mask and segments.
 */
export function planHelpers(v: AttentionVariant, keyEnds = false, withOptions = false): string {
  const o = withOptions && hasScoreOptions(v.options) ? v.options! : undefined;
  const bh = o != null ? ', int b, int h' : '';
  const args = o != null ? ', b, h' : '';
  return `${o != null ? scoreOptionHelpers(o) : ''}
    // Keys at or past keyLimit(b) are padding: seqK, or keyLengths[b] when the op was given keyLengths.
    int keyLimit(int b) {
      ${keyLimitBody(v, keyEnds)}
    }
    vec4 tableTexel(int t) {
      return texelFetch(table, texelXY(t, tableWidth), 0);
    }
    // Per-element visibility inside a partial tile: the query row exists, the window, the layout block, the key
    // exists and is not padding.
    bool isVisible(int i, int j, int maskHead, int keyEnd${bh}) {
      int diag = ${o != null ? 'queryPosition(b, i)' : 'i + diagOffset'};
      bool visible = i < seqQ && j < keyEnd &&
          (windowLeft < 0 || j >= diag - windowLeft) && (windowRight < 0 || j <= diag + windowRight);
      ${v.hasLayout ? `
      if (visible) {
        int block = (maskHead * layoutQueryBlocks + i / layoutBlock) * layoutKeyBlocks + j / layoutBlock;
        int word = block / 4;
        vec4 bits = tableTexel(layoutBase + word);
        int lane = block - 4 * word;
        visible = texelLane(bits, lane) != 0.0;
      }` : ''}${elementMaskTests(o)}
      return visible;
    }
    // Visibility of the 2×2 block (rows i, i+1) × (keys j, j+1) as (r0k0, r0k1, r1k0, r1k1).
    bvec4 visibleBlock(int i, int j, int maskHead, int keyEnd${bh}) {
      return bvec4(isVisible(i, j, maskHead, keyEnd${args}), isVisible(i, j + 1, maskHead, keyEnd${args}),
                   isVisible(i + 1, j, maskHead, keyEnd${args}), isVisible(i + 1, j + 1, maskHead, keyEnd${args}));
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
 * The row-decode prologue, part 1: where a global query row sits (rows ordered (batch, head, position) with the
 * position padded to seqQPad; row tiles ordered the same way). GLSL declaring bh (batch · heads + head) and
 * queryTile (the row's tile within its head), from
 *   'row'         the row r, also declaring its position i (`declareI` false: i is an out parameter)
 *   'rowAndTile'  the row r and its row tile rowTile
 *   'rowTile'     the row tile rowTile alone
 */
export function locateQueryRow(from: 'row' | 'rowAndTile' | 'rowTile', declareI = true): string {
  if (from === 'row') {
    return `
        int bh = r / seqQPad;
        ${declareI ? 'int ' : ''}i = r - bh * seqQPad;
        int queryTile = i / ${TILE};`;
  }
  return `
        int bh = ${from === 'rowTile' ? 'rowTile / numQueryTiles' : 'r / seqQPad'};
        int queryTile = rowTile - bh * numQueryTiles;`;
}

/** The first key row of a row's kv head (b, h from headOfRow): GQA's group of query heads shares it. */
export const KEY_ROW_BASE = '(b * kvHeads + h / groupSize) * seqKPad';

/**
 * The row-decode prologue, part 2: from bh (locateQueryRow), GLSL declaring the batch b, the head h, its mask head
 * (the schedule's head: masks may have fewer heads than q) and, optionally, keyRowBase (KEY_ROW_BASE) and keyEnd
 * (keyLimit(b): planHelpers). `declare` false: b, h, maskHead and keyRowBase are out parameters; `batch` false: only
 * the head is needed (no b).
 */
export function headOfRow({declare = true, batch = true, keyRowBase = false, keyEnd = false} = {}): string {
  const int = declare ? 'int ' : '';
  const head = batch ? `
        ${int}b = bh / heads;
        ${int}h = bh - b * heads;` : `
        ${int}h = bh - heads * (bh / heads);`;
  return `${head}
        ${int}maskHead = h - maskHeads * (h / maskHeads);${keyRowBase ? `
        ${int}keyRowBase = ${KEY_ROW_BASE};` : ''}${keyEnd ? `
        int keyEnd = keyLimit(b);` : ''}`;
}

/** Where a texel of a tile buffer sits, and its rows' dot products: shared by ScoresProgram and ScoreGradProgram. */
export function tileTexelHelpers(headTexels: number, dataPartial = ''): string {
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
      ${locateQueryRow('row', false)}
      ${headOfRow({declare: false, keyRowBase: true})}
      if (bh * numQueryTiles + queryTile >= chunkTileEnd) return false;
      vec4 header = tableTexel(maskHead * numQueryTiles + queryTile);
      if (s >= int(header.y)) return false;
      vec4 slot = tableTexel(rowSlotBase + int(header.x) + s);
      int k0 = int(slot.x) * ${TILE};
      keyEnd = keyLimit(b);
      if (k0 >= keyEnd) return false;
      partial = slot.y == 0.0 || k0 + ${TILE} > keyEnd${dataPartial};
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
 * GLSL probability(t, lse, rowSees, rowNaN): exp(t − lse); maskedZero() (-0.0) where t is MASKED or the row sees
 * nothing (lse = -Infinity); NaN for the visible entries of a row whose lse is NaN or +Infinity.
 */
export const PROBABILITY_HELPER = `
    // rowSees: the rows' lse is not -Infinity; rowNaN: it is NaN or +Infinity (TileStatsProgram: the row saw a NaN or
    // +Infinity score), which makes every entry the row sees NaN (explicitly: SwiftShader's exp(NaN) is not NaN).
    vec4 probability(vec4 t, vec4 rowLse, bvec4 rowSees, bvec4 rowNaN) {
      bvec4 keep = both4(notEqual(floatBitsToUint(t), uvec4(floatBitsToUint(MASKED))), rowSees);
      vec4 p = mix(vec4(maskedZero()), exp(min(t - mix(vec4(0.0), rowLse, keep), 0.0)), keep);
      return mix(p, vec4(nanValue()), both4(keep, rowNaN));
    }
`;

/** GLSL blockXY(localGroup, localSlot): the kg = 0 fragment of rows 4·localGroup … (chunk-local) × a local slot. */
export const BLOCK_XY_HELPER = `
    ivec2 blockXY(int localGroup, int localSlot) {
      int tile = localGroup / ${TILE / 4};
      int line = localSlot / blockSlotsPerLine;
      return ivec2((localSlot - line * blockSlotsPerLine) * ${TILE} + (localGroup - ${TILE / 4} * tile) * 4,
                   tile * blockLinesPerTile + line);
    }
`;

/**
 * GLSL: vertex `corner` (0 … 5) of the rectangle `box` (x0, y0, x1, y1, in fragments of the outWidth × outLines
 * output) as two counter-clockwise triangles, into gl_Position.
 */
const RECTANGLE_CORNER = `        // Two triangles: corners (0, 0), (1, 0), (0, 1), (1, 0), (1, 1), (0, 1).
        bool right = corner == 1 || corner == 3 || corner == 4;
        bool up = corner == 2 || corner == 4 || corner == 5;
        vec2 p = vec2(right ? box.z : box.x, up ? box.w : box.y);
        gl_Position = vec4(2.0 * p.x / float(outWidth) - 1.0, 2.0 * p.y / float(outLines) - 1.0, 0.0, 1.0);`;

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
        ${locateQueryRow('rowTile')}
        ${headOfRow({batch: false})}
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
${RECTANGLE_CORNER}
      }
    `,
  };
}

/**
 * The cover of a block draw that also leaves out the tiles the data hide: per (query tile, slot) of the draw one
 * rectangle (TILE fragments on the slot's line), collapsed to a point where the slot is past the row's slots or
 * tileHidden rules the tile out — those fragments are never shaded (on SwiftShader an early-out fragment still costs
 * about half a full one). Only for plans whose later passes skip hidden tiles too (hidden.active: they never read
 * what is left unwritten); the POISON_HIDDEN_TILES_FLAG test hook keeps blockCoverVertices so that the poison is
 * written. `slots`: the draw's slot range (slotEnd − slotStart). Needs hidden.inputs / hidden.uniforms besides
 * blockCoverVertices' samplers and uniforms.
 */
export function slotCoverVertices(rowTiles: number, slots: number, hidden: HiddenTileSkip): {vertices: number,
                                                                                               body: string} {
  return {
    vertices: 6 * rowTiles * slots,
    body: `
      ${texelHelpers(false)}${hidden.helpers}
      void main() {
        int rect = gl_VertexID / 6, corner = gl_VertexID - 6 * (gl_VertexID / 6);
        int localTile = rect / ${slots}, localSlot = rect - ${slots} * localTile;
        int rowTile = chunkTileStart + localTile;
        ${locateQueryRow('rowTile')}
        ${headOfRow()}
        int row = maskHead * numQueryTiles + queryTile;  // the schedule row: (first slot, slot count, -, -)
        vec4 header = texelFetch(table, texelXY(row, tableWidth), 0);
        int s = slotStart + localSlot;
        bool draw = s < min(int(header.y), slotEnd);
        if (draw) {
          int keyTile = int(texelFetch(table, texelXY(rowSlotBase + int(header.x) + s, tableWidth), 0).x);
          draw = !tileHidden(b, h, queryTile, keyTile);
        }
        int line = localSlot / blockSlotsPerLine;
        float x0 = float((localSlot - line * blockSlotsPerLine) * ${TILE});
        float y0 = float(localTile * blockLinesPerTile + line);
        vec4 box = draw ? vec4(x0, y0, x0 + ${TILE}.0, y0 + 1.0) : vec4(0.0);
${RECTANGLE_CORNER}
      }
    `,
  };
}

/**
 * The cover of a block draw over `rowTiles` query tiles and the draw's `slots`: slotCoverVertices where the passes
 * skip hidden tiles (and the poison test hook is off), else blockCoverVertices.
 */
export function blockDrawCover(v: AttentionVariant, rowTiles: number, slots: number, hidden: HiddenTileSkip):
    {vertices: number, body: string} {
  return hidden.active && !v.options?.poisonHiddenTiles ? slotCoverVertices(rowTiles, slots, hidden) :
                                                          blockCoverVertices(rowTiles);
}

/**
 * GLSL needsFixup(firstSlot, slots, keyRowBase, keyEnd): whether a query tile's visited slots in [slotStart, slots)
 * include a partial tile whose values hold a NaN or an infinity (NonFiniteKeyTilesProgram's flags): the rows that
 * ValueBlocksProgram's fix-up pass must redo. Shared by its vertex stage (which draws only such query tiles) and its
 * fragments. When the passes skip hidden tiles (`hidden`, attention_options.ts's hiddenTileSkip), so does this scan,
 * and it takes (…, b, h, queryTile) too.
 */
export function nonFiniteFixupHelper(hidden: HiddenTileSkip): string {
  return `
      bool nonFiniteTile(int keyTile) {
        vec4 flags = texelFetch(nonFiniteTiles, texelXY(keyTile / 4, nonFiniteWidth), 0);
        int lane = keyTile - 4 * (keyTile / 4);
        return texelLane(flags, lane) != 0.0;
      }
      bool needsFixup(int firstSlot, int slots, int keyRowBase, int keyEnd${hidden.active ? ', int b, int h, int queryTile' :
                                                                          ''}) {
        for (int s = slotStart; s < slots; s++) {
          vec4 slot = tableTexel(rowSlotBase + firstSlot + s);
          int k0 = int(slot.x) * ${TILE};
          if (k0 >= keyEnd) break;${hidden.skip('queryTile', 'int(slot.x)')}
          if ((slot.y == 0.0 || k0 + ${TILE} > keyEnd${hidden.partial('queryTile', 'int(slot.x)')}) && nonFiniteTile((keyRowBase + k0) / ${TILE})) return true;
        }
        return false;
      }
`;
}
