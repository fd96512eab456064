/**
 * updateKVCache: write the keys (or values) of n new tokens into a fixed-capacity cache, per batch at its own
 * position, as one copy kernel (tfjs tensors are immutable: the result is a new cache tensor, the old one is
 * untouched and the caller disposes it).
 */
import * as tf from '@tensorflow/tfjs-core';
import {registerCompositeKernels} from '../../kernels/composite/register_composite_kernels.js';
import {UpdateKVCache, UPDATE_KV_CACHE_INPUT_NAMES} from '../kernel_names.js';

function describe(x: unknown): string {
  if (x instanceof tf.Tensor) return `a ${x.dtype} tensor of shape [${x.shape.join(', ')}]`;
  return x === null ? 'null' : Array.isArray(x) ? 'an array' : typeof x;
}

function checkRank4(name: string, x: unknown, expected: string): asserts x is tf.Tensor4D {
  if (!(x instanceof tf.Tensor)) throw new Error(`${name} must be a tf.Tensor of shape ${expected}, got ${describe(x)}`);
  if (x.isDisposed) throw new Error(`${name} has been disposed`);
  if (x.rank !== 4) throw new Error(`${name} must be rank 4 with shape ${expected}, got shape [${x.shape}]`);
  if (x.dtype !== 'float32') throw new Error(`${name} must have dtype float32, got ${x.dtype}`);
}

/**
 * Returns `cache` [batch, capacity, kvHeads, headDim] with `update` [batch, n, kvHeads, headDim] written at rows
 * positions[b] … positions[b] + n − 1 of each batch b; every other row is copied unchanged.
 *
 * positions:
 *  - a number (every batch) or number[] / Int32Array [batch]: checked here, 0 ≤ p and p + n ≤ capacity, else an Error
 *    naming `positions`;
 *  - an int32 Tensor1D [batch] (values stay on the device, as the attention ops' tensor queryOffsets): each value is
 *    clamped to [0, capacity − n] by the kernel, so the write always lands inside the cache (a position past the end
 *    overwrites the last n rows instead of failing).
 *
 * With flashAttention's `queryOffsets` (= positions) and `keyLengths` (= positions + n), the updated cache is what
 * the n new queries attend to (flash_attn_with_kvcache's cache_seqlens semantics).
 *
 * ```js
 * const kCache2 = updateKVCache(kCache, kNew, [len]);  kCache.dispose();
 * ```
 *
 * Differentiable: d cache = dy with the written rows zeroed, d update = the written rows of dy.
 */
export function updateKVCache(
    cache: tf.Tensor, update: tf.Tensor, positions: number | number[] | Int32Array | tf.Tensor1D): tf.Tensor4D {
  checkRank4('cache', cache, '[batch, capacity, kvHeads, headDim]');
  checkRank4('update', update, '[batch, n, kvHeads, headDim]');
  const [batch, capacity, kvHeads, headDim] = cache.shape;
  const n = update.shape[1];
  if (update.shape[0] !== batch || update.shape[2] !== kvHeads || update.shape[3] !== headDim || n < 1 ||
      n > capacity) {
    throw new Error(`update must have shape [batch=${batch}, n in [1, capacity=${capacity}], kvHeads=${kvHeads}, ` +
                    `headDim=${headDim}], got [${update.shape}]`);
  }
  let positionsTensor: tf.Tensor1D;
  let owned = false;
  if (positions instanceof tf.Tensor) {
    if (positions.isDisposed) throw new Error('positions has been disposed');
    if (positions.rank !== 1 || positions.shape[0] !== batch || positions.dtype !== 'int32') {
      throw new Error(`positions must be an int32 tensor of shape [batch=${batch}], got ${describe(positions)}`);
    }
    positionsTensor = positions;
  } else {
    let values: number[];
    if (typeof positions === 'number') {
      values = new Array(batch).fill(positions);
    } else if (Array.isArray(positions) || positions instanceof Int32Array) {
      values = Array.from(positions as ArrayLike<number>);
      if (values.length !== batch) {
        throw new Error(`positions must have length batch=${batch}, got length ${values.length}`);
      }
    } else {
      throw new Error(`positions must be a number, a number[] / Int32Array of length batch=${batch} or an int32 ` +
                      `Tensor1D, got ${describe(positions)}`);
    }
    values.forEach((p, b) => {
      if (!Number.isInteger(p) || p < 0 || p + n > capacity) {
        throw new Error(`positions${typeof positions === 'number' ? '' : `[${b}]`} must be an integer in [0, ` +
                        `capacity − n = ${capacity - n}] (the ${n} new rows must fit in the cache of capacity ${
                            capacity}), got ${p}`);
      }
    });
    positionsTensor = tf.tensor1d(values, 'int32');
    owned = true;
  }
  const backendName = tf.getBackend();
  if (tf.getKernel(UpdateKVCache, backendName) == null) registerCompositeKernels(backendName);
  const inputs = {cache, update, positions: positionsTensor} satisfies
      Record<typeof UPDATE_KV_CACHE_INPUT_NAMES[number], tf.Tensor>;
  try {
    return tf.engine().runKernel(UpdateKVCache, inputs) as tf.Tensor4D;
  } finally {
    if (owned) positionsTensor.dispose();
  }
}
