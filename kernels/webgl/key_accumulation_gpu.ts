/**
 * Key-side accumulation of the backward:
 *   KeyAccumulateProgram  dK = dSᵀ·Q and dV = Pᵀ·dO: two keys × two channels per fragment, walking the query tiles
 *                         that visit the key tile (the schedule's columns; GQA sums the group's query heads)
 */
import {hiddenTileSkip} from './attention_options.js';
import {AttentionProgram, AttentionVariant, PLAN_UNIFORMS, TILE, UniformValues} from './attention_program.js';
import {planHelpers, texelHelpers, unroll} from './glsl_helpers.js';

/**
 * Key-side accumulation over a chunk's tile buffer: out[key, c] = Σ_rows tiles[row, key] · rows[row, c] (dK from dS
 * and Q, dV from P and dO), for every key row; `previous` holds the sums of earlier chunks. Tiles the data hide
 * (hiddenTileSkip: every entry masked, adding +0) are skipped.
 */
export class KeyAccumulateProgram extends AttentionProgram {
  variableNames = ['tiles', 'rows', 'table', 'keyLengths'];

  constructor(outShape: [number, number], v: AttentionVariant, accumulate: boolean, values: UniformValues) {
    super(outShape);
    if (accumulate) this.variableNames.push('previous');
    const hidden = hiddenTileSkip(v.options);
    this.variableNames.push(...hidden.inputs);
    this.declareUniforms(
        [...PLAN_UNIFORMS, 'outWidth', 'rowsWidth', 'tilesWidth', 'chunkTileStart', 'chunkTileEnd', 'slotStart',
         'slotEnd', 'slotTexels', 'keyRowCount', ...hidden.uniforms],
        values);
    const D = v.headTexels;
    this.userCode = `
      ${texelHelpers()}
      ${planHelpers(v)}${hidden.helpers}
      vec4 colEntry(int e) {
        return tableTexel(colEntryBase + e);
      }
      void main() {
        int t = outputTexel();
        int pair = t / ${D};
        int c = t - pair * ${D};
        int j0 = 2 * pair;
        vec4 acc = ${accumulate ? 'fetchTexel(previous, t, outWidth)' : 'vec4(0.0)'};
        int bhk = j0 / seqKPad;
        int jl = j0 - bhk * seqKPad;
        int keyTile = jl / ${TILE};
        int jp = (jl - keyTile * ${TILE}) / 2;
        int b = bhk / kvHeads;
        int hk = bhk - b * kvHeads;
        if (j0 >= keyRowCount || keyTile * ${TILE} >= keyLimit(b)) {
          setOutput(acc);
          return;
        }
        int keyEnd = keyLimit(b);
        int stepX = slotTexels - tilesWidth * (slotTexels / tilesWidth), stepY = slotTexels / tilesWidth;
        vec4 sum = vec4(0.0), grad, x;
        bvec4 live;
        for (int g = 0; g < groupSize; g++) {
          int h = hk * groupSize + g;
          int bh = b * heads + h;
          int tileLo = max(0, chunkTileStart - bh * numQueryTiles);
          int tileHi = min(numQueryTiles, chunkTileEnd - bh * numQueryTiles);
          if (tileLo >= tileHi) continue;
          int maskHead = h - maskHeads * (h / maskHeads);
          vec4 header = tableTexel(colHeaderBase + maskHead * numKeyTiles + keyTile);
          int first = int(header.x), count = int(header.y);
          // First entry whose query tile is >= tileLo (entries ascend): binary search, <= 20 steps.
          int lo = 0, hi = count;
          while (lo < hi) {
            int mid = (lo + hi) / 2;
            if (int(colEntry(first + mid).x) < tileLo) lo = mid + 1; else hi = mid;
          }
          for (int e = lo; e < count; e++) {
            vec4 entry = colEntry(first + e);
            int queryTile = int(entry.x), slot = int(entry.y);
            if (queryTile >= tileHi) break;
            if (slot < slotStart || slot >= slotEnd) continue;${hidden.skip('queryTile', 'keyTile')}
            int localPair = (bh * numQueryTiles + queryTile - chunkTileStart) * ${TILE / 2};
            ivec2 gxy = texelXY(localPair * slotTexels + (slot - slotStart) * ${TILE / 2} + jp, tilesWidth);
            ivec2 rxy = texelXY(((bh * seqQPad + queryTile * ${TILE}) / 2) * ${D} + c, rowsWidth);
            // Partial tiles skip masked entries (maskedZero): a NaN or infinite q / dO of a row that cannot see the
            // key must not reach it through 0 · NaN. Full tiles have none and run the unguarded steps.
            // (Two loop trips of eight row pairs, not unrolled, keep the guarded copy small: a fully unrolled one
            // slowed full tiles on SwiftShader.)
            if (entry.z == 0.0 || (keyTile + 1) * ${TILE} > keyEnd${hidden.partial('queryTile', 'keyTile')}) {
              for (int rh = 0; rh < 2; rh++) {
              ${unroll(TILE / 4, (rp) => `
              grad = texelFetch(tiles, gxy, 0);
              x = texelFetch(rows, rxy + ivec2((${TILE / 4} * rh + ${rp}) * ${D}, 0), 0);
              live = isLive(grad);
              sum += mix(vec4(0.0), grad.xxyy * x.xyxy, live.xxyy) + mix(vec4(0.0), grad.zzww * x.zwzw, live.zzww);
              gxy += ivec2(stepX, stepY);
              if (gxy.x >= tilesWidth) gxy += ivec2(-tilesWidth, 1);`)}
              }
            } else {
              ${unroll(TILE / 2, (rp) => `
              grad = texelFetch(tiles, gxy, 0);                          // (r0k0, r0k1, r1k0, r1k1)
              x = texelFetch(rows, rxy + ivec2(${rp * D}, 0), 0);        // (r0c0, r0c1, r1c0, r1c1)
              sum += grad.xxyy * x.xyxy + grad.zzww * x.zwzw;
              gxy += ivec2(stepX, stepY);
              if (gxy.x >= tilesWidth) gxy += ivec2(-tilesWidth, 1);`)}
            }
          }
        }
        setOutput(acc + sum);
      }
    `;
  }
}
