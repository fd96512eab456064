/**
 * A Keras-like MultiHeadAttention layer whose attention runs on the library's kernels (FlashAttention,
 * sliding-window or block-sparse), so it never materialises the [seqQ, seqK] score matrix.
 */
import * as tf from '@tensorflow/tfjs-core';
import {layers} from '@tensorflow/tfjs-layers';
import type {LayerArgs} from '@tensorflow/tfjs-layers/dist/engine/topology';
import type {Kwargs} from '@tensorflow/tfjs-layers/dist/types';
import {addAttentionWeights, AttentionDims, AttentionWeights, attentionForward, toKeyLengths} from
    './attention_core.js';
import {AttentionSpec, checkAttentionSpec, ResolvedAttention} from './attention_spec.js';
import {checkOptionalBoolean, checkPositiveInt, checkRate, checkSoftcapValue, shapeList, weightAdder} from
    './layer_utils.js';

type Shape = Array<number | null>;

export interface MultiHeadAttentionArgs extends LayerArgs {
  /** Number of query heads. */
  numHeads: number;
  /** Size of each query/key head. */
  keyDim: number;
  /** Size of each value head (default keyDim). If it differs from keyDim the smaller side is zero-padded. */
  valueDim?: number;
  /** Key/value heads for grouped-query attention (default numHeads; must divide numHeads; 1 = multi-query). */
  numKeyValueHeads?: number;
  /** Biases on the four projections (default true). */
  useBias?: boolean;
  /**
   * Dropout rate applied, when training, to the attention output of each head (before the output projection). The
   * kernels never form the probability matrix, so dropout on the probabilities themselves is not available.
   */
  dropout?: number;
  /** Size of the last output axis (default: the query's feature size). */
  outputShape?: number;
  /** Bottom-right aligned causal mask: query i sees key j iff j <= i + seqK - seqQ (default false). */
  causal?: boolean;
  /** Which attention runs (default 'flash'); see AttentionSpec. */
  attention?: AttentionSpec;
  /** Gemma-2 style logit soft-capping: score ← softcap·tanh(score/softcap). 0 (default) disables it. */
  softcap?: number;
}

interface AttentionInputs {
  query: tf.Tensor;
  value: tf.Tensor;
  key: tf.Tensor;
  keyLengths?: tf.Tensor;
}

/**
 * apply(x) is self-attention; apply([query, value]) and apply([query, value, key]) are cross-attention. A trailing
 * input of rank 1 or 2 ([batch] or [batch, 1]) is keyLengths: the functional-model way to pass them (use
 * tf.input({shape: [1], dtype: 'int32'}): model.predict turns [batch] arrays into [batch, 1]).
 */
function splitInputs<T extends {shape: Shape | number[]}>(inputs: T | T[], what: string):
    {query: T; value: T; key: T; keyLengths?: T} {
  const list = Array.isArray(inputs) ? [...inputs] : [inputs];
  const keyLengths = list.length > 1 && list[list.length - 1].shape.length < 3 ? list.pop() : undefined;
  if (list.length < 1 || list.length > 3 || list.some((x) => x.shape.length !== 3)) {
    throw new Error(`MultiHeadAttention expects ${what} x, [query, value] or [query, value, key] of rank 3 ` +
                    `[batch, seq, features] (optionally followed by keyLengths [batch] or [batch, 1]), got shapes ${
                        JSON.stringify(list.map((x) => x.shape))}`);
  }
  const [query, value = query, key = value] = list;
  return {query, value, key, keyLengths};
}

export class MultiHeadAttention extends layers.Layer {
  static className = 'MultiHeadAttention';

  readonly numHeads: number;
  readonly keyDim: number;
  readonly valueDim: number;
  readonly numKeyValueHeads: number;
  readonly useBias: boolean;
  readonly dropout: number;
  readonly outputDim?: number;
  readonly causal: boolean;
  readonly softcap: number;
  readonly attention: ResolvedAttention;
  private dims?: AttentionDims;
  private attentionWeights?: AttentionWeights;

  constructor(args: MultiHeadAttentionArgs) {
    super(args);
    const name = 'MultiHeadAttention';
    if (args == null) throw new Error(`${name}: config {numHeads, keyDim, ...} must be given`);
    this.numHeads = checkPositiveInt(name, 'numHeads', args.numHeads);
    this.keyDim = checkPositiveInt(name, 'keyDim', args.keyDim);
    this.valueDim = checkPositiveInt(name, 'valueDim', args.valueDim ?? this.keyDim);
    this.numKeyValueHeads = checkPositiveInt(name, 'numKeyValueHeads', args.numKeyValueHeads ?? this.numHeads);
    if (this.numHeads % this.numKeyValueHeads !== 0) {
      throw new Error(`${name}: numHeads (${this.numHeads}) must be divisible by numKeyValueHeads (${
          this.numKeyValueHeads})`);
    }
    this.useBias = checkOptionalBoolean(name, 'useBias', args.useBias, true);
    this.dropout = checkRate(name, 'dropout', args.dropout);
    this.outputDim = args.outputShape == null ? undefined : checkPositiveInt(name, 'outputShape', args.outputShape);
    this.causal = checkOptionalBoolean(name, 'causal', args.causal, false);
    this.softcap = checkSoftcapValue(name, args.softcap);
    this.attention = new ResolvedAttention(checkAttentionSpec(args.attention, this.causal), this.causal);
  }

  override build(inputShape: Shape | Shape[]): void {
    const {query, value, key} = splitInputs(shapeList(inputShape).map((shape) => ({shape})), 'input shapes');
    const features = (s: Shape, what: string) => {
      const f = s[2];
      if (f == null) throw new Error(`MultiHeadAttention: the ${what} feature size (last axis) must be known`);
      return f;
    };
    this.dims = {
      numHeads: this.numHeads,
      numKeyValueHeads: this.numKeyValueHeads,
      keyDim: this.keyDim,
      valueDim: this.valueDim,
      queryFeatures: features(query.shape, 'query'),
      keyFeatures: features(key.shape, 'key'),
      valueFeatures: features(value.shape, 'value'),
      outputDim: this.outputDim ?? features(query.shape, 'query'),
      useBias: this.useBias,
    };
    this.attentionWeights = addAttentionWeights(weightAdder(this.addWeight.bind(this)), '', this.dims);
    this.built = true;
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    const {query} = splitInputs(shapeList(inputShape).map((shape) => ({shape})), 'input shapes');
    return [query.shape[0], query.shape[1], this.outputDim ?? query.shape[2]];
  }

  /** kwargs: training; keyLengths (number[] | Tensor1D [batch]): keys at positions >= keyLengths[b] masked. */
  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      const x: AttentionInputs = splitInputs(inputs, 'inputs');
      const batch = x.query.shape[0] as number;
      const keyLengths = toKeyLengths(x.keyLengths ?? kwargs?.keyLengths, batch, x.key.shape[1] as number);
      return attentionForward(this.attentionWeights!, this.dims!, this.attention, x.query, x.key, x.value, {
        keyLengths,
        training: kwargs?.training === true,
        dropout: this.dropout,
        softcap: this.softcap,
      });
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    const config: tf.serialization.ConfigDict = {
      numHeads: this.numHeads,
      keyDim: this.keyDim,
      valueDim: this.valueDim,
      numKeyValueHeads: this.numKeyValueHeads,
      useBias: this.useBias,
      dropout: this.dropout,
      outputShape: this.outputDim ?? null,
      causal: this.causal,
      attention: this.attention.spec as tf.serialization.ConfigDictValue,
      softcap: this.softcap,
    };
    return {...super.getConfig(), ...config};
  }
}
tf.serialization.registerClass(MultiHeadAttention);

/**
 * Multi-head attention on the library's kernels; Keras-like config.
 *
 * ```js
 * const attn = layers.multiHeadAttention({numHeads: 8, keyDim: 64, causal: true});
 * const y = attn.apply(x);  // x: [batch, seq, features] → [batch, seq, features]
 * const local = layers.multiHeadAttention({numHeads: 8, keyDim: 64, causal: true,
 *                                         attention: {type: 'sliding', windowSize: 256}});
 * ```
 */
export function multiHeadAttention(args: MultiHeadAttentionArgs): MultiHeadAttention {
  return new MultiHeadAttention(args);
}
