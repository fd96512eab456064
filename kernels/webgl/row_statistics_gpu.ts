/**
 * Row statistics, one value per query row in a quad buffer (four rows per texel):
 *   TileStatsProgram  lse of a chunk's rows from its scores (online logsumexp, no dot products), merged over slot
 *                     ranges by logaddexp
 *   RowDeltaProgram   the backward's D = rowsum(dO∘O) − dLse
 */
import {
  AttentionProgram, AttentionVariant, BLOCK_LAYOUT_UNIFORMS, blockNames, PLAN_UNIFORMS, TILE, UniformValues,
} from './attention_program.js';
import {hiddenTileSkip} from './attention_options.js';
import {BLOCK_XY_HELPER, headOfRow, locateQueryRow, planHelpers, texelHelpers, unroll} from './glsl_helpers.js';

/**
 * lse of four consecutive query rows per fragment (a quad buffer) from a chunk's tile buffer of scores (MASKED where
 * invisible): rows of the chunk's query tiles [chunkTileStart, chunkTileEnd) over its slot range. With `previous`,
 * other rows are copied from it and, when mergePrevious is 1, the chunk's rows merge it in (logaddexp over slot
 * ranges); without it other rows are -Infinity. Reads one texel per two rows and two keys: no dot products. Tiles
 * the data hide (hiddenTileSkip: their scores are all MASKED, which add nothing) are skipped.
 */
export class TileStatsProgram extends AttentionProgram {
  variableNames = ['tiles', 'table', 'keyLengths'];

  constructor(outShape: [number, number], v: AttentionVariant, accumulate: boolean, values: UniformValues,
              blocks = false) {
    super(outShape);
    // blocks: the scores come as ScoreBlocksProgram's eight targets (block layout) instead of one tile buffer.
    if (blocks) this.variableNames = [...blockNames(), 'table', 'keyLengths'];
    if (accumulate) this.variableNames.push('previous');
    const hidden = hiddenTileSkip(v.options);
    this.variableNames.push(...hidden.inputs);
    this.declareUniforms(
        [...PLAN_UNIFORMS, 'outWidth', 'chunkTileStart', 'chunkTileEnd', 'slotStart', 'slotEnd', 'rowCount',
         ...(blocks ? BLOCK_LAYOUT_UNIFORMS : ['tilesWidth', 'slotTexels']), ...(accumulate ? ['mergePrevious'] : []),
         ...hidden.uniforms],
        values);
    this.userCode = `
      ${texelHelpers()}
      ${planHelpers(v)}${hidden.helpers}
      ${blocks ? BLOCK_XY_HELPER : ''}
      void main() {
        int t = outputTexel();
        int r = 4 * t;  // first of the four rows (two row pairs of the tile buffer)
        ${locateQueryRow('row')}
        int rowTile = bh * numQueryTiles + queryTile;
        vec4 previousLse = ${accumulate ? 'fetchTexel(previous, t, outWidth)' : 'vec4(negativeInfinity())'};
        if (r >= rowCount || rowTile < chunkTileStart || rowTile >= chunkTileEnd) {
          setOutput(previousLse);
          return;
        }
        ${headOfRow({keyEnd: true})}
        int localPair = (r - chunkTileStart * ${TILE}) / 2;

        vec4 m = vec4(MASKED);  // running max of the four rows
        vec4 l = vec4(0.0);     // running sum of exp(t - m)
        vec4 header = tableTexel(maskHead * numQueryTiles + queryTile);
        int firstSlot = int(header.x), slots = min(int(header.y), slotEnd);
        for (int s = slotStart; s < slots; s++) {
          ${!hidden.active ?
              `if (int(tableTexel(rowSlotBase + firstSlot + s).x) * ${TILE} >= keyEnd) break;  // the rest is padding` : `
          int keyTile = int(tableTexel(rowSlotBase + firstSlot + s).x);
          if (keyTile * ${TILE} >= keyEnd) break;  // the rest is padding${hidden.skip('queryTile', 'keyTile')}`}
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

/** D = rowsum(dO∘O) − dLse per query row, into a quad buffer (0 for padding rows). */
export class RowDeltaProgram extends AttentionProgram {
  variableNames = ['o', 'dO', 'dLse'];
  packedInputs = false;
  enableShapeUniforms = false;  // tfjs's generic getters: see AttentionProgram

  constructor(outShape: [number, number], values: UniformValues) {
    super(outShape);
    this.declareUniforms(['outWidth', 'rowCount', 'seq', 'seqPad', 'heads', 'dim'], values);
    this.userCode = `
      ${texelHelpers()}
      float delta(int r) {
        int bh = r / seqPad;
        int i = r - bh * seqPad;
        int b = bh / heads;
        int h = bh - b * heads;
        if (r >= rowCount || i >= seq) return 0.0;
        float sum = 0.0;
        for (int d = 0; d < dim; d++) sum += getO(b, i, h, d) * getDO(b, i, h, d);
        return sum - getDLse(b, h, i);
      }
      void main() {
        int r = 4 * outputTexel();
        setOutput(vec4(delta(r), delta(r + 1), delta(r + 2), delta(r + 3)));
      }
    `;
  }
}
