/**
 * The option inputs' texel arrays (attention_options.ts says how the programs read them):
 *   PackFlatProgram   a small int / float tensor (queryOffsets, alibiSlopes, queryIds, keyIds), four values per texel
 *   PackPairsProgram  a mask or bias in its own shape, one texel per 2 × 2 block of (query, key) of each plane
 *   MaskTilesProgram  per (mask plane, query tile, key tile): whether the mask hides all, some or none of the tile
 *   IdRangesProgram   per (batch, tile): the [min, max] segment id
 * They read user tensors through tfjs's generated getters (the first two), so shape uniforms are off there (see
 * AttentionProgram).
 */
import {AttentionProgram, TILE, UniformValues} from './attention_program.js';
import {texelHelpers} from './glsl_helpers.js';

/** GLSL getX(...) of element e of a tensor of `shape` read by tfjs's unpacked getter (row-major). */
function flatGetter(shape: number[], e: string): string {
  if (shape.length === 1) return `getX(${e})`;
  if (shape.length === 2) return `getX(${e} / ${shape[1]}, ${e} - ${shape[1]} * (${e} / ${shape[1]}))`;
  throw new Error(`webgl attention: no flat getter for rank ${shape.length}`);
}

/** Copies a small rank-1 or rank-2 tensor (any dtype) into a texel array, four values per texel, row-major. */
export class PackFlatProgram extends AttentionProgram {
  variableNames = ['x'];
  packedInputs = false;
  enableShapeUniforms = false;  // tfjs's generic getter for x: see AttentionProgram

  constructor(outShape: [number, number], xShape: number[], values: UniformValues) {
    super(outShape);
    this.declareUniforms(['outWidth', 'count'], values);
    this.userCode = `
      ${texelHelpers()}
      float element(int e) {
        return e < count ? ${flatGetter(xShape, 'e')} : 0.0;
      }
      void main() {
        int e = 4 * outputTexel();
        setOutput(vec4(element(e), element(e + 1), element(e + 2), element(e + 3)));
      }
    `;
  }
}

/**
 * Copies a mask or bias ([seqQ, seqK], [B | 1, seqQ, seqK] or [B | 1, H | 1, seqQ, seqK]: its own shape, not
 * broadcast) into a texel array: plane p (the leading axes, row-major), 2 × 2 block (i2, j2) at texel
 * (p · halfQ + i2) · halfK + j2 as (r0k0, r0k1, r1k0, r1k1); entries past seqQ / seqK are 0.
 */
export class PackPairsProgram extends AttentionProgram {
  variableNames = ['x'];
  packedInputs = false;
  enableShapeUniforms = false;  // tfjs's generic getter for x: see AttentionProgram

  constructor(outShape: [number, number], xShape: number[], values: UniformValues) {
    super(outShape);
    this.declareUniforms(['outWidth', 'planes', 'seqQ', 'seqK', 'halfQ', 'halfK'], values);
    const get = xShape.length === 2 ? 'getX(i, j)' : xShape.length === 3 ? 'getX(p, i, j)' :
        `getX(p / ${xShape[1]}, p - ${xShape[1]} * (p / ${xShape[1]}), i, j)`;
    this.userCode = `
      ${texelHelpers()}
      float element(int p, int i, int j) {
        return p < planes && i < seqQ && j < seqK ? ${get} : 0.0;
      }
      void main() {
        int t = outputTexel();
        int p = t / (halfQ * halfK);
        int rest = t - p * halfQ * halfK;
        int i = 2 * (rest / halfK), j = 2 * (rest - halfK * (rest / halfK));
        setOutput(vec4(element(p, i, j), element(p, i, j + 1), element(p, i + 1, j), element(p, i + 1, j + 1)));
      }
    `;
  }
}

/**
 * Per (mask plane, query tile, key tile), four per texel: 0 when the mask hides every entry of the tile (within
 * seqQ × seqK), 1 when it hides some, 2 when none. Reads the packed mask (PackPairsProgram), one 2 × 2 block per step.
 */
export class MaskTilesProgram extends AttentionProgram {
  variableNames = ['maskPairs'];

  constructor(outShape: [number, number], values: UniformValues) {
    super(outShape);
    this.declareUniforms(['outWidth', 'count', 'numQueryTiles', 'numKeyTiles', 'seqQ', 'seqK', 'halfQ', 'halfK',
                          'maskWidth'], values);
    this.userCode = `
      ${texelHelpers()}
      float tileState(int t) {
        if (t >= count) return 0.0;
        int perPlane = numQueryTiles * numKeyTiles;
        int p = t / perPlane;
        int qt = (t - p * perPlane) / numKeyTiles;
        int kt = t - p * perPlane - qt * numKeyTiles;
        bool anyVisible = false, anyHidden = false;
        for (int ip = 0; ip < ${TILE / 2}; ip++) {
          int i = qt * ${TILE} + 2 * ip;
          if (i >= seqQ) break;
          for (int jp = 0; jp < ${TILE / 2}; jp++) {
            int j = kt * ${TILE} + 2 * jp;
            if (j >= seqK) break;
            // Attends: non-zero and not NaN (as maskAllows), decided on bits.
            uvec4 bits = floatBitsToUint(fetchTexel(maskPairs, (p * halfQ + i / 2) * halfK + j / 2, maskWidth)) &
                         uvec4(0x7fffffffu);
            bvec4 on = both4(notEqual(bits, uvec4(0u)), lessThanEqual(bits, uvec4(0x7f800000u)));
            bvec4 inside = bvec4(true, j + 1 < seqK, i + 1 < seqQ, i + 1 < seqQ && j + 1 < seqK);
            anyVisible = anyVisible || any(both4(on, inside));
            anyHidden = anyHidden || any(both4(not(on), inside));
          }
        }
        return anyVisible ? (anyHidden ? 1.0 : 2.0) : 0.0;
      }
      void main() {
        int t = 4 * outputTexel();
        setOutput(vec4(tileState(t), tileState(t + 1), tileState(t + 2), tileState(t + 3)));
      }
    `;
  }
}

/** [min, max] of the segment ids of every (batch, tile of TILE positions), two tiles per texel. */
export class IdRangesProgram extends AttentionProgram {
  variableNames = ['ids'];

  constructor(outShape: [number, number], values: UniformValues) {
    super(outShape);
    this.declareUniforms(['outWidth', 'count', 'tiles', 'seq', 'idsWidth'], values);
    this.userCode = `
      ${texelHelpers()}
      vec2 idRange(int tile) {
        if (tile >= count) return vec2(0.0);
        int b = tile / tiles;
        int first = (tile - b * tiles) * ${TILE};
        float lo = 3.0e38, hi = -3.0e38;
        for (int e = 0; e < ${TILE}; e++) {
          if (first + e >= seq) break;
          int index = b * seq + first + e;
          float id = texelLane(fetchTexel(ids, index / 4, idsWidth), index - 4 * (index / 4));
          lo = min(lo, id);
          hi = max(hi, id);
        }
        return vec2(lo, hi);
      }
      void main() {
        int tile = 2 * outputTexel();
        setOutput(vec4(idRange(tile), idRange(tile + 1)));
      }
    `;
  }
}
