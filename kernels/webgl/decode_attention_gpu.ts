/**
 * The split-K decode programs of the webgl backend (flash-decoding for a few query rows against a long key range;
 * the executor is attention_decode.ts). WebGL has no workgroups, so the work is cut into fragment passes whose
 * loops stay short (llvmpipe's 65,535-iteration limit, see attention_program.ts):
 *
 *   DecodePackProgram          q, k, v [batch, seq, heads, headDim] → rows of D4 = ⌈headDim / 4⌉ texels (4 channels
 *                              each). q's rows are ordered (b, kv head hk, rr) with rr = i · groupSize + (h mod
 *                              groupSize): every query row of a kv head's GQA group sits together, padded to row
 *                              groups of 4.
 *   DecodeScoresProgram        one fragment per (row group, key j): key j's row (D4 texels) dotted with the group's
 *                              4 query rows → their 4 scores in one texel. Each K element is read once per kv head
 *                              and row group of 4 (not once per query head, and no query padding to a 32-row tile).
 *   DecodeSplitStatsProgram    one fragment per (row group, split): the 4 rows' logsumexp over the split's visible
 *                              keys (two loops over at most splitLength keys).
 *   DecodeProbabilitiesProgram one fragment per (row group, key j): P = exp(s − lse of j's split), 0 where masked.
 *   DecodeSplitValuesProgram   one fragment per (row group, split, channel d): Σ_j P·V[j, d] over the split for the
 *                              4 rows (each V element read once per row group and split).
 *   DecodeCombineProgram       output [batch, seqQ, heads, headDim] and lse [batch, heads, seqQ]: the splits merged
 *                              in a fixed order (deterministic): L = logsumexp_s lse_s, O = Σ_s e^(lse_s − L) O_s.
 *
 * Visibility is a key range per row (window / causal / keyLengths / queryOffsets are all ranges), recomputed from
 * uniforms in each pass (rowKeyRanges), so masked keys are skipped, never multiplied (a NaN in a masked V stays out).
 */
import {AttentionProgram, UniformValues} from './attention_program.js';
import {texelHelpers, unroll} from './glsl_helpers.js';

/** Query rows per row group: one texel of scores holds the 4 rows' scores of one key. */
export const DECODE_GROUP_ROWS = 4;

/** Compile-time shape of the decode programs. */
export interface DecodeVariant {
  /** Texels per row (4 channels each). */
  d4: number;
  hasKeyLengths: boolean;
  hasQueryOffsets: boolean;
  hasSoftcap: boolean;
}

/** Uniforms of the row geometry and visibility (every pass past the packing declares them). */
const ROW_UNIFORMS = [
  'seqK', 'kvHeads', 'groupSize', 'rowsTotal', 'rowGroups', 'groupCount', 'windowLeft', 'windowRight', 'diagOffset',
  'offsetMin', 'offsetMax', 'splits', 'splitLength',
];

function keyInputs(v: DecodeVariant): string[] {
  return [...(v.hasKeyLengths ? ['keyLengths'] : []), ...(v.hasQueryOffsets ? ['queryOffsets'] : [])];
}

/**
 * rowKeyRanges(group, lo, hi): keys [lo, hi] each of the group's 4 rows sees (lo > hi: none; padding rows see none),
 * and the batch of the group. keyLengths / queryOffsets come through tfjs's packed 1-D getters (texel (2n, 2n + 1)).
 */
function rowRangeHelpers(v: DecodeVariant): string {
  const lane2 = (name: string) => `
      vec4 texel = get${name}(b);
      float value = (b - 2 * (b / 2)) == 0 ? texel.x : texel.y;`;
  return `
    int keyEndOf(int b) {
      ${v.hasKeyLengths ? `${lane2('KeyLengths')}
      return clamp(int(value), 0, seqK);` : 'return seqK;'}
    }
    int queryOffsetOf(int b) {
      ${v.hasQueryOffsets ? `${lane2('QueryOffsets')}
      return clamp(int(value), offsetMin, offsetMax);` : 'return diagOffset;'}
    }
    int batchOfGroup(int group) {
      return group / (rowGroups * kvHeads);
    }
    void rowKeyRanges(int group, out ivec4 lo, out ivec4 hi) {
      int b = batchOfGroup(group);
      int rg = group - rowGroups * (group / rowGroups);
      int offset = queryOffsetOf(b);
      int keyEnd = keyEndOf(b);
      ivec4 rr = ivec4(rg * 4) + ivec4(0, 1, 2, 3);
      ivec4 pos = ivec4(offset) + rr / groupSize;
      lo = windowLeft >= 0 ? max(ivec4(0), pos - windowLeft) : ivec4(0);
      hi = windowRight >= 0 ? min(ivec4(keyEnd - 1), pos + windowRight) : ivec4(keyEnd - 1);
      ivec4 padding = ivec4(greaterThanEqual(rr, ivec4(rowsTotal)));  // padding rows see [1, 0]: nothing
      lo = lo * (1 - padding) + padding;
      hi = hi * (1 - padding);
    }
    bvec4 seesKey(int j, ivec4 lo, ivec4 hi) {
      return both4(greaterThanEqual(ivec4(j), lo), lessThanEqual(ivec4(j), hi));
    }
    // Keys of split s that some row of the group sees: [start, end).
    ivec2 splitKeys(int s, ivec4 lo, ivec4 hi) {
      int start = max(s * splitLength, min(min(lo.x, lo.y), min(lo.z, lo.w)));
      int end = min(min((s + 1) * splitLength, seqK), max(max(hi.x, hi.y), max(hi.z, hi.w)) + 1);
      return ivec2(start, end);
    }
    bvec4 isNaN4(vec4 x) {
      uvec4 u = floatBitsToUint(x) & uvec4(0x7fffffffu);
      return greaterThan(u, uvec4(0x7f800000u));
    }`;
}

/** A decode pass's shader: the texel and row-range helpers, then main() running `body` on its texel t. */
function decodeShader(v: DecodeVariant, body: string): string {
  return `
      ${texelHelpers()}
      ${rowRangeHelpers(v)}
      void main() {
        int t = outputTexel();${body}
      }
    `;
}

/** GLSL: `body` for a real row group (group < groupCount, not padding), with its rows' key ranges in lo, hi. */
function inRowGroup(body: string): string {
  return `
        if (group < groupCount) {
          ivec4 lo, hi;
          rowKeyRanges(group, lo, hi);${body}
        }`;
}

/** Base of the decode programs: texel-array output (packed [2L, 2W]), tfjs getters only for keyLengths / offsets. */
abstract class DecodeProgram extends AttentionProgram {
  variableNames: string[] = [];
  // keyLengths / queryOffsets are user tensors read through tfjs's getters: see AttentionProgram.
  enableShapeUniforms = false;

  constructor(outShape: [number, number], names: string[], readonly variant: DecodeVariant, values: UniformValues,
              uniforms: string[]) {
    super(outShape);
    this.variableNames = [...names, ...keyInputs(variant)];
    this.declareUniforms(['outWidth', ...ROW_UNIFORMS, ...uniforms], values);
  }
}

/** q, k or v into D4-texel rows, rows (b, kvHead, rr): for k and v (groupSize 1) rr is the key position. */
export class DecodePackProgram extends AttentionProgram {
  variableNames = ['x'];
  packedInputs = false;
  enableShapeUniforms = false;  // tfjs's generic getter for x: see AttentionProgram

  constructor(outShape: [number, number], d4: number, values: UniformValues) {
    super(outShape);
    this.declareUniforms(['outWidth', 'rowsPad', 'rowsTotal', 'kvHeads', 'groupSize', 'dim', 'rowCount'], values);
    this.userCode = `
      ${texelHelpers()}
      float element(int bhk, int rr, int d) {
        int b = bhk / kvHeads;
        int h = (bhk - b * kvHeads) * groupSize + rr - groupSize * (rr / groupSize);
        return (rr < rowsTotal && d < dim) ? getX(b, rr / groupSize, h, d) : 0.0;
      }
      void main() {
        int t = outputTexel();
        int row = t / ${d4};
        int d = 4 * (t - row * ${d4});
        int bhk = row / rowsPad;
        int rr = row - bhk * rowsPad;
        if (row >= rowCount) {
          setOutput(vec4(0.0));
          return;
        }
        setOutput(vec4(element(bhk, rr, d), element(bhk, rr, d + 1), element(bhk, rr, d + 2), element(bhk, rr, d + 3)));
      }
    `;
  }
}

/** Scores s = scale · q·k (then softcap) of a row group's 4 rows × key j, one texel per (group, j). */
export class DecodeScoresProgram extends DecodeProgram {
  constructor(outShape: [number, number], v: DecodeVariant, values: UniformValues) {
    super(outShape, ['qRows', 'kRows'], v, values, ['qWidth', 'kWidth', 'scale', ...(v.hasSoftcap ? ['softcap'] : [])]);
    // softcap · tanh(s / softcap), tanh through exp(-2|x|) (finite, NaN stays NaN) and its odd series near 0, as
    // glsl_helpers.ts's capScores.
    const cap = v.hasSoftcap ? `
        vec4 x = s / softcap;
        vec4 e = exp(-2.0 * abs(x));
        vec4 x2 = x * x;
        vec4 series = x * (1.0 + x2 * (-1.0 / 3.0 + x2 * (2.0 / 15.0 + x2 * (-17.0 / 315.0))));
        s = softcap * mix(sign(x) * (1.0 - e) / (1.0 + e), series, lessThan(abs(x), vec4(0.125)));` : '';
    this.userCode = decodeShader(v, `
        int group = t / seqK;
        int j = t - group * seqK;
        if (group >= groupCount) {
          setOutput(vec4(0.0));
          return;
        }
        ivec4 lo, hi;
        rowKeyRanges(group, lo, hi);
        if (!any(seesKey(j, lo, hi))) {  // no row of the group sees key j: never read
          setOutput(vec4(0.0));
          return;
        }
        int bhk = group / rowGroups;
        int kBase = (bhk * seqK + j) * ${v.d4};
        int qBase = group * ${4 * v.d4};
        vec4 s = vec4(0.0);
        ${unroll(v.d4, (c) => `{
          vec4 k = fetchTexel(kRows, kBase + ${c}, kWidth);
          s += vec4(dot(fetchTexel(qRows, qBase + ${c}, qWidth), k),
                    dot(fetchTexel(qRows, qBase + ${v.d4 + c}, qWidth), k),
                    dot(fetchTexel(qRows, qBase + ${2 * v.d4 + c}, qWidth), k),
                    dot(fetchTexel(qRows, qBase + ${3 * v.d4 + c}, qWidth), k));
        }`)}
        s *= scale;${cap}
        setOutput(s);`);
  }
}

/** lse of each (row group, split): the 4 rows' logsumexp over the split's visible keys (−∞ where none). */
export class DecodeSplitStatsProgram extends DecodeProgram {
  constructor(outShape: [number, number], v: DecodeVariant, values: UniformValues) {
    super(outShape, ['scores'], v, values, ['scoresWidth']);
    this.userCode = decodeShader(v, `
        int group = t / splits;
        int s = t - group * splits;
        vec4 lse = vec4(negativeInfinity());${inRowGroup(`
          ivec2 keys = splitKeys(s, lo, hi);
          vec4 m = vec4(negativeInfinity());
          bvec4 nan = bvec4(false);
          for (int j = keys.x; j < keys.y; j++) {  // at most splitLength iterations
            vec4 x = fetchTexel(scores, group * seqK + j, scoresWidth);
            bvec4 sees = seesKey(j, lo, hi);
            nan = bvec4(uvec4(nan) | uvec4(both4(sees, isNaN4(x))));
            m = mix(m, x, both4(sees, greaterThan(x, m)));
          }
          bvec4 finiteMax = not(isNegativeInfinity(m));  // a row that sees only −∞ scores (or nothing) stays −∞
          vec4 l = vec4(0.0);
          for (int j = keys.x; j < keys.y; j++) {
            vec4 x = fetchTexel(scores, group * seqK + j, scoresWidth);
            l += mix(vec4(0.0), exp(x - m), both4(seesKey(j, lo, hi), finiteMax));
          }
          lse = mix(lse, m + log(l), both4(finiteMax, greaterThan(l, vec4(0.0))));
          lse = mix(lse, vec4(nanValue()), nan);`)}
        setOutput(lse);`);
  }
}

/** P = exp(s − lse of key j's split) of the 4 rows, 0 where a row does not see j (or its split's lse is −∞). */
export class DecodeProbabilitiesProgram extends DecodeProgram {
  constructor(outShape: [number, number], v: DecodeVariant, values: UniformValues) {
    super(outShape, ['scores', 'splitLse'], v, values, ['scoresWidth', 'lseWidth']);
    this.userCode = decodeShader(v, `
        int group = t / seqK;
        int j = t - group * seqK;
        vec4 p = vec4(0.0);${inRowGroup(`
          bvec4 sees = seesKey(j, lo, hi);
          if (any(sees)) {
            vec4 lse = fetchTexel(splitLse, group * splits + j / splitLength, lseWidth);
            vec4 x = fetchTexel(scores, t, scoresWidth);
            p = mix(vec4(0.0), exp(x - lse), both4(sees, not(isNegativeInfinity(lse))));
          }`)}
        setOutput(p);`);
  }
}

/** Σ_j P·V[j, d] of a (row group, split, channel d): the 4 rows' partial outputs (normalized to the split's lse). */
export class DecodeSplitValuesProgram extends DecodeProgram {
  constructor(outShape: [number, number], v: DecodeVariant, values: UniformValues) {
    super(outShape, ['probs', 'vRows'], v, values, ['probsWidth', 'vWidth', 'dim']);
    this.userCode = decodeShader(v, `
        int groupSplit = t / dim;
        int d = t - groupSplit * dim;
        int group = groupSplit / splits;
        int s = groupSplit - group * splits;
        vec4 acc = vec4(0.0);${inRowGroup(`
          ivec2 keys = splitKeys(s, lo, hi);
          int c = d / 4;
          int lane = d - 4 * c;
          vec4 pick = vec4(equal(ivec4(lane), ivec4(0, 1, 2, 3)));
          int vBase = (group / rowGroups) * seqK;
          for (int j = keys.x; j < keys.y; j++) {  // at most splitLength iterations
            vec4 p = fetchTexel(probs, group * seqK + j, probsWidth);
            float value = dot(fetchTexel(vRows, (vBase + j) * ${v.d4} + c, vWidth), pick);
            // Rows that do not see j skip it (select, not multiply: a masked NaN or Inf in v stays out).
            acc += mix(vec4(0.0), p * value, seesKey(j, lo, hi));
          }`)}
        setOutput(acc);`);
  }
}

/**
 * The splits of each row merged in split order: output [batch, seqQ, heads, headDim] (`what` 'output') or lse
 * [batch, heads, seqQ] ('lse'). A row that sees no key gets output 0 and lse −∞; a NaN split lse makes the row NaN.
 */
export class DecodeCombineProgram extends AttentionProgram {
  variableNames = ['splitLse', 'partials'];
  packedOutput = false;
  enableShapeUniforms = false;  // a user-facing output shape: see AttentionProgram

  constructor(outShape: number[], what: 'output' | 'lse', values: UniformValues) {
    super(outShape);
    this.declareUniforms(['heads', 'groupSize', 'kvHeads', 'rowGroups', 'splits', 'lseWidth', 'partialsWidth', 'dim'],
                         values);
    const coords = what === 'output' ? `
        ivec4 o = getOutputCoords();  // (b, i, h, d)
        int b = o.x, i = o.y, h = o.z, d = o.w;` : `
        ivec3 o = getOutputCoords();  // (b, h, i)
        int b = o.x, h = o.y, i = o.z, d = 0;`;
    // The marker names the program in tfjs's program cache (test/browser/decode_page_entry.ts looks for it).
    this.userCode = `
      // webgl attention decode: combine ${what}
      ${texelHelpers(false)}
      void main() {
        ${coords}
        int hk = h / groupSize;
        int rr = i * groupSize + h - hk * groupSize;
        int group = (b * kvHeads + hk) * rowGroups + rr / 4;
        int lane = rr - 4 * (rr / 4);
        float m = negativeInfinity();
        bool nan = false;
        for (int s = 0; s < splits; s++) {
          float x = texelLane(fetchTexel(splitLse, group * splits + s, lseWidth), lane);
          nan = nan || (floatBitsToUint(x) & 0x7fffffffu) > 0x7f800000u;
          if (x > m) m = x;
        }
        float l = 0.0, acc = 0.0;
        if (m != negativeInfinity()) {
          for (int s = 0; s < splits; s++) {
            float x = texelLane(fetchTexel(splitLse, group * splits + s, lseWidth), lane);
            if (x != negativeInfinity()) {
              float w = exp(x - m);
              l += w;
              ${what === 'output' ?
                  'acc += w * texelLane(fetchTexel(partials, (group * splits + s) * dim + d, partialsWidth), lane);' :
                  ''}
            }
          }
        }
        float result = ${what === 'output' ? 'l > 0.0 ? acc / l : 0.0' : 'l > 0.0 ? m + log(l) : negativeInfinity()'};
        setOutput(nan ? nanValue() : result);
      }
    `;
  }
}
