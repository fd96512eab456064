/**
 * rotaryEmbedding: RoFormer's rotary position embedding with keras_hub's RotaryEmbedding semantics, as a composition
 * of tfjs ops (differentiable, every backend).
 *
 * Why no fused kernel: the op is elementwise over x (two multiplies and an add per output, plus a split and a concat);
 * next to the attention and the q/k projections it runs on, it is a few percent of a layer's time, and a fused kernel
 * would save only the extra passes over x (memory traffic of a tensor the size of q). The cos/sin tables are
 * [seq, headDim/2] (or [batch, seq, headDim/2]) and computed once per call: in float64 on the host when the
 * positions are numbers; on the device for tensor positions, with the angle reduced modulo 2π and cos/sin evaluated as
 * polynomials (GPU sin/cos are only ~2^-11 accurate), within ~1e-6 of float64 for positions below 2^13.
 */
import * as tf from '@tensorflow/tfjs-core';

export interface RotaryEmbeddingOptions {
  /**
   * Position of every sequence index: number[] / Float32Array / Int32Array [seq], or a tensor [seq] or
   * [batch, seq] (any numeric dtype; batch is axis 0 of x). Excludes startIndex.
   */
  positions?: number[] | Float32Array | Int32Array | tf.Tensor;
  /**
   * Positions are startIndex + 0 … seq − 1 (cached decoding: the index of the first new token). A number (default 0)
   * or a tensor: a scalar, or [batch] for a different start per batch element (batch is axis 0 of x).
   */
  startIndex?: number | tf.Tensor;
  /** The longest wavelength of the sine/cosine curves (default 10000, keras_hub's max_wavelength). */
  maxWavelength?: number;
  /** Positions are divided by it (linear RoPE scaling; default 1, keras_hub's scaling_factor). */
  scalingFactor?: number;
  /** Axis of x that indexes positions (default 1; negative counts from the end). */
  sequenceAxis?: number;
  /** Axis of x rotated (default -1: the last); its size must be even. */
  featureAxis?: number;
}

const KNOWN = ['positions', 'startIndex', 'maxWavelength', 'scalingFactor', 'sequenceAxis', 'featureAxis'];

function describe(x: unknown): string {
  if (x instanceof tf.Tensor) return `a ${x.dtype} tensor of shape [${x.shape.join(', ')}]`;
  return x === null ? 'null' : Array.isArray(x) ? 'an array' : typeof x;
}

function checkAxis(name: string, axis: unknown, fallback: number, rank: number): number {
  if (axis === undefined) axis = fallback;
  if (!Number.isInteger(axis) || (axis as number) < -rank || (axis as number) >= rank) {
    throw new Error(`${name} must be an integer axis of x (rank ${rank}), got ${String(axis)}`);
  }
  return ((axis as number) + rank) % rank;
}

function checkPositiveNumber(name: string, value: unknown, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
    throw new Error(`${name} must be a finite number > 0, got ${String(value)}`);
  }
  return value;
}

/** 1 / maxWavelength^(2i / features) for i < features / 2 (keras_hub's inverse frequencies), in float64. */
export function rotaryInverseFrequencies(features: number, maxWavelength: number): Float64Array {
  const half = features / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(maxWavelength, (2 * i) / features);
  return inv;
}

/** x truncated to its leading `bits` significant bits (so that small integers times it are exact in float32). */
function leadingBits(x: number, bits: number): number {
  if (x === 0) return 0;
  const step = Math.pow(2, Math.floor(Math.log2(Math.abs(x))) - bits + 1);
  return Math.trunc(x / step) * step;
}

const TWO_PI = 2 * Math.PI;
const TWO_PI_HI = leadingBits(TWO_PI, 12);
const TWO_PI_LO = Math.fround(TWO_PI - TWO_PI_HI);

/**
 * position · frequency reduced to about [−π, π], accurate to ~1e-6 for integer positions below 2^13 (Cody–Waite):
 * frequency = hi + lo with hi of 11 significant bits, so position · hi is exact in float32; k = round(θ / 2π) and
 * k · 2π_hi (12 bits) are exact too, leaving only the rounding of the small terms.
 */
function reducedAngles(positions: tf.Tensor, frequencies: Float64Array): tf.Tensor {
  const hi = frequencies.map((f) => leadingBits(f, 11));
  const lo = frequencies.map((f, i) => Math.fround(f - hi[i]));
  const thetaHi = tf.mul(positions, tf.tensor1d(Float32Array.from(hi)));
  const thetaLo = tf.mul(positions, tf.tensor1d(Float32Array.from(lo)));
  const turns = tf.round(tf.mul(thetaHi, 1 / TWO_PI));
  return tf.add(tf.sub(tf.sub(thetaHi, tf.mul(turns, TWO_PI_HI)), tf.mul(turns, TWO_PI_LO)), thetaLo);
}

/** Taylor coefficients of sin (x, x³, … x¹⁷) and cos (1, x², … x¹⁸): below 3e-7 in float32 on [−π, π]. */
const SIN_TERMS = Array.from({length: 9}, (_, i) => (i % 2 ? -1 : 1) / factorial(2 * i + 1));
const COS_TERMS = Array.from({length: 10}, (_, i) => (i % 2 ? -1 : 1) / factorial(2 * i));

function factorial(n: number): number {
  let f = 1;
  for (let i = 2; i <= n; i++) f *= i;
  return f;
}

/** Σ terms[i]·y^i by Horner's rule (y = x²). */
function horner(y: tf.Tensor, terms: number[]): tf.Tensor {
  let acc: tf.Tensor = tf.scalar(terms[terms.length - 1]);
  for (let i = terms.length - 2; i >= 0; i--) acc = tf.add(tf.mul(acc, y), terms[i]);
  return acc;
}

function polynomialSin(x: tf.Tensor): tf.Tensor {
  return tf.mul(x, horner(tf.square(x), SIN_TERMS));
}

function polynomialCos(x: tf.Tensor): tf.Tensor {
  return horner(tf.square(x), COS_TERMS);
}

/**
 * Applies the rotary embedding to x (typically q or k, [batch, seq, heads, headDim], before the attention):
 * with x1, x2 the first and second halves of the feature axis and θ_i = position / scalingFactor / maxWavelength^(2i/d),
 *   out = concat(x1·cos θ − x2·sin θ, x2·cos θ + x1·sin θ)
 * (keras_hub's `x·cos + rotate_half(x)·sin`, rotate_half(x) = concat(−x2, x1); HF Llama's convention). Same shape
 * and dtype (float32) as x.
 *
 * ```js
 * const qr = rotaryEmbedding(q, {startIndex: cacheLength});   // q: [batch, n, heads, headDim]
 * ```
 */
export function rotaryEmbedding(x: tf.Tensor, options: RotaryEmbeddingOptions = {}): tf.Tensor {
  if (!(x instanceof tf.Tensor)) throw new Error(`x must be a tf.Tensor, got ${describe(x)}`);
  if (x.isDisposed) throw new Error('x has been disposed');
  if (x.dtype !== 'float32') throw new Error(`x must have dtype float32, got ${x.dtype}`);
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new Error(`options must be an object, got ${describe(options)}`);
  }
  for (const [key, value] of Object.entries(options)) {
    if (value !== undefined && !KNOWN.includes(key)) {
      throw new Error(`options.${key} is not an option of rotaryEmbedding (known: ${KNOWN.join(', ')})`);
    }
  }
  const rank = x.rank;
  if (rank < 2) throw new Error(`x must have a sequence and a feature axis (rank >= 2), got shape [${x.shape}]`);
  const seqAxis = checkAxis('sequenceAxis', options.sequenceAxis, 1, rank);
  const featureAxis = checkAxis('featureAxis', options.featureAxis, -1, rank);
  if (seqAxis === featureAxis) throw new Error(`sequenceAxis and featureAxis must differ, both are axis ${seqAxis}`);
  const maxWavelength = checkPositiveNumber('maxWavelength', options.maxWavelength, 10000);
  const scalingFactor = checkPositiveNumber('scalingFactor', options.scalingFactor, 1);
  const seq = x.shape[seqAxis];
  const features = x.shape[featureAxis];
  if (features % 2 !== 0) {
    throw new Error(`the feature axis (axis ${featureAxis}) of x must have an even size, got ${features}`);
  }
  if (options.positions !== undefined && options.startIndex !== undefined) {
    throw new Error('give positions or startIndex, not both');
  }
  const half = features / 2;
  const inv = rotaryInverseFrequencies(features, maxWavelength);

  // The tables' shape: seq on the sequence axis, half on the feature axis, batch on axis 0 for per-batch positions.
  const tableShape = (perBatch: boolean) => {
    const shape = new Array<number>(rank).fill(1);
    shape[seqAxis] = seq;
    shape[featureAxis] = half;
    if (perBatch) {
      if (seqAxis === 0 || featureAxis === 0) {
        throw new Error('per-batch positions need axis 0 of x to be the batch axis (not the sequence or feature axis)');
      }
      shape[0] = x.shape[0];
    }
    return shape;
  };
  // [.., seq, half] in row-major order; transposed into place when the feature axis comes before the sequence axis.
  const arrange = (table: tf.Tensor, perBatch: boolean) => {
    const t = featureAxis < seqAxis ? tf.transpose(table, perBatch ? [0, 2, 1] : [1, 0]) : table;
    return tf.reshape(t, tableShape(perBatch));
  };

  let hostPositions: ArrayLike<number> | null = null;
  let devicePositions: tf.Tensor | null = null;  // [seq] or [batch, seq], any numeric dtype
  let startTensor: tf.Tensor | null = null;
  if (options.positions !== undefined) {
    const p = options.positions;
    if (p instanceof tf.Tensor) {
      if (p.isDisposed) throw new Error('positions has been disposed');
      const ok = (p.rank === 1 && p.shape[0] === seq) || (p.rank === 2 && p.shape[0] === x.shape[0] &&
                                                          p.shape[1] === seq);
      if (!ok || p.dtype === 'bool' || p.dtype === 'string' || p.dtype === 'complex64') {
        throw new Error(`positions must be a numeric tensor of shape [seq=${seq}] or [batch=${x.shape[0]}, seq=${
            seq}], got ${describe(p)}`);
      }
      devicePositions = p;
    } else if (Array.isArray(p) || p instanceof Float32Array || p instanceof Int32Array) {
      if (p.length !== seq) throw new Error(`positions must have length seq=${seq}, got ${p.length}`);
      for (let i = 0; i < p.length; i++) {
        if (!Number.isFinite(p[i])) throw new Error(`positions[${i}] must be a finite number, got ${p[i]}`);
      }
      hostPositions = p;
    } else {
      throw new Error(`positions must be a number[], Float32Array, Int32Array or tensor, got ${describe(p)}`);
    }
  } else if (options.startIndex instanceof tf.Tensor) {
    const s = options.startIndex;
    if (s.isDisposed) throw new Error('startIndex has been disposed');
    if (!(s.rank === 0 || (s.rank === 1 && s.shape[0] === x.shape[0])) || s.dtype === 'bool' ||
        s.dtype === 'string' || s.dtype === 'complex64') {
      throw new Error(`startIndex must be a number, a numeric scalar tensor or a tensor of shape [batch=${
          x.shape[0]}], got ${describe(s)}`);
    }
    startTensor = s;
  } else {
    const start = options.startIndex ?? 0;
    if (typeof start !== 'number' || !Number.isFinite(start)) {
      throw new Error(`startIndex must be a finite number or a tensor, got ${describe(start)}`);
    }
    hostPositions = Array.from({length: seq}, (_, i) => start + i);
  }

  return tf.tidy(() => {
    let cos: tf.Tensor, sin: tf.Tensor;
    if (hostPositions != null) {
      const c = new Float32Array(seq * half), s = new Float32Array(seq * half);
      for (let i = 0; i < seq; i++) {
        const position = hostPositions[i] / scalingFactor;
        for (let f = 0; f < half; f++) {
          const angle = position * inv[f];
          c[i * half + f] = Math.cos(angle);
          s[i * half + f] = Math.sin(angle);
        }
      }
      cos = arrange(tf.tensor2d(c, [seq, half]), false);
      sin = arrange(tf.tensor2d(s, [seq, half]), false);
    } else {
      // On the device: [.., seq, 1] positions × [half] frequencies, reduced modulo 2π, then cos/sin as polynomials
      // (GPU sin/cos only promise 2^-11 absolute accuracy, and SwiftShader's are off by 2e-4).
      const positions = devicePositions != null ? tf.cast(devicePositions, 'float32') :
          startTensor!.rank === 0 ? tf.add(tf.range(0, seq, 1, 'float32'), tf.cast(startTensor!, 'float32')) :
          tf.add(tf.reshape(tf.range(0, seq, 1, 'float32'), [1, seq]),
                 tf.reshape(tf.cast(startTensor!, 'float32'), [x.shape[0], 1]));
      const perBatch = positions.rank === 2;
      const angles = reducedAngles(tf.expandDims(positions, -1), inv.map((f) => f / scalingFactor));
      cos = arrange(polynomialCos(angles), perBatch);
      sin = arrange(polynomialSin(angles), perBatch);
    }
    const [x1, x2] = tf.split(x, 2, featureAxis);
    return tf.concat([tf.sub(tf.mul(x1, cos), tf.mul(x2, sin)), tf.add(tf.mul(x2, cos), tf.mul(x1, sin))],
                     featureAxis);
  });
}
