/**
 * Row packing: the user's tensors into the kernels' texel arrays and back (texel_layout.ts).
 *   PackRowsProgram        q, k, v, dO [batch, seq, heads, headDim] → row buffer
 *   PackRowStatsProgram    lse [batch, heads, seq] → quad buffer
 *   UnpackRowsProgram      row buffer (or ValueBlocksProgram's eight O targets) → [batch, seq, heads, headDim]
 *   UnpackRowStatsProgram  quad buffer → [batch, heads, seq]
 * They read or write user tensors through tfjs's generated getters / output shapes, so shape uniforms are off (see
 * AttentionProgram).
 */
import {AttentionProgram, blockNames, channelGroups, UniformValues} from './attention_program.js';
import {texelHelpers} from './glsl_helpers.js';

/**
 * Copies a [batch, seq, heads, headDim] tensor (any tfjs layout) into a row buffer, rows (b, h, position) with the
 * position padded to seqPad and the channels to an even count with zeros.
 */
export class PackRowsProgram extends AttentionProgram {
  variableNames = ['x'];
  packedInputs = false;
  enableShapeUniforms = false;  // tfjs's generic getter for x: see AttentionProgram

  constructor(outShape: [number, number], headTexels: number, values: UniformValues) {
    super(outShape);
    this.declareUniforms(['outWidth', 'rowCount', 'seq', 'seqPad', 'heads', 'dim'], values);
    this.userCode = `
      ${texelHelpers()}
      float element(int r, int d) {
        int bh = r / seqPad;
        int i = r - bh * seqPad;
        int b = bh / heads;
        int h = bh - b * heads;
        return (r < rowCount && i < seq && d < dim) ? getX(b, i, h, d) : 0.0;
      }
      void main() {
        int t = outputTexel();
        int pair = t / ${headTexels};
        int c = t - pair * ${headTexels};
        int r = 2 * pair, d = 2 * c;
        setOutput(vec4(element(r, d), element(r, d + 1), element(r + 1, d), element(r + 1, d + 1)));
      }
    `;
  }
}

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

/** Reads a row buffer back into a [batch, seq, heads, headDim] tensor (the kernels' outputs). */
export class UnpackRowsProgram extends AttentionProgram {
  variableNames = ['rows'];
  packedOutput = false;
  enableShapeUniforms = false;  // a user-facing output shape: see AttentionProgram

  constructor(outShape: number[], headTexels: number, values: UniformValues, blocks = false) {
    super(outShape);
    // blocks: the rows come as ValueBlocksProgram's eight targets.
    if (blocks) this.variableNames = blockNames('rows');
    this.declareUniforms(['rowsWidth', 'seqPad', 'heads'], values);
    this.userCode = `
      ${texelHelpers(false)}
      ${blocks ? `
      vec4 rowTexel(int r, int d) {
        int f = (r / 4) * ${channelGroups(headTexels)} + d / 8;
        int target = 4 * ((r / 2) - 2 * (r / 4)) + (d / 2 - 4 * (d / 8));
        ivec2 xy = texelXY(f, rowsWidth);
        ${blockNames('rows').map((name, o) => `if (target == ${o}) return texelFetch(${name}, xy, 0);`).join('\n')}
        return vec4(0.0);
      }` : ''}
      void main() {
        ivec4 o = getOutputCoords();  // (b, i, h, d)
        int r = (o.x * heads + o.z) * seqPad + o.y;
        vec4 texel = ${blocks ? 'rowTexel(r, o.w)' : `fetchTexel(rows, (r / 2) * ${headTexels} + o.w / 2, rowsWidth)`};
        int lane = 2 * (r - 2 * (r / 2)) + (o.w - 2 * (o.w / 2));
        setOutput(texelLane(texel, lane));
      }
    `;
  }
}

/** Reads a quad buffer (one value per row) back into a [batch, heads, seq] tensor (lse). */
export class UnpackRowStatsProgram extends AttentionProgram {
  variableNames = ['stats'];
  packedOutput = false;
  enableShapeUniforms = false;  // a user-facing output shape: see AttentionProgram

  constructor(outShape: number[], values: UniformValues) {
    super(outShape);
    this.declareUniforms(['statsWidth', 'seqPad', 'heads'], values);
    this.userCode = `
      ${texelHelpers(false)}
      void main() {
        ivec3 o = getOutputCoords();  // (b, h, i)
        int r = (o.x * heads + o.y) * seqPad + o.z;
        vec4 texel = fetchTexel(stats, r / 4, statsWidth);
        int lane = r - 4 * (r / 4);
        setOutput(texelLane(texel, lane));
      }
    `;
  }
}
