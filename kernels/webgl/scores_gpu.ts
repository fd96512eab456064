/**
 * The scores of a chunk of query tiles × their visible key tiles, every dot product once:
 *   ScoresProgram        as one tile buffer, 2 × 2 per fragment: the forward's scores t where eight float render
 *                        targets are missing, and the backward's recomputed P = exp(t − lse)
 *   ScoreBlocksProgram   the forward's scores t as eight block targets, 4 rows × 8 keys per fragment, shading only
 *                        the visited slots (blockCoverVertices)
 * Masked-out tiles are never visited (loop bounds come from the schedule table); full tiles skip per-element masks.
 */
import {
  AttentionProgram, AttentionVariant, BLOCK_LAYOUT_UNIFORMS, BlockProgram, PLAN_UNIFORMS, TILE, UniformValues,
} from './attention_program.js';
import {
  blockDrawCover, headOfRow, locateQueryRow, planHelpers, texelHelpers, tileTexelHelpers, unroll,
} from './glsl_helpers.js';
import {
  dataPartialTest, hasScoreBias, hasTileSkip, hiddenTileSkip, scoreOptionInputs, scoreOptionUniforms, tileSkipHelpers,
  tileSkipInputs, tileSkipUniforms, visibilityArgs,
} from './attention_options.js';

/** The score programs' option samplers and uniforms: the score options, then the tile summaries. */
function scoreProgramInputs(v: AttentionVariant): string[] {
  return [...scoreOptionInputs(v.options), ...tileSkipInputs(v.options)];
}
function scoreProgramUniforms(v: AttentionVariant): string[] {
  return [...scoreOptionUniforms(v.options), ...tileSkipUniforms(v.options)];
}

/**
 * GLSL: `used` becomes false for a tile the data rule out (tileHidden; nothing without offsets, mask, segments).
 * With the POISON_HIDDEN_TILES_FLAG test hook, `hidden` says so too (poisonHiddenTile then writes NaN there).
 */
function skipHiddenTile(v: AttentionVariant, queryTile: string, keyTile: string, indent: string): string {
  if (!hasTileSkip(v.options)) return '';
  return v.options.poisonHiddenTiles ? `
${indent}bool hidden = used && tileHidden(b, h, ${queryTile}, ${keyTile});
${indent}used = used && !hidden;` : `
${indent}if (used) used = !tileHidden(b, h, ${queryTile}, ${keyTile});  // no score work for a tile the data hide`;
}

/** GLSL (test hook POISON_HIDDEN_TILES_FLAG): the vec4s `names` become NaN in a hidden tile. */
function poisonHiddenTile(v: AttentionVariant, names: string[], indent: string): string {
  return hasTileSkip(v.options) && v.options.poisonHiddenTiles ? `
${indent}if (hidden) { ${names.map((n) => `${n} = vec4(nanValue());`).join(' ')} }` : '';
}

/**
 * GLSL after a block's scores `name` (vec4 of (r0k0, r0k1, r1k0, r1k1) at rows i, keys j, in scope with b, h) are
 * softcapped: + bias + ALiBi (nothing without them).
 */
function addScoreBias(v: AttentionVariant, name: string, i: string, j: string): string {
  return hasScoreBias(v.options) ? `
          ${name} += scoreBiasBlock(b, h, ${i}, ${j});` : '';
}

/** GLSL after `keep` is decided: a -Infinity score (a -Infinity bias) masks (nothing without a bias). */
function maskNegativeInfinity(v: AttentionVariant, name: string, indent: string): string {
  return hasScoreBias(v.options) ? `
${indent}keep = both4(keep, not(isNegativeInfinity(${name})));` : '';
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
    this.variableNames.push(...scoreProgramInputs(v));
    this.declareUniforms(
        [...PLAN_UNIFORMS, 'outWidth', 'qWidth', 'kWidth', 'statsWidth', 'chunkTileStart', 'chunkTileEnd', 'slotStart',
         'slotTexels', ...scoreProgramUniforms(v)],
        values);
    const empty = probabilities ? 'vec4(maskedZero())' : 'vec4(MASKED)';
    this.userCode = `
      #define HEAD_TEXELS ${v.headTexels}
      ${texelHelpers()}
      ${planHelpers(v, false, true)}${hasTileSkip(v.options) ? tileSkipHelpers(v.options) : ''}
      ${tileTexelHelpers(v.headTexels, dataPartialTest(v.options, hasTileSkip(v.options), 'queryTile', 'int(slot.x)'))}
      void main() {
        int r, i, b, h, maskHead, keyRowBase, j, keyEnd;
        bool partial;
        bool used = tileTexel(outputTexel(), r, i, b, h, maskHead, keyRowBase, j, partial, keyEnd);${
          skipHiddenTile(v, `i / ${TILE}`, `j / ${TILE}`, '        ')}
        vec4 result = ${empty};
        // (An if, not a one-trip loop: SwiftShader skips the block when no lane of the quad needs it, so causal's
        // empty slots cost little; the loop form measured ~10% slower.)
        if (used) {
          vec4 scores = capScores(scale * blockDot(q, qWidth, r, k, kWidth, keyRowBase + j));${
            addScoreBias(v, 'scores', 'i', 'j')}
          ${probabilities ? `
          vec2 rowLse = rowPairStat(lse, r);
          bvec4 emptyRow = isNegativeInfinity(rowLse.xxyy);
          bool row0 = !emptyRow.x && i < seqQ;
          bool row1 = !emptyRow.z && i + 1 < seqQ;` : `
          bool row0 = i < seqQ, row1 = i + 1 < seqQ;`}
          bvec4 keep = bvec4(row0, row0, row1, row1);
          if (partial) {
            bvec4 visible = visibleBlock(i, j, maskHead, keyEnd${visibilityArgs(v.options)});
            keep = bvec4(keep.x && visible.x, keep.y && visible.y, keep.z && visible.z, keep.w && visible.w);
          }${maskNegativeInfinity(v, 'scores', '          ')}
          ${probabilities ? `
          vec4 safeLse = mix(vec4(0.0), rowLse.xxyy, keep);
          result = mix(vec4(maskedZero()), exp(min(scores - safeLse, 0.0)), keep);
          // A NaN or +Infinity lse (the row saw a NaN or +Infinity score): every entry it sees is NaN.
          result = mix(result, vec4(nanValue()), both4(keep, isPoisoned(rowLse.xxyy)));` : `
          // Selects (mix with bvec4), never blends: MASKED + (s - MASKED) would cancel to 0.
          result = mix(vec4(MASKED), scores, keep);`}
        }${poisonHiddenTile(v, ['result'], '        ')}
        setOutput(result);
      }
    `;
  }
}

/**
 * The forward's scores t as a multiple-render-target draw (multi_target.ts): each fragment computes 4 query
 * rows × 8 keys (2 row pairs × 4 key pairs, one texel per output target), fetching 6 texels per score instead of the
 * 16 of a one-texel fragment, in the block layout of BLOCK_LAYOUT_UNIFORMS (drawn over blockDrawCover's rectangles:
 * the visited slots only). MASKED where invisible, as the 'scores' mode of ScoresProgram (the path for contexts
 * without eight float render targets).
 */
export class ScoreBlocksProgram extends BlockProgram {
  variableNames: string[];

  constructor(v: AttentionVariant, values: UniformValues) {
    super();
    this.variableNames = ['q', 'k', 'table', ...(v.hasKeyLengths ? ['keyEnds'] : []),
                          ...scoreProgramInputs(v)];
    this.declareUniforms(
        [...PLAN_UNIFORMS, ...BLOCK_LAYOUT_UNIFORMS, 'outWidth', 'outLines', 'qWidth', 'kWidth', 'chunkTileStart',
         'chunkTileEnd', 'slotStart', 'slotEnd', ...(v.hasKeyLengths ? ['keyEndsWidth'] : []),
         ...scoreProgramUniforms(v)],
        values);
    this.cover = blockDrawCover(v, values.chunkTileEnd - values.chunkTileStart, values.slotEnd - values.slotStart,
                                hiddenTileSkip(v.options));
    const D = v.headTexels;
    const pairs = [0, 1, 2, 3, 4, 5, 6, 7];
    this.userCode = `
      ${texelHelpers(false)}
      ${planHelpers(v, true, true)}${hasTileSkip(v.options) ? tileSkipHelpers(v.options) : ''}
      void main() {
        // The fragment's place in the block layout (see BLOCK_LAYOUT_UNIFORMS).
        ivec2 xy = ivec2(gl_FragCoord.xy);
        int localTile = xy.y / blockLinesPerTile;
        int slotRun = xy.x / ${TILE};
        int s = slotStart + (xy.y - localTile * blockLinesPerTile) * blockSlotsPerLine + slotRun;
        int group = (xy.x - slotRun * ${TILE}) / 4;
        int kg = xy.x - slotRun * ${TILE} - 4 * group;
        int r = (chunkTileStart + localTile) * ${TILE} + 4 * group;  // rows r … r + 3 (one query tile)
        ${locateQueryRow('row')}
        ${headOfRow({keyRowBase: true})}
        ${pairs.map((o) => `vec4 s${o} = vec4(MASKED);`).join(' ')}
        bool used = bh * numQueryTiles + queryTile < chunkTileEnd;
        vec4 header = tableTexel(maskHead * numQueryTiles + queryTile);
        used = used && s < min(int(header.y), slotEnd);
        vec4 slot = tableTexel(rowSlotBase + int(header.x) + s);
        int k0 = int(slot.x) * ${TILE};
        int keyEnd = keyLimit(b);
        used = used && k0 < keyEnd;${skipHiddenTile(v, 'queryTile', `k0 / ${TILE}`, '        ')}
        if (used) {
          bool partial = slot.y == 0.0 || k0 + ${TILE} > keyEnd${
              dataPartialTest(v.options, hasTileSkip(v.options), 'queryTile', `k0 / ${TILE}`)};
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
              bvec4 visible = visibleBlock(i + ${2 * rho}, j + ${2 * n}, maskHead, keyEnd${visibilityArgs(v.options)});
              keep = bvec4(keep.x && visible.x, keep.y && visible.y, keep.z && visible.z, keep.w && visible.w);
            }${hasScoreBias(v.options) ? `
            vec4 t${o} = capScores(scale * acc${o}) + scoreBiasBlock(b, h, i + ${2 * rho}, j + ${2 * n});${
              maskNegativeInfinity(v, `t${o}`, '            ')}
            s${o} = mix(vec4(MASKED), t${o}, keep);` : `
            s${o} = mix(vec4(MASKED), capScores(scale * acc${o}), keep);`}
          }`;
          }).join('\n')}
        }${poisonHiddenTile(v, pairs.map((o) => `s${o}`), '        ')}
        ${pairs.map((o) => `out${o} = s${o};`).join(' ')}
      }
    `;
  }
}
