/**
 * keras_hub.layers.TransformerEncoder on the library's kernels: keras_hub's config, sublayer weights (names, shapes,
 * order) and call (paddingMask, attentionMask, Keras masks, returnAttentionScores):
 *   post-norm (default): x = LN(x + Dropout(MHA(x))), then LN(x + Dropout(Dense(act(Dense(x)))))
 *   normalizeFirst:      x = x + Dropout(MHA(LN(x))), then x + Dropout(Dense(act(Dense(LN(x)))))
 * Weights (Keras order): self_attention_layer/{query,key,value,attention_output}/{kernel,bias},
 * self_attention_layer_norm/{gamma,beta}, feedforward_layer_norm/{gamma,beta},
 * feedforward_intermediate_dense/{kernel,bias}, feedforward_output_dense/{kernel,bias}.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {LayerArgs} from '@tensorflow/tfjs-layers/dist/engine/topology';
import type {Kwargs} from '@tensorflow/tfjs-layers/dist/types';
import {AttentionDims, AttentionWeights, attentionForward, Projection} from './attention_core.js';
import {checkConfigKeys, shapeList} from './layer_utils.js';
import {
  AddLayerWeight, addAttentionSublayer, addDense, addLayerNorm, applyLayerNorm, checkAttentionMask, checkPaddingMask,
  dropoutIf, feedforward, KerasHubLayer, LayerNormWeights, sequenceFeatures, TRANSFORMER_KEYS, TransformerArgsBase,
  TransformerConfig,
} from './transformer_utils.js';

type Shape = Array<number | null>;

export interface TransformerEncoderArgs extends LayerArgs, TransformerArgsBase {}

/** Call arguments of apply(inputs, {...}). */
export interface TransformerEncoderCallArgs {
  /** [batch, seq] bool-like, true = a real token (keras_hub's padding_mask); else the input's Keras mask. */
  paddingMask?: tf.Tensor;
  /** [batch, seq, seq] bool-like, true = may attend; combined with the padding mask. */
  attentionMask?: tf.Tensor;
  /** Return [output, scores [batch, heads, seq, seq]] (materializes the probabilities). */
  returnAttentionScores?: boolean;
  training?: boolean;
}

const NAME = 'TransformerEncoder';

export class TransformerEncoder extends KerasHubLayer {
  static className = 'TransformerEncoder';
  protected readonly layerName = NAME;
  protected readonly firstRole = 'inputs';
  protected readonly tensorArgNames = ['paddingMask', 'attentionMask'];
  protected readonly positionalRoles = ['inputs'];
  protected readonly callKeys = ['returnAttentionScores'];
  readonly config: TransformerConfig;
  private w?: {
    attention: AttentionWeights;
    dims: AttentionDims;
    attentionNorm: LayerNormWeights;
    feedforwardNorm: LayerNormWeights;
    intermediate: Projection;
    output: Projection;
  };

  constructor(args: TransformerEncoderArgs) {
    super(args);
    checkConfigKeys(NAME, args ?? {}, TRANSFORMER_KEYS);
    this.config = new TransformerConfig(NAME, args);
    this.supportsMasking = true;
  }

  override build(inputShape: Shape | Shape[]): void {
    const features = sequenceFeatures(NAME, 'inputs', shapeList(inputShape)[0]);
    const c = this.config;
    const add: AddLayerWeight = (name, shape, init) => this.addWeight(name, shape, 'float32', init);
    const attention = addAttentionSublayer(add, c, 'self_attention_layer', NAME, features, features);
    this.w = {
      attention: attention.weights,
      dims: attention.dims,
      attentionNorm: addLayerNorm(add, 'self_attention_layer_norm', features),
      feedforwardNorm: addLayerNorm(add, 'feedforward_layer_norm', features),
      intermediate: addDense(add, c, 'feedforward_intermediate_dense', features, c.intermediateDim),
      output: addDense(add, c, 'feedforward_output_dense', c.intermediateDim, features),
    };
    this.built = true;
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape | Shape[] {
    const shape = shapeList(inputShape)[0];
    return this.pendingArgs?.returnAttentionScores === true ?
        [shape, [shape[0], this.config.numHeads, shape[1], shape[1]]] : shape;
  }

  override computeMask(inputs: tf.Tensor | tf.Tensor[], mask?: tf.Tensor | tf.Tensor[]): tf.Tensor {
    const output = super.computeMask(inputs, mask);
    return (this.pendingArgs?.returnAttentionScores === true ? [output, null] : output) as tf.Tensor;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor | tf.Tensor[] {
    const list = Array.isArray(inputs) ? inputs : [inputs];
    const byRole = this.byRole(list);
    const x = byRole.inputs!;
    const args = (kwargs ?? {}) as TransformerEncoderCallArgs & {mask?: unknown};
    const kerasMask = this.masksByRole(list, args.mask).inputs;
    const [batch, seq] = x.shape;
    const paddingMask = checkPaddingMask(NAME, 'paddingMask', byRole.paddingMask, batch, seq);
    const attentionMask = checkAttentionMask(NAME, 'attentionMask', byRole.attentionMask, batch, seq, seq);
    const returnScores = args.returnAttentionScores === true;
    const training = args.training === true;
    const c = this.config;
    const w = this.w!;
    let scores: tf.Tensor | undefined;
    const output = tf.tidy(() => {
      let h: tf.Tensor = x;
      let residual = h;
      if (c.normalizeFirst) h = applyLayerNorm(h, w.attentionNorm, c.layerNormEpsilon);
      // keras_hub's merge_padding_and_attention_mask: an explicit paddingMask replaces the input's Keras mask;
      // Keras's MultiHeadAttention adds the query and value masks the (normed) input still carries.
      const padding = paddingMask ?? kerasMask;
      const keyMask = kerasMask != null && paddingMask != null ?
          tf.logicalAnd(tf.cast(kerasMask, 'bool'), tf.cast(paddingMask, 'bool')) : padding;
      const attended = attentionForward(w.attention, w.dims, h, h, h, {
        attention: c.attention, softcap: 0, precision: c.precision, dropout: c.dropout, training, attentionMask,
        queryMask: kerasMask,
        keyMask, returnScores,
      });
      if (attended.scores != null) scores = tf.keep(attended.scores);
      h = tf.add(dropoutIf(attended.output, c.dropout, training), residual);
      if (!c.normalizeFirst) h = applyLayerNorm(h, w.attentionNorm, c.layerNormEpsilon);
      residual = h;
      if (c.normalizeFirst) h = applyLayerNorm(h, w.feedforwardNorm, c.layerNormEpsilon);
      h = tf.add(dropoutIf(feedforward(h, c, w.intermediate, w.output), c.dropout, training), residual);
      if (!c.normalizeFirst) h = applyLayerNorm(h, w.feedforwardNorm, c.layerNormEpsilon);
      return h;
    });
    return returnScores ? [output, scores!] : output;
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {...super.getConfig(), ...this.config.toConfig()};
  }
}
tf.serialization.registerClass(TransformerEncoder);

/**
 * keras_hub.layers.TransformerEncoder: `layers.transformerEncoder({intermediateDim: 256, numHeads: 4})
 * .apply(x, {paddingMask})`.
 */
export function transformerEncoder(args: TransformerEncoderArgs): TransformerEncoder {
  return new TransformerEncoder(args);
}
