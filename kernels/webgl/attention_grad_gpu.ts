/**
 * WebGL2 fragment programs of the attention backward pass (FlashAttention-2 style: P is recomputed from q, k and lse
 * chunk by chunk, never saved). With the forward's ScoresProgram and RowAccumulateProgram:
 *   PackRowStatsProgram   lse [batch, heads, seqQ] → quad buffer
 *   RowDeltaProgram       D = rowsum(dO∘O) − dLse → quad buffer
 *   ScoreGradProgram      dS = scale · P∘(dP − D) · softcap'(t), dP = dO·Vᵀ, for a chunk's tiles
 *   KeyAccumulateProgram  dK = dSᵀ·Q and dV = Pᵀ·dO: two keys × two channels per fragment, walking the query tiles
 *                         that visit the key tile (the schedule's columns; GQA sums the group's query heads)
 */
import {
  AttentionProgram, AttentionVariant, PLAN_UNIFORMS, planHelpers, texelHelpers, tileTexelHelpers, TILE,
  UniformValues, unroll,
} from './attention_gpu.js';

/** Copies a [batch, heads, seq] tensor (lse) into a quad buffer: rows (b, h, position padded to seqPad). */
export class PackRowStatsProgram extends AttentionProgram {
  variableNames = ['x'];
  packedInputs = false;
  enableShapeUniforms = false;  // tfjs's generic getter for x: see AttentionProgram

  constructor(outShape: [number, number], values: UniformValues) {
    super(outShape);
    this.declareUniforms(['outWidth', 'rowCount', 'seq', 'seqPad', 'heads'], values);
    this.userCode = `
      ${texelHelpers()}
      float element(int r) {
        int bh = r / seqPad;
        int i = r - bh * seqPad;
        int b = bh / heads;
        return (r < rowCount && i < seq) ? getX(b, bh - b * heads, i) : 0.0;
      }
      void main() {
        int r = 4 * outputTexel();
        setOutput(vec4(element(r), element(r + 1), element(r + 2), element(r + 3)));
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

/**
 * dS of a chunk's tiles (same layout as the P tile buffer it reads): scale · P∘(dO·Vᵀ − D), times the softcap
 * derivative 1 − (t / softcap)² with t = lse + log P. maskedZero() (-0.0) wherever P is (masked, padding, empty
 * rows); a visible dS of -0.0 is written +0.0, so the accumulations of partial tiles tell the two apart.
 */
export class ScoreGradProgram extends AttentionProgram {
  variableNames = ['dO', 'v', 'probs', 'delta', 'lse', 'table', 'keyLengths'];

  constructor(outShape: [number, number], v: AttentionVariant, values: UniformValues) {
    super(outShape);
    this.declareUniforms(
        [...PLAN_UNIFORMS, 'outWidth', 'dOWidth', 'vWidth', 'statsWidth', 'chunkTileStart', 'chunkTileEnd',
         'slotStart', 'slotTexels'],
        values);
    this.userCode = `
      #define HEAD_TEXELS ${v.headTexels}
      ${texelHelpers()}
      ${planHelpers(v)}
      ${tileTexelHelpers(v.headTexels)}
      void main() {
        int t = outputTexel();
        int r, i, b, h, maskHead, keyRowBase, j, keyEnd;
        bool partial;
        if (!tileTexel(t, r, i, b, h, maskHead, keyRowBase, j, partial, keyEnd)) {
          setOutput(vec4(maskedZero()));
          return;
        }
        vec4 p = fetchTexel(probs, t, outWidth);
        bvec4 live = isLive(p);
        if (!any(live)) {
          setOutput(vec4(maskedZero()));
          return;
        }
        bvec4 seen = greaterThan(p, vec4(0.0));
        vec4 dp = blockDot(dO, dOWidth, r, v, vWidth, keyRowBase + j);
        vec4 ds = p * (dp - rowPairStat(delta, r).xxyy);
        ${v.hasSoftcap ? `
        vec2 rowLse = rowPairStat(lse, r);
        vec4 safeLse = mix(vec4(0.0), rowLse.xxyy, seen);
        vec4 capped = (log(max(p, 1e-38)) + safeLse) / softcap;
        // A saturated score (|t| = softcap: an infinite q·k, or tanh rounding to ±1 as in the float64 reference) has
        // derivative exactly 0, so dS = 0 and 0 · Infinity stays NaN in dq, dk as in the reference. t = lse + log P
        // carries fp32 rounding of about 1e-6 · max(1, |lse|): within 4e-6 · max(1, |lse|) of ±softcap is saturated
        // (a derivative below ~8e-6 · max(1, |lse|) / softcap, set to 0).
        bvec4 saturated = lessThanEqual(abs(softcap - abs(capped * softcap)),
                                        4e-6 * max(vec4(1.0), abs(safeLse)));
        ds *= mix(1.0 - capped * capped, vec4(0.0), saturated);` : ''}
        // Visible entries keep their dS (0 · NaN = NaN included, as in the reference), as +0.0 where it is -0.0.
        uvec4 bits = floatBitsToUint(scale * ds);
        setOutput(mix(vec4(maskedZero()), uintBitsToFloat(bits * uvec4(notEqual(bits, uvec4(0x80000000u)))), live));
      }
    `;
  }
}

/**
 * Key-side accumulation over a chunk's tile buffer: out[key, c] = Σ_rows tiles[row, key] · rows[row, c] (dK from dS
 * and Q, dV from P and dO), for every key row; `previous` holds the sums of earlier chunks.
 */
export class KeyAccumulateProgram extends AttentionProgram {
  variableNames = ['tiles', 'rows', 'table', 'keyLengths'];

  constructor(outShape: [number, number], v: AttentionVariant, accumulate: boolean, values: UniformValues) {
    super(outShape);
    if (accumulate) this.variableNames.push('previous');
    this.declareUniforms(
        [...PLAN_UNIFORMS, 'outWidth', 'rowsWidth', 'tilesWidth', 'chunkTileStart', 'chunkTileEnd', 'slotStart',
         'slotEnd', 'slotTexels', 'keyRowCount'],
        values);
    const D = v.headTexels;
    this.userCode = `
      ${texelHelpers()}
      ${planHelpers(v)}
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
            if (slot < slotStart || slot >= slotEnd) continue;
            int localPair = (bh * numQueryTiles + queryTile - chunkTileStart) * ${TILE / 2};
            ivec2 gxy = texelXY(localPair * slotTexels + (slot - slotStart) * ${TILE / 2} + jp, tilesWidth);
            ivec2 rxy = texelXY(((bh * seqQPad + queryTile * ${TILE}) / 2) * ${D} + c, rowsWidth);
            // Partial tiles skip masked entries (maskedZero): a NaN or infinite q / dO of a row that cannot see the
            // key must not reach it through 0 · NaN. Full tiles have none and run the unguarded steps.
            // (Two loop trips of eight row pairs, not unrolled, keep the guarded copy small: a fully unrolled one
            // slowed full tiles on SwiftShader.)
            if (entry.z == 0.0 || (keyTile + 1) * ${TILE} > keyEnd) {
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
