/**
 * P = exp(t − lse) of a chunk's scores, given its rows' lse (row_statistics_gpu.ts's TileStatsProgram):
 *   ProbabilitiesProgram       over one tile buffer (the path without eight float render targets)
 *   ProbabilityBlocksProgram   over ScoreBlocksProgram's eight targets, into eight targets of the same layout
 * maskedZero() (-0.0) where t is MASKED or the row sees nothing; NaN for a row whose lse is NaN or +Infinity.
 */
import {DROPOUT_HELPERS, DROPOUT_UNIFORMS, hiddenTileSkip} from './attention_options.js';
import {
  AttentionProgram, AttentionVariant, BLOCK_LAYOUT_UNIFORMS, blockNames, BlockProgram, PLAN_UNIFORMS, TILE,
  UniformValues,
} from './attention_program.js';
import {
  blockDrawCover, headOfRow, locateQueryRow, planHelpers, PROBABILITY_HELPER, texelHelpers, tileTexelHelpers,
} from './glsl_helpers.js';

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
 * P = exp(t − lse) of ScoreBlocksProgram's eight targets, as eight targets of the same block layout, drawn over the
 * same rectangles (blockCoverVertices): one fetch per output texel, and the four rows of a fragment share one lse
 * texel. (A one-output pass over the blocks picked one of eight samplers per texel with a branch that diverges
 * within every quad: 8 fetches per texel, measured ~40 ms of a 230 ms causal forward.)
 */
export class ProbabilityBlocksProgram extends BlockProgram {
  variableNames: string[];

  /**
   * With dropout (`v.options.dropout`), P is multiplied by the keep factors of its (b, h, i, j). Where the passes
   * skip hidden tiles, the draw leaves them out too (blockDrawCover): its inputs then end with the tile summaries
   * (PackedOptions.tileSkipInputs).
   */
  constructor(values: UniformValues, v: AttentionVariant) {
    super();
    const dropout = v.options?.dropout === true;
    const hidden = hiddenTileSkip(v.options);
    this.variableNames = [...blockNames(), 'lse', 'table', ...hidden.inputs];
    this.declareUniforms([...PLAN_UNIFORMS, ...BLOCK_LAYOUT_UNIFORMS, 'outWidth', 'outLines', 'statsWidth',
                          'chunkTileStart', 'slotStart', 'slotEnd', ...(dropout ? DROPOUT_UNIFORMS : []),
                          ...hidden.uniforms], values);
    this.cover = blockDrawCover(v, values.chunkTileEnd - values.chunkTileStart, values.slotEnd - values.slotStart,
                                hidden);
    const targets = [0, 1, 2, 3, 4, 5, 6, 7];
    this.userCode = `
      ${texelHelpers(false)}
      ${PROBABILITY_HELPER}${dropout ? DROPOUT_HELPERS : ''}
      void main() {
        ivec2 xy = ivec2(gl_FragCoord.xy);
        int localTile = xy.y / blockLinesPerTile;
        int group = (xy.x - ${TILE} * (xy.x / ${TILE})) / 4;
        int r = (chunkTileStart + localTile) * ${TILE} + 4 * group;  // rows r … r + 3
        vec4 rowLse = fetchTexel(lse, r / 4, statsWidth);
        bvec4 rowSees = not(isNegativeInfinity(rowLse)), rowNaN = isPoisoned(rowLse);${dropout ? `
        // The fragment's slot and keys (as ScoreBlocksProgram): keys j … j + 7 of rows i … i + 3.
        int slotRun = xy.x / ${TILE};
        int s = slotStart + (xy.y - localTile * blockLinesPerTile) * blockSlotsPerLine + slotRun;
        int kg = xy.x - slotRun * ${TILE} - 4 * group;
        ${locateQueryRow('row')}
        ${headOfRow()}
        vec4 header = fetchTexel(table, maskHead * numQueryTiles + queryTile, tableWidth);
        int j = int(fetchTexel(table, rowSlotBase + int(header.x) + s, tableWidth).x) * ${TILE} + 8 * kg;
        vec4 keep[8];  // keep[2 · row + half]: keys j + 4 · half … + 3 of row i + row
        for (int row = 0; row < 4; row++) {
          keep[2 * row] = keepFactors(dropoutWords(b, h, i + row, j));
          keep[2 * row + 1] = keepFactors(dropoutWords(b, h, i + row, j + 4));
        }` : ''}
        ${targets.map((o) => {
          const rows = o < 4 ? 'xxyy' : 'zzww';
          // Target 4·ρ + n: rows i + 2ρ, i + 2ρ + 1 × keys j + 2n, j + 2n + 1.
          const rho = o >> 2, n = o & 3, lanes = (n & 1) === 0 ? 'xy' : 'zw', half = n >> 1;
          const factor = dropout ? ` *
                 vec4(keep[${2 * (2 * rho) + half}].${lanes}, keep[${2 * (2 * rho + 1) + half}].${lanes})` : '';
          return `
        out${o} = probability(texelFetch(scores${o}, xy, 0), rowLse.${rows}, rowSees.${rows}, rowNaN.${rows})${
            factor};`;
        }).join('')}
      }
    `;
  }
}

/**
 * Dropout on a tile buffer of P (the one-output forward after ProbabilitiesProgram, and the backward's P for dV):
 * each visible entry times its keep factor (0 or keepScale, src/plan/philox.ts); masked entries (-0.0) stay masked.
 */
export class DropoutTileProgram extends AttentionProgram {
  variableNames = ['probs', 'table', 'keyLengths'];

  constructor(outShape: [number, number], v: AttentionVariant, values: UniformValues) {
    super(outShape);
    this.declareUniforms(
        [...PLAN_UNIFORMS, 'outWidth', 'statsWidth', 'chunkTileStart', 'chunkTileEnd', 'slotStart', 'slotTexels',
         ...DROPOUT_UNIFORMS],
        values);
    this.userCode = `
      #define HEAD_TEXELS ${v.headTexels}
      ${texelHelpers()}
      ${planHelpers(v)}
      ${tileTexelHelpers(v.headTexels)}
      ${DROPOUT_HELPERS}
      void main() {
        int t = outputTexel();
        vec4 p = fetchTexel(probs, t, outWidth);
        int r, i, b, h, maskHead, keyRowBase, j, keyEnd;
        bool partial;
        if (tileTexel(t, r, i, b, h, maskHead, keyRowBase, j, partial, keyEnd)) p *= keepPairs(b, h, i, j);
        setOutput(p);
      }
    `;
  }
}
