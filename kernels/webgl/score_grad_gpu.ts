/**
 * The backward's score gradient (FlashAttention-2 style: P is recomputed chunk by chunk by scores_gpu.ts's
 * ScoresProgram, never saved):
 *   ScoreGradProgram  dS = scale · P∘(dP − D) · softcap'(t), dP = dO·Vᵀ, for a chunk's tiles
 */
import {AttentionProgram, AttentionVariant, PLAN_UNIFORMS, UniformValues} from './attention_program.js';
import {planHelpers, texelHelpers, tileTexelHelpers} from './glsl_helpers.js';

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
