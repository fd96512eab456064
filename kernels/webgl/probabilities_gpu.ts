/**
 * P = exp(t − lse) of a chunk's scores, given its rows' lse (row_statistics_gpu.ts's TileStatsProgram):
 *   ProbabilitiesProgram       over one tile buffer (the path without eight float render targets)
 *   ProbabilityBlocksProgram   over ScoreBlocksProgram's eight targets, into eight targets of the same layout
 * maskedZero() (-0.0) where t is MASKED or the row sees nothing; NaN for a row whose lse is NaN or +Infinity.
 */
import {
  AttentionProgram, BLOCK_LAYOUT_UNIFORMS, blockNames, BlockProgram, PLAN_UNIFORMS, TILE, UniformValues,
} from './attention_program.js';
import {blockCoverVertices, PROBABILITY_HELPER, texelHelpers} from './glsl_helpers.js';

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
  variableNames = [...blockNames(), 'lse', 'table'];

  constructor(values: UniformValues) {
    super();
    this.declareUniforms([...PLAN_UNIFORMS, ...BLOCK_LAYOUT_UNIFORMS, 'outWidth', 'outLines', 'statsWidth',
                          'chunkTileStart', 'slotStart', 'slotEnd'], values);
    this.cover = blockCoverVertices(values.chunkTileEnd - values.chunkTileStart);
    const targets = [0, 1, 2, 3, 4, 5, 6, 7];
    this.userCode = `
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
    `;
  }
}
