/**
 * Adds a position embedding to its input, as GPT adds wpe to wte: [batch, seq, features] → same shape.
 */
import * as tf from '@tensorflow/tfjs-core';
import {initializers, layers, LayerVariable} from '@tensorflow/tfjs-layers';
import type {LayerArgs} from '@tensorflow/tfjs-layers/dist/engine/topology';
import type {Kwargs} from '@tensorflow/tfjs-layers/dist/types';
import {checkPositiveInt} from './layer_utils.js';

type Shape = Array<number | null>;

export interface PositionEmbeddingArgs extends LayerArgs {
  /**
   * 'learned' (default): a trainable [maxLength, features] table (initialised N(0, 0.02²) as GPT-2).
   * 'sinusoidal': the fixed encoding of "Attention Is All You Need" (no weights, any length).
   */
  type?: 'learned' | 'sinusoidal';
  /** Longest sequence the learned table covers (required for 'learned'). */
  maxLength?: number;
  /** Sinusoidal only: the longest wavelength (default 10000). */
  maxWavelength?: number;
}

export class PositionEmbedding extends layers.Layer {
  static className = 'PositionEmbedding';

  readonly type: 'learned' | 'sinusoidal';
  readonly maxLength?: number;
  readonly maxWavelength: number;
  private embeddings?: LayerVariable;
  private sinusoidCache?: {seq: number; features: number; values: Float32Array};

  constructor(args: PositionEmbeddingArgs = {}) {
    super(args);
    const name = 'PositionEmbedding';
    const type = args.type ?? 'learned';
    if (type !== 'learned' && type !== 'sinusoidal') {
      throw new Error(`${name}: type must be 'learned' or 'sinusoidal', got ${JSON.stringify(type)}`);
    }
    this.type = type;
    if (type === 'learned' || args.maxLength != null) {
      this.maxLength = checkPositiveInt(name, 'maxLength', args.maxLength);
    }
    this.maxWavelength = args.maxWavelength ?? 10000;
    if (!(this.maxWavelength > 0)) {
      throw new Error(`${name}: maxWavelength must be a positive number, got ${args.maxWavelength}`);
    }
  }

  override build(inputShape: Shape | Shape[]): void {
    const shape = (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as Shape;
    const features = shape[shape.length - 1];
    if (shape.length !== 3 || features == null) {
      throw new Error(`PositionEmbedding expects [batch, seq, features] with known features, got [${shape}]`);
    }
    if (this.type === 'learned') {
      this.embeddings = this.addWeight(
          'embeddings', [this.maxLength!, features], 'float32', initializers.randomNormal({mean: 0, stddev: 0.02}));
    }
    this.built = true;
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    return (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as Shape;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], _kwargs: Kwargs): tf.Tensor {
    return tf.tidy(() => {
      const x = Array.isArray(inputs) ? inputs[0] : inputs;
      const [, seq, features] = x.shape;
      if (this.maxLength != null && seq > this.maxLength) {
        throw new Error(`PositionEmbedding: sequence length ${seq} exceeds maxLength ${this.maxLength}`);
      }
      const positions = this.type === 'learned' ?
          tf.slice(this.embeddings!.read(), [0, 0], [seq, features]) :
          tf.tensor2d(this.sinusoids(seq, features), [seq, features]);
      return tf.add(x, positions);
    });
  }

  /** PE[p, 2i] = sin(p / λ^(2i/F)), PE[p, 2i+1] = cos(p / λ^(2i/F)) with λ = maxWavelength. */
  private sinusoids(seq: number, features: number): Float32Array {
    const c = this.sinusoidCache;
    if (c != null && c.seq === seq && c.features === features) return c.values;
    const values = new Float32Array(seq * features);
    for (let p = 0; p < seq; p++) {
      for (let f = 0; f < features; f++) {
        const angle = p / Math.pow(this.maxWavelength, (2 * Math.floor(f / 2)) / features);
        values[p * features + f] = f % 2 === 0 ? Math.sin(angle) : Math.cos(angle);
      }
    }
    this.sinusoidCache = {seq, features, values};
    return values;
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      type: this.type,
      maxLength: this.maxLength ?? null,
      maxWavelength: this.maxWavelength,
    };
  }
}
tf.serialization.registerClass(PositionEmbedding);

/**
 * Adds learned or sinusoidal position embeddings to [batch, seq, features] inputs.
 *
 * ```js
 * const h = layers.positionEmbedding({maxLength: 1024}).apply(tf.layers.embedding({inputDim: vocab, outputDim: 64})
 *     .apply(tokens));
 * ```
 */
export function positionEmbedding(args?: PositionEmbeddingArgs): PositionEmbedding {
  return new PositionEmbedding(args);
}
