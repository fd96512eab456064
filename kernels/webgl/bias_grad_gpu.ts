/**
 * The gradient of an additive bias:
 *   BiasGradProgram  dBias[p, i, j] = Σ over the (b, h) of plane p (the bias's broadcast axes) of dT[b, h, i, j],
 *                    dT = P∘(Z·dP − D) the gradient of the final score (before the softcap / scale chain)
 */
import {
  DROPOUT_HELPERS, DROPOUT_UNIFORMS, scoreOptionInputs, scoreOptionUniforms,
} from './attention_options.js';
import {AttentionProgram, AttentionVariant, PLAN_UNIFORMS, UniformValues} from './attention_program.js';
import {planHelpers, texelHelpers, unroll} from './glsl_helpers.js';

/**
 * dBias in the bias's own shape ([seqQ, seqK], [B | 1, seqQ, seqK] or [B | 1, H | 1, seqQ, seqK]), one element per
 * fragment: for each (b, h) the plane broadcasts over — batches in increasing order, then heads (a fixed order, so
 * the sum is deterministic) — it recomputes the score t, P = exp(t − lse) and dP = dO·vᵀ (row buffers), and adds
 * P·(Z·dP − D) where the entry is visible. Rows that see nothing and masked entries add nothing.
 */
export class BiasGradProgram extends AttentionProgram {
  variableNames: string[];
  packedOutput = false;
  enableShapeUniforms = false;  // a user-facing output shape: see AttentionProgram

  constructor(outShape: number[], v: AttentionVariant, values: UniformValues) {
    super(outShape);
    const dropout = v.options?.dropout === true;
    this.variableNames = ['q', 'k', 'dO', 'v', 'lse', 'delta', 'table', 'keyLengths', ...scoreOptionInputs(v.options)];
    this.declareUniforms(
        [...PLAN_UNIFORMS, 'qWidth', 'kWidth', 'statsWidth', 'batch', 'biasBatchPlanes', 'biasHeadPlanes',
         ...scoreOptionUniforms(v.options).filter((u) => u !== 'biasBatchPlanes' && u !== 'biasHeadPlanes'),
         ...(dropout ? DROPOUT_UNIFORMS : [])],
        values);
    const D = v.headTexels;
    const coords = outShape.length === 2 ? 'ivec2 o = getOutputCoords(); int p = 0, i = o.x, j = o.y;' :
        outShape.length === 3 ? 'ivec3 o = getOutputCoords(); int p = o.x, i = o.y, j = o.z;' :
                                `ivec4 o = getOutputCoords(); int p = o.x * ${outShape[1]} + o.y, i = o.z, j = o.w;`;
    this.userCode = `
      ${texelHelpers(false)}
      ${planHelpers(v, false, true)}${dropout ? DROPOUT_HELPERS : ''}
      // Dot product of row r of row buffer a with row j of row buffer b.
      float rowDot(sampler2D a, int aWidth, int r, sampler2D b, int bWidth, int j) {
        ivec2 axy = texelXY((r / 2) * ${D}, aWidth), bxy = texelXY((j / 2) * ${D}, bWidth);
        bool aHigh = r - 2 * (r / 2) == 1, bHigh = j - 2 * (j / 2) == 1;
        float acc = 0.0;
        vec4 x, y;
        ${unroll(D, (c) => `
        x = texelFetch(a, axy + ivec2(${c}, 0), 0);
        y = texelFetch(b, bxy + ivec2(${c}, 0), 0);
        acc += dot(aHigh ? x.zw : x.xy, bHigh ? y.zw : y.xy);`)}
        return acc;
      }
      float rowStat(sampler2D s, int r) {
        return texelLane(fetchTexel(s, r / 4, statsWidth), r - 4 * (r / 4));
      }
      void main() {
        ${coords}
        // The (b, h) of plane p: one batch unless the batch axis is broadcast, one head unless the head axis is.
        int bFirst = 0, bEnd = batch, rest = p;
        if (biasBatchPlanes > 0) {
          bFirst = p / biasBatchPlanes;
          bEnd = bFirst + 1;
          rest = p - bFirst * biasBatchPlanes;
        }
        int hFirst = 0, hEnd = heads;
        if (biasHeadPlanes > 0) {
          hFirst = rest;
          hEnd = rest + 1;
        }
        float sum = 0.0;
        for (int b = bFirst; b < bEnd; b++) {
          int keyEnd = keyLimit(b);
          for (int h = hFirst; h < hEnd; h++) {
            int maskHead = h - maskHeads * (h / maskHeads);
            if (!isVisible(i, j, maskHead, keyEnd, b, h)) continue;
            int r = (b * heads + h) * seqQPad + i;
            float rowLse = rowStat(lse, r);
            if (isNegativeInfinity(vec4(rowLse)).x) continue;  // the row sees nothing
            int keyRow = (b * kvHeads + h / groupSize) * seqKPad + j;
            float t = capScores(vec4(scale * rowDot(q, qWidth, r, k, kWidth, keyRow))).x + scoreBias(b, h, i, j);
            if (isNegativeInfinity(vec4(t)).x) continue;  // a -Infinity bias masks
            float dp = rowDot(dO, qWidth, r, v, kWidth, keyRow)${dropout ? ' * keepFactor(b, h, i, j)' : ''};
            sum += exp(t - rowLse) * (dp - rowStat(delta, r));
          }
        }
        setOutput(sum);
      }
    `;
  }
}
