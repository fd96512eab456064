/**
 * keras_hub's RotaryEmbedding as a tf.layers layer (same class name, config keys and outputs; the config is camelCase
 * in tfjs and snake_case in the Keras JSON, as tfjs-layers converts every layer's). No weights.
 */
import * as tf from '@tensorflow/tfjs-core';
import {layers} from '@tensorflow/tfjs-layers';
import type {LayerArgs} from '@tensorflow/tfjs-layers/dist/engine/topology';
import type {Kwargs} from '@tensorflow/tfjs-layers/dist/types';
import {rotaryEmbedding} from '../ops/rotary_embedding.js';

type Shape = Array<number | null>;

export interface RotaryEmbeddingArgs extends LayerArgs {
  /** The longest wavelength of the sine/cosine curves (default 10000). */
  maxWavelength?: number;
  /** Positions are divided by it (default 1). */
  scalingFactor?: number;
  /** Sequence axis of the input (default 1). */
  sequenceAxis?: number;
  /** Feature axis of the input (default -1). */
  featureAxis?: number;
}

/**
 * Applies rotary position embeddings to its input (any rank with a sequence and a feature axis, typically
 * [batch, seq, heads, headDim] queries or keys). Call kwargs, as keras_hub's call arguments: `startIndex` (number or
 * tensor, default 0; cached decoding) or `positions` (see rotaryEmbedding).
 *
 * ```js
 * const rope = new RotaryEmbedding({maxWavelength: 10000});
 * const qRotated = rope.apply(q, {startIndex: 12}) as tf.Tensor;
 * ```
 */
export class RotaryEmbedding extends layers.Layer {
  static className = 'RotaryEmbedding';

  readonly maxWavelength: number;
  readonly scalingFactor: number;
  readonly sequenceAxis: number;
  readonly featureAxis: number;

  constructor(args: RotaryEmbeddingArgs = {}) {
    super(args);
    this.maxWavelength = args.maxWavelength ?? 10000;
    this.scalingFactor = args.scalingFactor ?? 1;
    this.sequenceAxis = args.sequenceAxis ?? 1;
    this.featureAxis = args.featureAxis ?? -1;
    for (const [name, value] of [['maxWavelength', this.maxWavelength], ['scalingFactor', this.scalingFactor]] as const) {
      if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
        throw new Error(`RotaryEmbedding: ${name} must be a finite number > 0, got ${String(value)}`);
      }
    }
    for (const [name, value] of [['sequenceAxis', this.sequenceAxis], ['featureAxis', this.featureAxis]] as const) {
      if (!Number.isInteger(value)) throw new Error(`RotaryEmbedding: ${name} must be an integer, got ${value}`);
    }
    this.supportsMasking = true;
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    return (Array.isArray(inputShape[0]) ? inputShape[0] : inputShape) as Shape;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor {
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    const {startIndex, positions} = (kwargs ?? {}) as {startIndex?: number | tf.Tensor, positions?: tf.Tensor};
    return rotaryEmbedding(x, {
      startIndex, positions, maxWavelength: this.maxWavelength, scalingFactor: this.scalingFactor,
      sequenceAxis: this.sequenceAxis, featureAxis: this.featureAxis,
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      maxWavelength: this.maxWavelength,
      scalingFactor: this.scalingFactor,
      sequenceAxis: this.sequenceAxis,
      featureAxis: this.featureAxis,
    };
  }
}
tf.serialization.registerClass(RotaryEmbedding);

/** new RotaryEmbedding(args), in the style of tf.layers' factory functions. */
export function rotaryEmbeddingLayer(args?: RotaryEmbeddingArgs): RotaryEmbedding {
  return new RotaryEmbedding(args);
}
