/**
 * Per-key tables of the eight-target forward, as small texel arrays its programs read with texelFetch:
 *   KeyEndsProgram            keyLimit(b) of every batch (multi-target programs cannot use tfjs's getters)
 *   NonFiniteKeyTilesProgram  per key tile of V, whether it holds a NaN or an infinity (ValueBlocksProgram's fix-up)
 */
import {AttentionProgram, AttentionVariant, TILE, UniformValues} from './attention_program.js';
import {keyLimitBody, texelHelpers} from './glsl_helpers.js';

/** keyLimit(b) of every batch, four per texel (for multi-target programs, which cannot use tfjs's getters). */
export class KeyEndsProgram extends AttentionProgram {
  variableNames = ['keyLengths'];

  constructor(outShape: [number, number], v: AttentionVariant, values: UniformValues) {
    super(outShape);
    this.declareUniforms(['outWidth', 'seqK', 'batch'], values);
    this.userCode = `
      ${texelHelpers()}
      int keyLimit(int b) {
        if (b >= batch) return 0;
        ${keyLimitBody(v, false)}
      }
      void main() {
        int b = 4 * outputTexel();
        setOutput(vec4(keyLimit(b), keyLimit(b + 1), keyLimit(b + 2), keyLimit(b + 3)));
      }
    `;
  }
}

/**
 * Per key tile of a row buffer of values (global key tile kt = (b · kvHeads + hk) · numKeyTiles + tile, four per
 * texel): 1 when the tile holds a NaN or an infinity, else 0 (decided on bits). ValueBlocksProgram's fix-up pass
 * redoes only the fragments whose partial tiles have such values.
 */
export class NonFiniteKeyTilesProgram extends AttentionProgram {
  variableNames = ['values'];

  constructor(outShape: [number, number], headTexels: number, values: UniformValues) {
    super(outShape);
    this.declareUniforms(['outWidth', 'valuesWidth', 'keyTileCount'], values);
    const tileTexels = (TILE / 2) * headTexels;
    this.userCode = `
      ${texelHelpers()}
      float nonFinite(int tile) {
        if (tile >= keyTileCount) return 0.0;
        uvec4 largest = uvec4(0u);  // of the magnitudes' bit patterns: >= 0x7f800000 is an infinity or a NaN
        for (int e = 0; e < ${tileTexels}; e++) {
          largest = max(largest, floatBitsToUint(fetchTexel(values, tile * ${tileTexels} + e, valuesWidth)) &
                                     uvec4(0x7fffffffu));
        }
        return any(greaterThanEqual(largest, uvec4(0x7f800000u))) ? 1.0 : 0.0;
      }
      void main() {
        int tile = 4 * outputTexel();
        setOutput(vec4(nonFinite(tile), nonFinite(tile + 1), nonFinite(tile + 2), nonFinite(tile + 3)));
      }
    `;
  }
}
