/** Small pieces the layers share: initializers by name, layer normalization, GELU, argument checks. */
import * as tf from '@tensorflow/tfjs-core';
import {initializers} from '@tensorflow/tfjs-layers';
import type {AddWeight} from './attention_core.js';

/** What tf.layers' addWeight takes as an initializer (its class is not exported from the package root). */
export type Initializer = ReturnType<typeof initializers.zeros>;

/**
 * An AddWeight for a layer, given its (protected) addWeight bound to it: kernels get `kernelInitializer`, biases
 * `biasInitializer` (both Keras objects resolved by kerasObject).
 */
export function weightAdder(
    addWeight: (name: string, shape: number[], dtype: tf.DataType, init: Initializer) => unknown,
    kernelInitializer: unknown, biasInitializer: unknown): AddWeight {
  return (name, shape, role) =>
             addWeight(name, shape, 'float32', (role === 'kernel' ? kernelInitializer : biasInitializer) as Initializer) as
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

/**
 * Throws naming the first key of `config` that is not in `known` (nor a tf.layers base-layer key): a misspelt or
 * unsupported option must not be silently ignored.
 */
export function checkConfigKeys(layer: string, config: object, known: readonly string[]): void {
  for (const key of Object.keys(config)) {
    if (!BASE_LAYER_KEYS.includes(key) && !known.includes(key)) {
      throw new Error(`${layer}: unknown config key '${key}' (known: ${known.join(', ')})`);
    }
  }
}

/** LayerArgs keys tf.layers' Layer constructor handles (plus `inputDType`, which converted models carry). */
const BASE_LAYER_KEYS = ['name', 'trainable', 'inputShape', 'batchInputShape', 'batchSize', 'dtype', 'weights',
                         'inputDType', 'dynamic', 'customObjects'];

/** Throws naming the first call argument not in `known`. */
export function checkCallKeys(layer: string, kwargs: object | undefined, known: readonly string[]): void {
  for (const [key, value] of Object.entries(kwargs ?? {})) {
    if (!known.includes(key) && value !== undefined) {
      throw new Error(`${layer}: unknown call argument '${key}' (known: ${known.join(', ')})`);
    }
  }
}

type SerializableClass = tf.serialization.SerializableConstructor<tf.serialization.Serializable>;

/** Class names tf.layers registers per kind, so 'glorot_uniform', 'glorotUniform' and 'GlorotUniform' all resolve. */
const KERAS_CLASSES = {
  initializer: ['Zeros', 'Ones', 'Constant', 'RandomUniform', 'RandomNormal', 'TruncatedNormal', 'Identity',
                'VarianceScaling', 'GlorotUniform', 'GlorotNormal', 'HeNormal', 'HeUniform', 'LeCunNormal',
                'LeCunUniform', 'Orthogonal'],
  regularizer: ['L1L2'],
  constraint: ['MaxNorm', 'UnitNorm', 'NonNeg', 'MinMaxNorm'],
};
export type KerasObjectKind = keyof typeof KERAS_CLASSES;

/**
 * An initializer / regularizer / constraint from what a config may hold: null (none), an instance, a name in any
 * case style ('glorot_uniform', 'glorotUniform', 'GlorotUniform'; regularizers also 'l1', 'l2', 'l1_l2') or a
 * serialized {className, config} (Keras' {class_name, config} after tfjs' key conversion). Anything else throws
 * naming `what`.
 */
export function kerasObject<T>(layer: string, what: string, kind: KerasObjectKind, value: unknown): T | null {
  if (value == null) return null;
  if (typeof value === 'object' && typeof (value as {getClassName?: unknown}).getClassName === 'function' &&
      typeof (value as {getConfig?: unknown}).getConfig === 'function') {
    return value as T;
  }
  let className: string | undefined;
  let config: tf.serialization.ConfigDict = {};
  if (typeof value === 'string') {
    const normalized = value.replace(/_/g, '').toLowerCase();
    if (kind === 'regularizer' && ['l1', 'l2', 'l1l2'].includes(normalized)) {
      className = 'L1L2';
      config = normalized === 'l1' ? {l1: 0.01, l2: 0} : normalized === 'l2' ? {l1: 0, l2: 0.01} : {l1: 0.01, l2: 0.01};
    } else {
      className = KERAS_CLASSES[kind].find((c) => c.toLowerCase() === normalized);
    }
  } else if (typeof value === 'object' && typeof (value as {className?: unknown}).className === 'string') {
    const v = value as {className: string; config?: tf.serialization.ConfigDict};
    className = KERAS_CLASSES[kind].find((c) => c === v.className);
    config = {...(v.config ?? {})};
  }
  const entry = className == null ? undefined :
      (tf.serialization.SerializationMap.getMap().classNameMap[className] as
           [SerializableClass, (cls: SerializableClass, config: tf.serialization.ConfigDict) => unknown] | undefined);
  if (entry == null) {
    throw new Error(`${layer}: ${what} must be null, a ${kind} name (${KERAS_CLASSES[kind].join(', ')}), an ` +
                    `instance or {className, config}, got ${JSON.stringify(value)}`);
  }
  return entry[1](entry[0], config) as T;
}

/** {className, config} of a Keras object (null stays null): what getConfig stores and Keras' JSON holds. */
export function serializeKerasObject(value: unknown): tf.serialization.ConfigDictValue {
  if (value == null) return null;
  const object = value as tf.serialization.Serializable;
  return {className: object.getClassName(), config: object.getConfig()};
}
