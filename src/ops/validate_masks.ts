/**
 * Checks of the options that add masks, biases, offsets and dropout (the rest are in validate.ts). Each returns what
 * the plan needs (strides, bounds) and the tensors the kernels take; every error names the argument and the
 * expected shape or value, and is thrown before any kernel runs.
 */
import * as tf from '@tensorflow/tfjs-core';
import {makeDropoutPlan, DropoutPlan} from '../plan/philox.js';
import {AttentionShapes, PairOperand, queryOffsetBounds} from '../plan/plan.js';

function describe(x: unknown): string {
  if (x instanceof tf.Tensor) return `a ${x.dtype} tensor of shape [${x.shape.join(', ')}]`;
  if (Array.isArray(x)) return `an array of length ${x.length}`;
  return x === null ? 'null' : typeof x;
}

function checkLiveTensor(name: string, x: unknown, expected: string): asserts x is tf.Tensor {
  if (!(x instanceof tf.Tensor)) throw new Error(`${name} must be a tf.Tensor ${expected}, got ${describe(x)}`);
  if (x.isDisposed) throw new Error(`${name} has been disposed`);
}

/**
 * A mask or bias: [seqQ, seqK], [batch | 1, seqQ, seqK] or [batch | 1, heads | 1, seqQ, seqK], broadcast by index
 * (never expanded). Masks may be bool, int32 or float32 (non-zero = may attend); a bias must be float32.
 */
export function checkPairOperand(name: 'mask' | 'bias', x: unknown, s: AttentionShapes): PairOperand {
  const shapes = `[seqQ=${s.seqQ}, seqK=${s.seqK}], [batch=${s.batch} | 1, seqQ, seqK] or ` +
      `[batch=${s.batch} | 1, heads=${s.heads} | 1, seqQ, seqK]`;
  checkLiveTensor(name, x, `of shape ${shapes}`);
  const dtypes = name === 'mask' ? ['bool', 'int32', 'float32'] : ['float32'];
  if (!dtypes.includes(x.dtype)) {
    throw new Error(`${name} must have dtype ${dtypes.join(' or ')}, got ${x.dtype}`);
  }
  const shape = x.shape;
  const tail = shape.slice(-2);
  const lead = shape.slice(0, -2);
  const fits = x.rank >= 2 && x.rank <= 4 && tail[0] === s.seqQ && tail[1] === s.seqK &&
      (lead.length < 1 || lead[0] === 1 || lead[0] === s.batch) &&
      (lead.length < 2 || lead[1] === 1 || lead[1] === s.heads);
  if (!fits) throw new Error(`${name} must have shape ${shapes}, got [${shape.join(', ')}]`);
  const pair = s.seqQ * s.seqK;
  const headsInTensor: number = x.rank === 4 ? shape[1] as number : 1;
  return {
    shape: [...shape],
    batchStride: lead.length >= 1 && lead[0] !== 1 ? headsInTensor * pair : 0,
    headStride: lead.length === 2 && lead[1] !== 1 ? pair : 0,
    dtype: x.dtype as PairOperand['dtype'],
  };
}

/** ALiBi slopes as the kernels take them: float32 [batch | 1, heads], and the batch stride (0 or heads). */
export interface AlibiInput {
  /** The user's tensor reshaped to 2-D, or a tensor made from the numbers; `owned` ones are disposed by the op. */
  tensor: tf.Tensor2D;
  owned: boolean;
  batchStride: number;
}

/** alibiSlopes: number[] / Float32Array of length heads, or a float32 tensor [heads] or [batch | 1, heads]. */
export function checkAlibiSlopes(x: unknown, s: AttentionShapes): AlibiInput {
  const expected = `[heads=${s.heads}] or [batch=${s.batch} | 1, heads=${s.heads}]`;
  if (x instanceof tf.Tensor) {
    checkLiveTensor('alibiSlopes', x, expected);
    if (x.dtype !== 'float32') throw new Error(`alibiSlopes must have dtype float32, got ${x.dtype}`);
    const ok = (x.rank === 1 && x.shape[0] === s.heads) ||
        (x.rank === 2 && (x.shape[0] === 1 || x.shape[0] === s.batch) && x.shape[1] === s.heads);
    if (!ok) throw new Error(`alibiSlopes must have shape ${expected}, got [${x.shape.join(', ')}]`);
    const perBatch = x.rank === 2 && x.shape[0] !== 1;
    return {
      tensor: x.rank === 2 ? x as tf.Tensor2D : tf.reshape(x, [1, s.heads]),
      owned: x.rank !== 2,
      batchStride: perBatch ? s.heads : 0,
    };
  }
  if (!Array.isArray(x) && !(x instanceof Float32Array)) {
    throw new Error(`alibiSlopes must be a number[], Float32Array or float32 tensor of shape ${expected}, got ${
        describe(x)}`);
  }
  const values = Array.from(x as ArrayLike<number>);
  if (values.length !== s.heads) {
    throw new Error(`alibiSlopes must have length heads=${s.heads}, got length ${values.length}`);
  }
  values.forEach((v, h) => {
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      throw new Error(`alibiSlopes[${h}] must be a finite number, got ${String(v)}`);
    }
  });
  return {tensor: tf.tensor2d(values, [1, s.heads], 'float32'), owned: true, batchStride: 0};
}

/** segmentIds: one int32 [batch, seq] tensor (seqQ == seqK) or {query: [batch, seqQ], key: [batch, seqK]}. */
export function checkSegmentIds(x: unknown, s: AttentionShapes): {query: tf.Tensor2D, key: tf.Tensor2D} {
  const check = (name: string, t: unknown, seq: number, seqName: string): tf.Tensor2D => {
    const expected = `int32 of shape [batch=${s.batch}, ${seqName}=${seq}]`;
    checkLiveTensor(name, t, expected);
    if (t.dtype !== 'int32' || t.rank !== 2 || t.shape[0] !== s.batch || t.shape[1] !== seq) {
      throw new Error(`${name} must be ${expected}, got ${describe(t)}`);
    }
    return t as tf.Tensor2D;
  };
  if (x instanceof tf.Tensor) {
    if (s.seqQ !== s.seqK) {
      throw new Error(`segmentIds must be {query: [batch, seqQ=${s.seqQ}], key: [batch, seqK=${
          s.seqK}]} when seqQ != seqK; got a single tensor`);
    }
    const ids = check('segmentIds', x, s.seqQ, 'seq');
    return {query: ids, key: ids};
  }
  if (x == null || typeof x !== 'object' || Array.isArray(x) ||
      Object.keys(x).some((key) => key !== 'query' && key !== 'key')) {
    throw new Error(`segmentIds must be an int32 tensor [batch, seq] or {query: [batch, seqQ], key: [batch, seqK]}, ` +
                    `got ${describe(x)}`);
  }
  const pair = x as {query?: unknown, key?: unknown};
  return {
    query: check('segmentIds.query', pair.query, s.seqQ, 'seqQ'),
    key: check('segmentIds.key', pair.key, s.seqK, 'seqK'),
  };
}

/** What the plan and kernels get from queryOffsets. */
export type QueryOffsets =
    | {kind: 'static', offset: number}
    | {kind: 'perBatch', values: number[], range: [number, number]}
    | {kind: 'tensor', tensor: tf.Tensor1D, range: [number, number]};

/**
 * queryOffsets: a number (every batch), number[] / Int32Array [batch], or an int32 Tensor1D [batch]. Numbers must be
 * integers in [-seqQ, seqK]; tensor values are clamped to that range by the kernels (checking them would need a
 * readback). Default (absent): seqK - seqQ, bottom-right alignment.
 */
export function checkQueryOffsets(x: unknown, s: AttentionShapes): QueryOffsets {
  const [lo, hi] = queryOffsetBounds(s.seqQ, s.seqK);
  if (x === undefined) return {kind: 'static', offset: s.seqK - s.seqQ};
  const checkValue = (v: unknown, name: string): number => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) {
      throw new Error(`${name} must be an integer in [-seqQ, seqK] = [${lo}, ${hi}], got ${String(v)}`);
    }
    return v;
  };
  if (typeof x === 'number') return {kind: 'static', offset: checkValue(x, 'queryOffsets')};
  if (x instanceof tf.Tensor) {
    checkLiveTensor('queryOffsets', x, `int32 of shape [batch=${s.batch}]`);
    if (x.dtype !== 'int32' || x.rank !== 1 || x.shape[0] !== s.batch) {
      throw new Error(`queryOffsets must be an int32 tensor of shape [batch=${s.batch}], got ${describe(x)}`);
    }
    return {kind: 'tensor', tensor: x as tf.Tensor1D, range: [lo, hi]};
  }
  if (!Array.isArray(x) && !(x instanceof Int32Array)) {
    throw new Error(`queryOffsets must be a number, number[] / Int32Array of length batch=${s.batch} or an int32 ` +
                    `Tensor1D, got ${describe(x)}`);
  }
  const values = Array.from(x as ArrayLike<number>, (v, b) => checkValue(v, `queryOffsets[${b}]`));
  if (values.length !== s.batch) {
    throw new Error(`queryOffsets must have length batch=${s.batch}, got length ${values.length}`);
  }
  if (values.every((v) => v === values[0])) return {kind: 'static', offset: values[0]};
  return {kind: 'perBatch', values, range: [Math.min(...values), Math.max(...values)]};
}

/** dropout: {rate in [0, 1), seed integer in [0, 2^53)}; rate 0 (or absent) is no dropout. */
export function checkDropout(x: unknown): DropoutPlan | null {
  if (x === undefined) return null;
  if (x === null || typeof x !== 'object' || Array.isArray(x)) {
    throw new Error(`dropout must be an object {rate, seed}, got ${describe(x)}`);
  }
  for (const key of Object.keys(x)) {
    if (key !== 'rate' && key !== 'seed') throw new Error(`dropout.${key} is not a dropout option (known: rate, seed)`);
  }
  const {rate, seed} = x as {rate?: unknown, seed?: unknown};
  if (typeof rate !== 'number' || !(rate >= 0 && rate < 1)) {
    throw new Error(`dropout.rate must be a number in [0, 1), got ${String(rate)}`);
  }
  if (typeof seed !== 'number' || !Number.isInteger(seed) || seed < 0 || seed >= 2 ** 53) {
    throw new Error(`dropout.seed must be an integer in [0, 2^53), got ${String(seed)}`);
  }
  return rate === 0 ? null : makeDropoutPlan(rate, seed);
}
