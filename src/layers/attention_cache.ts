/**
 * keras_hub's CachedMultiHeadAttention cache, shared by MultiHeadAttention and TransformerDecoder: the cache is one
 * tensor [batch, 2, capacity, kvHeads, headDim] (keys at [:, 0], values at [:, 1]) and `cacheUpdateIndex` says where
 * the new tokens' keys and values are written. Three modes, as keras_hub:
 *  - no cache: plain attention (training);
 *  - cache with cacheUpdateIndex: the new keys / values are written at rows index … index + seq − 1 (updateKVCache, one
 *    copy kernel per tensor) and the queries attend to the cache's first index + seq rows, query i at position
 *    index + i (the kernels' queryOffsets and keyLengths: no mask is materialized);
 *  - cache without cacheUpdateIndex: the cache is used as is (every row is a key; e.g. a cross-attention cache), the
 *    key and value inputs are ignored.
 */
import * as tf from '@tensorflow/tfjs-core';
import {rotaryEmbedding} from '../ops/rotary_embedding.js';
import {updateKVCache} from '../ops/update_kv_cache.js';
import type {AttentionDims} from './attention_core.js';

/** A cache call, checked: the cache and where to write (null: use the cache as is). */
export interface LayerCache {
  cache: tf.Tensor;
  /** A number (every batch) or a tensor (scalar or [batch], any integer dtype). */
  updateIndex: number | tf.Tensor | null;
}

/** Our rotary option (keras_hub's RotaryEmbedding on the projected queries and keys, as Llama-style attention). */
export interface RotarySettings {
  maxWavelength: number;
  scalingFactor: number;
}

/**
 * Checks `cache` / `cacheUpdateIndex` call arguments against the layer's dims and the new tokens (batch, seq);
 * returns null without a cache. Errors name the layer and the argument.
 */
export function checkLayerCache(layer: string, names: {cache: string; index: string}, cache: unknown,
                                updateIndex: unknown, d: AttentionDims, batch: number, seq: number): LayerCache | null {
  if (cache == null) {
    if (updateIndex != null) {
      throw new Error(`${layer}: ${names.index} should not be set if ${names.cache} is not given, got ${names.index}=${
          updateIndex instanceof tf.Tensor ? `a tensor of shape [${updateIndex.shape}]` : String(updateIndex)}`);
    }
    return null;
  }
  if (!(cache instanceof tf.Tensor)) throw new Error(`${layer}: ${names.cache} must be a tf.Tensor, got ${typeof cache}`);
  if (cache.isDisposed) throw new Error(`${layer}: ${names.cache} has been disposed`);
  if (d.keyDim !== d.valueDim) {
    throw new Error(`${layer}: a cache needs keyDim == valueDim (keys and values share it), got keyDim ${
        d.keyDim} and valueDim ${d.valueDim}`);
  }
  const [b, two, capacity, heads, dim] = cache.shape;
  if (cache.rank !== 5 || b !== batch || two !== 2 || heads !== d.numKeyValueHeads || dim !== d.keyDim ||
      cache.dtype !== 'float32') {
    throw new Error(`${layer}: ${names.cache} must be a float32 tensor [batch=${batch}, 2, capacity, kvHeads=${
        d.numKeyValueHeads}, headDim=${d.keyDim}], got ${cache.dtype} [${cache.shape}]`);
  }
  if (updateIndex == null) return {cache, updateIndex: null};
  if (typeof updateIndex === 'number') {
    if (!Number.isInteger(updateIndex) || updateIndex < 0 || updateIndex + seq > capacity) {
      throw new Error(`${layer}: ${names.index} must be an integer in [0, capacity − seq = ${capacity - seq}] (the ${
          seq} new tokens must fit in the cache of capacity ${capacity}), got ${updateIndex}`);
    }
    return {cache, updateIndex};
  }
  if (updateIndex instanceof tf.Tensor) {
    if (updateIndex.isDisposed) throw new Error(`${layer}: ${names.index} has been disposed`);
    if (updateIndex.size !== 1 && !(updateIndex.rank === 1 && updateIndex.shape[0] === batch)) {
      throw new Error(`${layer}: ${names.index} must be a number, a scalar tensor or a tensor [batch=${
          batch}], got a tensor of shape [${updateIndex.shape}]`);
    }
    return {cache, updateIndex};
  }
  throw new Error(`${layer}: ${names.index} must be a number or an integer tensor, got ${typeof updateIndex}`);
}

/** The update index as the ops take it: a number, or int32 [batch] (values stay on the device). */
function positionsOf(index: number | tf.Tensor, batch: number): number | tf.Tensor1D {
  if (typeof index === 'number') return index;
  const flat = index.dtype === 'int32' ? index : tf.cast(tf.round(index), 'int32');
  return tf.broadcastTo(tf.reshape(flat, [-1]), [batch]) as tf.Tensor1D;
}

/** The keys, values and query positions attention runs with, and the cache the layer returns. */
export interface CachedKeyValues {
  k: tf.Tensor4D;
  v: tf.Tensor4D;
  /** The new cache (the given one in static mode); absent without a cache. */
  cache?: tf.Tensor;
  /** Query row i sits at key position queryOffsets + i (update mode), with keyLengths the rows written so far. */
  queryOffsets?: number | tf.Tensor1D;
  keyLengths?: tf.Tensor1D;
}

/**
 * Writes the new keys / values [batch, seq, kvHeads, headDim] (already projected, rotated) into the cache, or reads
 * the cache as is. Call inside a tidy.
 */
export function applyLayerCache(c: LayerCache, kNew: () => tf.Tensor4D, vNew: () => tf.Tensor4D, seq: number):
    CachedKeyValues {
  const [kCache, vCache] = tf.unstack(c.cache, 1) as tf.Tensor4D[];
  if (c.updateIndex == null) return {k: kCache, v: vCache, cache: c.cache};
  const batch = c.cache.shape[0];
  const positions = positionsOf(c.updateIndex, batch);
  const k = updateKVCache(kCache, kNew(), positions);
  const v = updateKVCache(vCache, vNew(), positions);
  const keyLengths = typeof positions === 'number' ? tf.fill([batch], positions + seq, 'int32') as tf.Tensor1D :
                                                     tf.add(positions, tf.scalar(seq, 'int32')) as tf.Tensor1D;
  return {k, v, cache: tf.stack([k, v], 1), queryOffsets: positions, keyLengths};
}

/** Rotary embedding of x [batch, seq, heads, dim] at positions start + i (start: number or scalar / [batch] tensor). */
export function rotate(x: tf.Tensor4D, rotary: RotarySettings, start: number | tf.Tensor): tf.Tensor4D {
  const startIndex = typeof start === 'number' ? start : tf.reshape(start, start.size === 1 ? [] : [x.shape[0]]);
  return rotaryEmbedding(x, {startIndex, ...rotary}) as tf.Tensor4D;
}
