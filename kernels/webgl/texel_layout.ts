/**
 * How the webgl attention kernels lay data out in textures.
 *
 * Every intermediate is a *texel array*: a flat sequence of RGBA32F texels stored in a packed tfjs texture of logical
 * shape [2 * lines, 2 * width] (tfjs packs 2×2 logical elements per texel, so the physical texture is lines × width
 * texels). Texel `t` lives at (x, y) = (t % width, t / width). The kernels address texels themselves (texelFetch),
 * which is far cheaper than tfjs's generic samplers, and the layout never depends on tfjs's reshaping rules: the
 * only thing asked of tfjs is that a 2-D packed [2L, 2W] tensor with L, W <= MAX_TEXTURE_SIZE gets the texture shape
 * [2L, 2W], which assertTexelLayout checks after each draw.
 *
 * Contents:
 *   row buffer   rows of a [rows, headDim] matrix in pairs: texel (pair p, c) holds rows 2p, 2p+1 × channels 2c, 2c+1
 *                as (r0c0, r0c1, r1c0, r1c1), at t = p * headTexels + c. Rows are ordered (batch, head, position)
 *                with the position padded to a multiple of the tile size, so a tile never straddles two heads.
 *   tile buffer  a chunk of P or dS: row pair p, slot s (the s-th key tile its query tile visits), key pair jp:
 *                (r0k0, r0k1, r1k0, r1k1) at t = p * slotTexels + s * TILE / 2 + jp.
 *   quad buffer  one value per row, four consecutive rows per texel (lse, D = rowsum(dO∘O) - dLse).
 *   tables       the schedule (see schedule_table.ts), one value per texel component.
 * `unit` is a run of texels a kernel reads with x + 1 steps: widths are multiples of it, so a unit never wraps.
 */
import type {TensorInfo} from '@tensorflow/tfjs-core';
import type {MathBackendWebGL} from '@tensorflow/tfjs-backend-webgl';

export interface TexelLayout {
  /** Texels in use. */
  readonly texels: number;
  /** Texels per line (a multiple of unit). */
  readonly width: number;
  readonly lines: number;
  /** The tfjs logical shape of the packed tensor that holds it. */
  readonly shape: [number, number];
}

export function texelLayout(texels: number, unit: number, maxTextureSize: number, what: string): TexelLayout {
  if (unit > maxTextureSize) {
    throw new Error(`webgl attention: ${what} needs runs of ${unit} texels, more than MAX_TEXTURE_SIZE ` +
                    `${maxTextureSize}`);
  }
  const count = Math.max(texels, 1);
  // As narrow as the texture height allows: fragments run in 2×2 quads, and a narrow layout keeps a quad's four
  // texels in neighbouring rows of the same tile, which walk the same key tiles (no divergent loops). Two texels at
  // least, so tfjs never treats the texture as a narrow one (its optional "squarify" flags).
  const units = Math.ceil(count / unit);
  const width = Math.max(2, unit * Math.ceil(units / maxTextureSize));
  const lines = Math.ceil(count / width);
  if (width > maxTextureSize || lines > maxTextureSize) {
    throw new Error(`webgl attention: ${what} needs ${count} texels, more than a ${maxTextureSize}² texture holds ` +
                    `(use smaller shapes or split the call)`);
  }
  return {texels: count, width, lines, shape: [2 * lines, 2 * width]};
}

export function roundUp(n: number, multiple: number): number {
  return Math.ceil(n / multiple) * multiple;
}

/**
 * Packs `values` (4 per texel, texel-major) into the row-major logical element order tfjs expects for a packed
 * [2L, 2W] tensor: element (2y + (k >> 1), 2x + (k & 1)) is component k of texel (x, y).
 */
export function toPackedElements(values: Float32Array, layout: TexelLayout): Float32Array {
  const out = new Float32Array(layout.shape[0] * layout.shape[1]);
  const rowLength = layout.shape[1];
  for (let t = 0; t * 4 < values.length; t++) {
    const y = Math.floor(t / layout.width), x = t - y * layout.width;
    for (let k = 0; k < 4 && 4 * t + k < values.length; k++) {
      out[(2 * y + (k >> 1)) * rowLength + 2 * x + (k & 1)] = values[4 * t + k];
    }
  }
  return out;
}

/** Throws if tfjs gave a texel-array tensor another texture shape than the one the kernels address. */
export function assertTexelLayout(backend: MathBackendWebGL, info: TensorInfo, layout: TexelLayout): void {
  const texShape = backend.texData.get(info.dataId).texShape;
  if (texShape == null || texShape[0] !== layout.shape[0] || texShape[1] !== layout.shape[1]) {
    throw new Error(`webgl attention: tfjs stored a [${layout.shape}] texel array as a [${texShape}] texture; ` +
                    `the kernels cannot address it (unexpected WEBGL_* texture flags?)`);
  }
}
