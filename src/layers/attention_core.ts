/**
 * Multi-head attention's weights and forward pass, shared by MultiHeadAttention and the keras_hub-style
 * TransformerEncoder / TransformerDecoder (which own the same weights under a sublayer prefix). Names, shapes and
 * order are Keras's MultiHeadAttention, so weights exported from Keras load unchanged:
 *   query/kernel [queryFeatures, numHeads, keyDim]            query/bias [numHeads, keyDim]
 *   key/kernel   [keyFeatures, numKeyValueHeads, keyDim]      key/bias   [numKeyValueHeads, keyDim]
 *   value/kernel [valueFeatures, numKeyValueHeads, valueDim]  value/bias [numKeyValueHeads, valueDim]
 *   attention_output/kernel [numHeads, valueDim, ...outputShape]   attention_output/bias [...outputShape]
 * (numKeyValueHeads = numHeads unless grouped-query attention, our extension.) Initializers see these shapes, as in
 * Keras (Glorot fans of a [features, heads, dim] kernel follow Keras's compute_fans).
 */
import * as tf from '@tensorflow/tfjs-core';
import type {LayerVariable} from '@tensorflow/tfjs-layers';
import {checkKeyLengths} from '../ops/validate.js';
import type {AttentionPrecision} from '../plan/precision.js';
import {applyLayerCache, CachedKeyValues, LayerCache, rotate, RotarySettings} from './attention_cache.js';
import {runLayerAttention} from './attention_dispatch.js';
import {ResolvedAttention} from './attention_spec.js';

export interface AttentionDims {
  numHeads: number;
  numKeyValueHeads: number;
  keyDim: number;
  valueDim: number;
  queryFeatures: number;
  keyFeatures: number;
  valueFeatures: number;
  /** The output's trailing shape (Keras's output_shape; default [queryFeatures]). */
  outputShape: number[];
  useBias: boolean;
}

/** Layer.addWeight bound to the owning layer (it is protected): the weight name, its shape, kernel or bias. */
export type AddWeight = (name: string, shape: number[], role: 'kernel' | 'bias') => LayerVariable;

export interface Projection {
  kernel: LayerVariable;
  bias: LayerVariable | null;
}

export interface AttentionWeights {
  query: Projection;
  key: Projection;
  value: Projection;
  output: Projection;
}

export function addAttentionWeights(add: AddWeight, prefix: string, d: AttentionDims): AttentionWeights {
  const projection = (name: string, kernelShape: number[], biasShape: number[]): Projection => ({
    kernel: add(`${prefix}${name}/kernel`, kernelShape, 'kernel'),
    bias: d.useBias ? add(`${prefix}${name}/bias`, biasShape, 'bias') : null,
  });
  return {
    query: projection('query', [d.queryFeatures, d.numHeads, d.keyDim], [d.numHeads, d.keyDim]),
    key: projection('key', [d.keyFeatures, d.numKeyValueHeads, d.keyDim], [d.numKeyValueHeads, d.keyDim]),
    value: projection('value', [d.valueFeatures, d.numKeyValueHeads, d.valueDim], [d.numKeyValueHeads, d.valueDim]),
    output: projection('attention_output', [d.numHeads, d.valueDim, ...d.outputShape], d.outputShape),
  };
}

export interface AttentionCallOptions {
  attention: ResolvedAttention;
  softcap: number;
  /** Dropout rate on the attention probabilities, when training (Keras's `dropout`). */
  dropout: number;
  seed?: number;
  training: boolean;
  keyLengths?: tf.Tensor1D;
  attentionMask?: tf.Tensor;
  queryMask?: tf.Tensor;
  keyMask?: tf.Tensor;
  useCausalMask?: boolean;
  returnScores?: boolean;
  /** keras_hub's cache (attention_cache.ts): the result then has the new cache. */
  cache?: LayerCache | null;
  /** Rotary embedding of the projected queries and keys, at positions cacheUpdateIndex (or 0) + i. */
  rotary?: RotarySettings | null;
  /** The ops' precision option; null / absent: the ATTENTION_PRECISION flag. */
  precision?: AttentionPrecision | null;
}

/**
 * x [..., features] times a kernel [features, ...units] (+ bias) over the last axis, reshaped to outShape: the
 * [b, s, heads, dim] projections, the output projection and the feed-forward dense layers.
 */
export function project(x: tf.Tensor, p: Projection, outShape: number[]): tf.Tensor {
  const features = x.shape[x.rank - 1];
  const rows = x.size / features;
  const kernel = p.kernel.read();
  const units = kernel.size / features;
  let y = tf.matMul(tf.reshape(x, [rows, features]), tf.reshape(kernel, [features, units]));
  if (p.bias != null) y = tf.add(y, tf.reshape(p.bias.read(), [units]));
  return tf.reshape(y, outShape);
}

/** Zero-pads the last axis to `size` (exact for q·k, and padded value channels are sliced off afterwards). */
function padLastAxis(x: tf.Tensor4D, size: number): tf.Tensor4D {
  const d = x.shape[3];
  return d === size ? x : tf.pad(x, [[0, 0], [0, 0], [0, 0], [0, size - d]]);
}

/**
 * query [b, seqQ, queryFeatures], key [b, seqK, keyFeatures], value [b, seqK, valueFeatures] →
 * {output [b, seqQ, ...outputShape], scores? [b, heads, seqQ, seqK]}. The kernels use one head size for q, k and v:
 * when keyDim != valueDim the smaller side is zero-padded (scale stays 1/sqrt(keyDim)), which is exact.
 */
export function attentionForward(
    w: AttentionWeights, d: AttentionDims, query: tf.Tensor, key: tf.Tensor, value: tf.Tensor,
    opts: AttentionCallOptions): {output: tf.Tensor; scores?: tf.Tensor; cache?: tf.Tensor} {
  const [batch, seqQ] = query.shape as number[];
  const seqK = key.shape[1] as number;
  if (value.shape[1] !== seqK || value.shape[0] !== batch || key.shape[0] !== batch) {
    throw new Error(`MultiHeadAttention: query [${query.shape}], key [${key.shape}] and value [${
        value.shape}] must share batch, and key and value must share the sequence length`);
  }
  let scores: tf.Tensor | undefined;
  let newCache: tf.Tensor | undefined;
  const output = tf.tidy(() => {
    const headDim = Math.max(d.keyDim, d.valueDim);
    const start = opts.cache?.updateIndex ?? 0;
    const rotated = (x: tf.Tensor4D) => opts.rotary == null ? x : rotate(x, opts.rotary, start);
    const q = padLastAxis(rotated(project(query, w.query, [batch, seqQ, d.numHeads, d.keyDim]) as tf.Tensor4D),
                          headDim);
    const newKeys = () => rotated(project(key, w.key, [batch, seqK, d.numKeyValueHeads, d.keyDim]) as tf.Tensor4D);
    const newValues = () => project(value, w.value, [batch, seqK, d.numKeyValueHeads, d.valueDim]) as tf.Tensor4D;
    // With a cache (keyDim == valueDim: no padding), keys and values come from it (attention_cache.ts).
    const kv: CachedKeyValues = opts.cache != null ? applyLayerCache(opts.cache, newKeys, newValues, seqQ) :
        {k: padLastAxis(newKeys(), headDim), v: padLastAxis(newValues(), headDim)};
    if (kv.cache != null) newCache = tf.keep(kv.cache);
    const result = runLayerAttention(q, kv.k, kv.v, {
      scale: 1 / Math.sqrt(d.keyDim), softcap: opts.softcap, attention: opts.attention,
      attentionMask: opts.attentionMask, queryMask: opts.queryMask, keyMask: opts.keyMask,
      causalTopLeft: opts.useCausalMask, keyLengths: kv.keyLengths ?? opts.keyLengths, queryOffsets: kv.queryOffsets,
      dropoutRate: opts.dropout, seed: opts.seed, training: opts.training, returnScores: opts.returnScores === true,
      precision: opts.precision ?? undefined,
    });
    if (result.scores != null) scores = tf.keep(result.scores);
    let o: tf.Tensor = result.output;
    if (d.valueDim < headDim) o = tf.slice(o, [0, 0, 0, 0], [batch, seqQ, d.numHeads, d.valueDim]);
    return project(tf.reshape(o, [batch, seqQ, d.numHeads * d.valueDim]), w.output, [batch, seqQ, ...d.outputShape]);
  });
  return {output, scores, cache: newCache};
}

/**
 * keyLengths from a call kwarg or an extra input: number[] / Int32Array (checked like the ops do) or a tensor of
 * shape [batch] or [batch, 1] and any numeric dtype (tf.layers may feed float32), returned as int32 [batch].
 */
export function toKeyLengths(keyLengths: unknown, batch: number, seqK: number): tf.Tensor1D | undefined {
  if (keyLengths == null) return undefined;
  if (keyLengths instanceof tf.Tensor) {
    if (keyLengths.size !== batch || keyLengths.shape[0] !== batch || keyLengths.rank > 2) {
      throw new Error(`keyLengths must have shape [batch=${batch}] or [batch, 1], got [${keyLengths.shape}]`);
    }
    const flat = tf.reshape(keyLengths, [batch]);
    return (flat.dtype === 'int32' ? flat : tf.cast(flat, 'int32')) as tf.Tensor1D;
  }
  return tf.tensor1d(checkKeyLengths(keyLengths, batch, seqK) as number[], 'int32');
}
