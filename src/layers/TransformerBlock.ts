/**
 * A pre-norm transformer block (GPT-2 style):
 *   h   = x + Dropout(MultiHeadAttention(LayerNorm(x)))
 *   out = h + Dropout(Dense(act(Dense(LayerNorm(h)))))
 * The attention is the library's (flash / sliding / sparse), causal by default (a decoder block).
 */
import * as tf from '@tensorflow/tfjs-core';
import {layers, LayerVariable} from '@tensorflow/tfjs-layers';
import type {LayerArgs} from '@tensorflow/tfjs-layers/dist/engine/topology';
import type {Kwargs} from '@tensorflow/tfjs-layers/dist/types';
import {
  AddWeight, addAttentionWeights, AttentionDims, AttentionWeights, attentionForward, project, toKeyLengths,
} from './attention_core.js';
import {AttentionSpec, checkAttentionSpec, ResolvedAttention} from './attention_spec.js';
import {
  checkOptionalBoolean, checkPositiveInt, checkRate, checkSoftcapValue, gelu, layerNorm, shapeList, weightAdder,
} from './layer_utils.js';

type Shape = Array<number | null>;

export interface TransformerBlockArgs extends LayerArgs {
  numHeads: number;
  /** Per-head size (default features / numHeads). */
  keyDim?: number;
  /** Grouped-query attention: key/value heads (default numHeads). */
  numKeyValueHeads?: number;
  /** Hidden size of the MLP (default 4 × features). */
  mlpDim?: number;
  /** MLP activation (default 'gelu'). */
  activation?: 'gelu' | 'relu';
  /**
   * Dropout rate when training, on the attention output and on both residual branches (attention-probability dropout
   * is not available: the kernels never form the probabilities). Default 0.
   */
  dropout?: number;
  /** Causal self-attention (default true). */
  causal?: boolean;
  /** Which attention runs (default 'flash'); see AttentionSpec. */
  attention?: AttentionSpec;
  useBias?: boolean;
  layerNormEpsilon?: number;
  softcap?: number;
}

export class TransformerBlock extends layers.Layer {
  static className = 'TransformerBlock';

  readonly numHeads: number;
  readonly keyDim?: number;
  readonly numKeyValueHeads: number;
  readonly mlpDim?: number;
  readonly activation: 'gelu' | 'relu';
  readonly dropout: number;
  readonly causal: boolean;
  readonly useBias: boolean;
  readonly layerNormEpsilon: number;
  readonly softcap: number;
  readonly attention: ResolvedAttention;
  private dims?: AttentionDims;
  private w?: {
    ln1: [LayerVariable, LayerVariable];
    ln2: [LayerVariable, LayerVariable];
    attention: AttentionWeights;
    mlpIn: [LayerVariable, LayerVariable | null];
    mlpOut: [LayerVariable, LayerVariable | null];
  };

  constructor(args: TransformerBlockArgs) {
    super(args);
    const name = 'TransformerBlock';
    if (args == null) throw new Error(`${name}: config {numHeads, ...} must be given`);
    this.numHeads = checkPositiveInt(name, 'numHeads', args.numHeads);
    this.keyDim = args.keyDim == null ? undefined : checkPositiveInt(name, 'keyDim', args.keyDim);
    this.numKeyValueHeads = checkPositiveInt(name, 'numKeyValueHeads', args.numKeyValueHeads ?? this.numHeads);
    if (this.numHeads % this.numKeyValueHeads !== 0) {
      throw new Error(`${name}: numHeads (${this.numHeads}) must be divisible by numKeyValueHeads (${
          this.numKeyValueHeads})`);
    }
    this.mlpDim = args.mlpDim == null ? undefined : checkPositiveInt(name, 'mlpDim', args.mlpDim);
    const activation = args.activation ?? 'gelu';
    if (activation !== 'gelu' && activation !== 'relu') {
      throw new Error(`${name}: activation must be 'gelu' or 'relu', got ${JSON.stringify(activation)}`);
    }
    this.activation = activation;
    this.dropout = checkRate(name, 'dropout', args.dropout);
    this.causal = checkOptionalBoolean(name, 'causal', args.causal, true);
    this.useBias = checkOptionalBoolean(name, 'useBias', args.useBias, true);
    this.layerNormEpsilon = args.layerNormEpsilon ?? 1e-5;
    if (!(this.layerNormEpsilon > 0)) {
      throw new Error(`${name}: layerNormEpsilon must be a positive number, got ${args.layerNormEpsilon}`);
    }
    this.softcap = checkSoftcapValue(name, args.softcap);
    this.attention = new ResolvedAttention(checkAttentionSpec(args.attention, this.causal), this.causal);
  }

  override build(inputShape: Shape | Shape[]): void {
    const shape = shapeList(inputShape)[0];
    const features = shape[2];
    if (shape.length !== 3 || features == null) {
      throw new Error(`TransformerBlock expects [batch, seq, features] with known features, got [${shape}]`);
    }
    const keyDim = this.keyDim ?? features / this.numHeads;
    if (!Number.isInteger(keyDim)) {
      throw new Error(`TransformerBlock: features (${features}) must be divisible by numHeads (${
          this.numHeads}), or give keyDim`);
    }
    this.dims = {
      numHeads: this.numHeads, numKeyValueHeads: this.numKeyValueHeads, keyDim, valueDim: keyDim,
      queryFeatures: features, keyFeatures: features, valueFeatures: features, outputDim: features,
      useBias: this.useBias,
    };
    const add: AddWeight = weightAdder(this.addWeight.bind(this));
    const mlpDim = this.mlpDim ?? 4 * features;
    this.w = {
      ln1: [add('ln_1/gamma', [features], 'ones'), add('ln_1/beta', [features], 'zeros')],
      attention: addAttentionWeights(add, 'attention/', this.dims),
      ln2: [add('ln_2/gamma', [features], 'ones'), add('ln_2/beta', [features], 'zeros')],
      mlpIn: [
        add('mlp/intermediate/kernel', [features, mlpDim], 'glorotUniform'),
        this.useBias ? add('mlp/intermediate/bias', [mlpDim], 'zeros') : null,
      ],
      mlpOut: [
        add('mlp/output/kernel', [mlpDim, features], 'glorotUniform'),
        this.useBias ? add('mlp/output/bias', [features], 'zeros') : null,
      ],
    };
    this.built = true;
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    return shapeList(inputShape)[0];
  }

  /**
   * inputs: x [batch, seq, features], or [x, keyLengths [batch] | [batch, 1]]. kwargs: training, keyLengths (number[] |
   * Tensor1D): keys at positions >= keyLengths[b] are masked (right padding).
   */
  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      const list = Array.isArray(inputs) ? inputs : [inputs];
      const x = list[0];
      if (x.rank !== 3 || list.length > 2 || (list.length === 2 && list[1].rank > 2)) {
        throw new Error(`TransformerBlock expects x [batch, seq, features] or [x, keyLengths [batch] | [batch, 1]], ` +
                        `got shapes ${JSON.stringify(list.map((t) => t.shape))}`);
      }
      const training = kwargs?.training === true;
      const w = this.w!;
      const dropout = (t: tf.Tensor) => training && this.dropout > 0 ? tf.dropout(t, this.dropout) : t;
      const normed1 = layerNorm(x, w.ln1[0].read(), w.ln1[1].read(), this.layerNormEpsilon);
      const attended = attentionForward(w.attention, this.dims!, this.attention, normed1, normed1, normed1, {
        keyLengths: toKeyLengths(list[1] ?? kwargs?.keyLengths, x.shape[0] as number, x.shape[1] as number),
        training,
        dropout: this.dropout,
        softcap: this.softcap,
      });
      const h = tf.add(x, dropout(attended));
      const normed2 = layerNorm(h, w.ln2[0].read(), w.ln2[1].read(), this.layerNormEpsilon);
      const hidden = this.activation === 'gelu' ? gelu(dense(normed2, w.mlpIn)) : tf.relu(dense(normed2, w.mlpIn));
      return tf.add(h, dropout(dense(hidden, w.mlpOut)));
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    const config: tf.serialization.ConfigDict = {
      numHeads: this.numHeads,
      keyDim: this.keyDim ?? null,
      numKeyValueHeads: this.numKeyValueHeads,
      mlpDim: this.mlpDim ?? null,
      activation: this.activation,
      dropout: this.dropout,
      causal: this.causal,
      attention: this.attention.spec as tf.serialization.ConfigDictValue,
      useBias: this.useBias,
      layerNormEpsilon: this.layerNormEpsilon,
      softcap: this.softcap,
    };
    return {...super.getConfig(), ...config};
  }
}
tf.serialization.registerClass(TransformerBlock);

/** Dense over the last axis: x [..., in] · kernel [in, out] (+ bias). */
function dense(x: tf.Tensor, [kernel, bias]: [LayerVariable, LayerVariable | null]): tf.Tensor {
  return project(x, {kernel, bias}, [...x.shape.slice(0, -1), kernel.shape[1]!]);
}

/**
 * A pre-norm (GPT-2 style) transformer decoder block on the library's attention.
 *
 * ```js
 * const model = tf.sequential({layers: [
 *   tf.layers.embedding({inputDim: vocab, outputDim: 128, inputShape: [null]}),
 *   layers.positionEmbedding({maxLength: 2048}),
 *   layers.transformerBlock({numHeads: 4}),
 *   layers.transformerBlock({numHeads: 4, attention: {type: 'sliding', windowSize: 256}}),
 *   tf.layers.layerNormalization(),
 *   tf.layers.dense({units: vocab}),
 * ]});
 * ```
 */
export function transformerBlock(args: TransformerBlockArgs): TransformerBlock {
  return new TransformerBlock(args);
}
