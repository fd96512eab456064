/**
 * keras_hub.layers.TransformerDecoder on the library's kernels: keras_hub's config, sublayer weights (names, shapes,
 * order) and call. Self-attention is causal by default (useCausalMask, top-left as Keras: on the kernels' causal
 * mask since query and key lengths are equal); cross-attention is built when the layer is first applied with an
 * encoder sequence, and every later call must pass one too (as keras_hub).
 *   post-norm (default): x = LN(x + Dropout(SelfMHA(x))); x = LN(x + Dropout(CrossMHA(x, enc))); LN(x + FF(x))
 *   normalizeFirst:      x = x + Dropout(SelfMHA(LN(x))); x = x + Dropout(CrossMHA(LN(x), enc)); x + FF(LN(x))
 * Weights (Keras order): self_attention/..., self_attention_layer_norm, [cross_attention/...,
 * cross_attention_layer_norm], feedforward_intermediate_dense, feedforward_output_dense, feedforward_layer_norm.
 * Cached decoding as keras_hub: `selfAttentionCache` [batch, 2, capacity, numHeads, keyDim] and
 * `selfAttentionCacheUpdateIndex` make the call return [output, newCache] (see attention_cache.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import type {LayerArgs} from '@tensorflow/tfjs-layers/dist/engine/topology';
import type {Kwargs} from '@tensorflow/tfjs-layers/dist/types';
import {SymbolicTensor} from '@tensorflow/tfjs-layers';
import {checkLayerCache} from './attention_cache.js';
import {AttentionDims, AttentionWeights, attentionForward, Projection} from './attention_core.js';
import {checkConfigKeys, shapeList} from './layer_utils.js';
import {
  AddLayerWeight, addAttentionSublayer, addDense, addLayerNorm, applyLayerNorm, checkAttentionMask, checkPaddingMask,
  dropoutIf, feedforward, KerasHubLayer, LayerNormWeights, sequenceFeatures, TRANSFORMER_KEYS, TransformerArgsBase,
  TransformerConfig,
} from './transformer_utils.js';

type Shape = Array<number | null>;

export interface TransformerDecoderArgs extends LayerArgs, TransformerArgsBase {
  /** The build shapes Keras records in the config (accepted; the layer builds from the shapes it is applied to). */
  decoderSequenceShape?: Shape | null;
  encoderSequenceShape?: Shape | null;
}

/** Call arguments of apply(decoderSequence, {...}) (or apply([decoderSequence, encoderSequence], {...})). */
export interface TransformerDecoderCallArgs {
  encoderSequence?: tf.Tensor;
  /** [batch, decoderSeq] bool-like, true = a real token; else the decoder sequence's Keras mask. */
  decoderPaddingMask?: tf.Tensor;
  /** [batch, decoderSeq, decoderSeq] bool-like. */
  decoderAttentionMask?: tf.Tensor;
  /** [batch, encoderSeq]; else the encoder sequence's Keras mask. */
  encoderPaddingMask?: tf.Tensor;
  /** [batch, decoderSeq, encoderSeq] bool-like. */
  encoderAttentionMask?: tf.Tensor;
  /** Causal self-attention (default true). */
  useCausalMask?: boolean;
  training?: boolean;
  /**
   * keras_hub's self-attention cache [batch, 2, capacity, numHeads, hidden / numHeads] (keys, values): the call then
   * returns [output, newCache]. Eager calls only (decoding); the padding and attention masks of the decoder sequence
   * cannot be combined with it (they cover the new tokens, not the cache).
   */
  selfAttentionCache?: tf.Tensor;
  /**
   * Where the new tokens' keys and values are written (number, or integer tensor: scalar or [batch]); the tokens sit
   * at positions index + i, and causal self-attention sees keys j <= index + i. Without it the cache is used as is.
   */
  selfAttentionCacheUpdateIndex?: number | tf.Tensor;
}

const NAME = 'TransformerDecoder';

interface AttentionBlock {
  weights: AttentionWeights;
  dims: AttentionDims;
  norm: LayerNormWeights;
}

export class TransformerDecoder extends KerasHubLayer {
  static className = 'TransformerDecoder';
  protected readonly layerName = NAME;
  protected readonly firstRole = 'decoderSequence';
  protected readonly tensorArgNames = ['encoderSequence', 'decoderPaddingMask', 'decoderAttentionMask',
                                       'encoderPaddingMask', 'encoderAttentionMask'];
  protected readonly positionalRoles = ['decoderSequence', 'encoderSequence'];
  protected readonly callKeys = ['useCausalMask', 'selfAttentionCache', 'selfAttentionCacheUpdateIndex'];
  readonly config: TransformerConfig;
  private decoderSequenceShape: Shape | null = null;
  private encoderSequenceShape: Shape | null = null;
  private w?: {
    self: AttentionBlock;
    cross: AttentionBlock | null;
    intermediate: Projection;
    output: Projection;
    feedforwardNorm: LayerNormWeights;
  };

  constructor(args: TransformerDecoderArgs) {
    super(args);
    checkConfigKeys(NAME, args ?? {}, [...TRANSFORMER_KEYS, 'decoderSequenceShape', 'encoderSequenceShape']);
    this.config = new TransformerConfig(NAME, args);
    this.supportsMasking = true;
    // Recorded for getConfig; the layer is built (under its name scope) when first applied, from the real shapes.
    this.decoderSequenceShape = args.decoderSequenceShape ?? null;
    this.encoderSequenceShape = args.encoderSequenceShape ?? null;
  }

  override apply(inputs: tf.Tensor | tf.Tensor[] | SymbolicTensor | SymbolicTensor[], kwargs?: Kwargs):
      tf.Tensor | tf.Tensor[] | SymbolicTensor | SymbolicTensor[] {
    const first = Array.isArray(inputs) ? inputs[0] : inputs;
    if (first instanceof SymbolicTensor &&
        (kwargs?.selfAttentionCache != null || kwargs?.selfAttentionCacheUpdateIndex != null)) {
      throw new Error(`${NAME}: selfAttentionCache and selfAttentionCacheUpdateIndex are for eager calls (decoding), ` +
                      'not for symbolic tensors of a functional model');
    }
    return super.apply(inputs, kwargs);
  }

  override computeMask(inputs: tf.Tensor | tf.Tensor[], mask?: tf.Tensor | tf.Tensor[]): tf.Tensor {
    const outputMask = super.computeMask(inputs, mask);
    // With a cache the outputs are [output, cache]: one mask each.
    return (this.pendingArgs?.selfAttentionCache != null ? [outputMask, null] : outputMask) as tf.Tensor;
  }

  override build(inputShape: Shape | Shape[]): void {
    const shapes = shapeList(inputShape);
    const roles = this.pendingRoles ?? this.positionalRoles.slice(0, shapes.length);
    const decoderShape = shapes[0];
    const encoderIndex = roles.indexOf('encoderSequence');
    const encoderShape = encoderIndex >= 0 ? shapes[encoderIndex] : null;
    const features = sequenceFeatures(NAME, 'decoderSequence', decoderShape);
    const c = this.config;
    const add: AddLayerWeight = (name, shape, init) => this.addWeight(name, shape, 'float32', init);
    const block = (name: string, kvFeatures: number): AttentionBlock => {
      const a = addAttentionSublayer(add, c, name, NAME, features, kvFeatures);
      return {...a, norm: addLayerNorm(add, `${name}_layer_norm`, features)};
    };
    const self = block('self_attention', features);
    const cross = encoderShape == null ? null :
        block('cross_attention', sequenceFeatures(NAME, 'encoderSequence', encoderShape));
    this.w = {
      self, cross,
      intermediate: addDense(add, c, 'feedforward_intermediate_dense', features, c.intermediateDim),
      output: addDense(add, c, 'feedforward_output_dense', c.intermediateDim, features),
      feedforwardNorm: addLayerNorm(add, 'feedforward_layer_norm', features),
    };
    this.decoderSequenceShape = [...decoderShape];
    this.encoderSequenceShape = encoderShape == null ? null : [...encoderShape];
    this.built = true;
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    return shapeList(inputShape)[0];
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor | tf.Tensor[] {
    const list = Array.isArray(inputs) ? inputs : [inputs];
    const byRole = this.byRole(list);
    const x = byRole.decoderSequence!;
    const encoder = byRole.encoderSequence;
    const w = this.w!;
    if ((w.cross != null) !== (encoder != null)) {
      throw new Error(`${NAME}: the layer was built ${w.cross != null ? 'with' : 'without'} cross-attention, but ` +
                      `is called ${encoder != null ? 'with' : 'without'} encoderSequence; the inputs of a ` +
                      `TransformerDecoder must not change between calls`);
    }
    const args = (kwargs ?? {}) as TransformerDecoderCallArgs & {mask?: unknown};
    const masks = this.masksByRole(list, args.mask);
    const useCausalMask = args.useCausalMask ?? true;
    if (typeof useCausalMask !== 'boolean') {
      throw new Error(`${NAME}: useCausalMask must be a boolean, got ${JSON.stringify(useCausalMask)}`);
    }
    const [batch, seq] = x.shape;
    const cache = checkLayerCache(NAME, {cache: 'selfAttentionCache', index: 'selfAttentionCacheUpdateIndex'},
                                  args.selfAttentionCache, args.selfAttentionCacheUpdateIndex, w.self.dims, batch, seq);
    if (cache != null && (byRole.decoderPaddingMask != null || byRole.decoderAttentionMask != null)) {
      throw new Error(`${NAME}: decoderPaddingMask and decoderAttentionMask cannot be given with selfAttentionCache ` +
                      '(they cover the new tokens, not the cache)');
    }
    const decoderPadding = checkPaddingMask(NAME, 'decoderPaddingMask', byRole.decoderPaddingMask, batch, seq);
    const decoderAttention =
        checkAttentionMask(NAME, 'decoderAttentionMask', byRole.decoderAttentionMask, batch, seq, seq);
    const encoderSeq = encoder?.shape[1] ?? 0;
    const encoderPadding =
        encoder == null ? undefined : checkPaddingMask(NAME, 'encoderPaddingMask', byRole.encoderPaddingMask, batch,
                                                       encoderSeq);
    const encoderAttention = encoder == null ? undefined :
        checkAttentionMask(NAME, 'encoderAttentionMask', byRole.encoderAttentionMask, batch, seq, encoderSeq);
    const training = args.training === true;
    const c = this.config;
    const and = (a?: tf.Tensor, b?: tf.Tensor) =>
        a != null && b != null ? tf.logicalAnd(tf.cast(a, 'bool'), tf.cast(b, 'bool')) : a ?? b;
    let newCache: tf.Tensor | undefined;
    const output = tf.tidy(() => {
      const attentionBlock = (h: tf.Tensor, block: AttentionBlock, kv: tf.Tensor | null, opts: {
        keyMask?: tf.Tensor; attentionMask?: tf.Tensor; useCausalMask: boolean; cached?: boolean;
      }) => {
        const residual = h;
        if (c.normalizeFirst) h = applyLayerNorm(h, block.norm, c.layerNormEpsilon);
        const source = kv ?? h;
        const attended = attentionForward(block.weights, block.dims, h, source, source, {
          attention: c.attention, softcap: 0, precision: c.precision, dropout: c.dropout, training,
          queryMask: opts.cached ? undefined : masks.decoderSequence, keyMask: opts.keyMask,
          attentionMask: opts.attentionMask, useCausalMask: opts.useCausalMask, cache: opts.cached ? cache : null,
        });
        if (attended.cache != null) newCache = tf.keep(attended.cache);
        h = tf.add(dropoutIf(attended.output, c.dropout, training), residual);
        return c.normalizeFirst ? h : applyLayerNorm(h, block.norm, c.layerNormEpsilon);
      };
      // keras_hub: an explicit padding mask replaces the Keras mask; Keras's MultiHeadAttention adds the masks the
      // query and value still carry.
      let h = attentionBlock(x, w.self, null, {
        keyMask: cache != null ? undefined : and(masks.decoderSequence, decoderPadding), attentionMask: decoderAttention,
        useCausalMask, cached: cache != null,
      });
      if (w.cross != null) {
        h = attentionBlock(h, w.cross, encoder!, {
          keyMask: and(masks.encoderSequence, encoderPadding), attentionMask: encoderAttention, useCausalMask: false,
        });
      }
      const residual = h;
      if (c.normalizeFirst) h = applyLayerNorm(h, w.feedforwardNorm, c.layerNormEpsilon);
      h = tf.add(dropoutIf(feedforward(h, c, w.intermediate, w.output), c.dropout, training), residual);
      return c.normalizeFirst ? h : applyLayerNorm(h, w.feedforwardNorm, c.layerNormEpsilon);
    });
    return cache != null ? [output, newCache!] : output;
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(), ...this.config.toConfig(), decoderSequenceShape: this.decoderSequenceShape,
      encoderSequenceShape: this.encoderSequenceShape,
    };
  }
}
tf.serialization.registerClass(TransformerDecoder);

/**
 * keras_hub.layers.TransformerDecoder: `layers.transformerDecoder({intermediateDim: 256, numHeads: 4}).apply(x)`
 * (decoder-only, causal), or `.apply(x, {encoderSequence})` with cross-attention.
 */
export function transformerDecoder(args: TransformerDecoderArgs): TransformerDecoder {
  return new TransformerDecoder(args);
}
