/** Small pieces the layers share: initializers by name, layer normalization, GELU, argument checks. */
import * as tf from '@tensorflow/tfjs-core';
import {initializers} from '@tensorflow/tfjs-layers';
import type {AddWeight, InitializerName} from './attention_core.js';

type Initializer = ReturnType<typeof initializers.zeros>;

export function makeInitializer(name: InitializerName, fans?: [number, number]): Initializer {
  switch (name) {
    case 'zeros': return initializers.zeros();
    case 'ones': return initializers.ones();
    case 'glorotUniform': {
      const glorot = initializers.glorotUniform({});
      if (fans == null) return glorot;
      // Initialise as the 2-D [fanIn, fanOut] kernel it is equivalent to, then reshape (addWeight only calls apply).
      const apply = (shape: number[], dtype?: tf.DataType) =>
          tf.tidy(() => tf.reshape(glorot.apply(fans, dtype), shape));
      return {apply} as unknown as Initializer;
    }
  }
}

/** An AddWeight for a layer, given its (protected) addWeight bound to it. */
export function weightAdder(
    addWeight: (name: string, shape: number[], dtype: tf.DataType, init: Initializer) => unknown): AddWeight {
  return (name, shape, init, fans) => addWeight(name, shape, 'float32', makeInitializer(init, fans)) as
      ReturnType<AddWeight>;
}

/** Normalizes over the last axis: (x - mean) / sqrt(var + epsilon) * gamma + beta. */
export function layerNorm(x: tf.Tensor, gamma: tf.Tensor, beta: tf.Tensor, epsilon: number): tf.Tensor {
  return tf.tidy(() => {
    const {mean, variance} = tf.moments(x, -1, true);
    return tf.add(tf.mul(tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, epsilon))), gamma), beta);
  });
}

/** GELU, exact form x·Φ(x) = 0.5·x·(1 + erf(x/√2)) (as Keras' gelu with approximate=false). */
export function gelu(x: tf.Tensor): tf.Tensor {
  return tf.tidy(() => tf.mul(tf.mul(x, 0.5), tf.add(1, tf.erf(tf.mul(x, Math.SQRT1_2)))));
}

export function checkPositiveInt(layer: string, name: string, value: unknown): number {
  if (!Number.isInteger(value) || (value as number) < 1) {
    throw new Error(`${layer}: ${name} must be a positive integer, got ${JSON.stringify(value)}`);
  }
  return value as number;
}

export function checkRate(layer: string, name: string, value: unknown): number {
  if (value === undefined) return 0;
  if (typeof value !== 'number' || !(value >= 0 && value < 1)) {
    throw new Error(`${layer}: ${name} must be a number in [0, 1), got ${JSON.stringify(value)}`);
  }
  return value;
}

export function checkOptionalBoolean(layer: string, name: string, value: unknown, fallback: boolean): boolean {
  if (value === undefined) return fallback;
  if (typeof value !== 'boolean') throw new Error(`${layer}: ${name} must be a boolean, got ${JSON.stringify(value)}`);
  return value;
}

export function checkSoftcapValue(layer: string, value: unknown): number {
  if (value === undefined || value === 0) return 0;
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
    throw new Error(`${layer}: softcap must be a finite number >= 0 (0 disables it), got ${JSON.stringify(value)}`);
  }
  return value;
}

/** A layer's input shape(s) as a list: tf.layers passes one Shape or a Shape[]. */
export function shapeList(inputShape: Array<number | null> | Array<Array<number | null>>): Array<Array<number | null>> {
  type Shape = Array<number | null>;
  return Array.isArray(inputShape[0]) ? inputShape as Shape[] : [inputShape as Shape];
}
