/**
 * Pieces keras_hub's TransformerEncoder and TransformerDecoder share: their config (keras_hub's keys and defaults,
 * checked), the sublayer weights they own under Keras's sublayer names (so weights exported from Keras load
 * unchanged), the feed-forward block, and the masks of keras_hub's transformer_layer_utils.
 */
import * as tf from '@tensorflow/tfjs-core';
import {initializers, layers, LayerVariable, SymbolicTensor} from '@tensorflow/tfjs-layers';
import type {Kwargs} from '@tensorflow/tfjs-layers/dist/types';
import {AddWeight, addAttentionWeights, AttentionDims, AttentionWeights, Projection, project} from
    './attention_core.js';
import {AttentionPrecision, checkPrecision} from '../plan/precision.js';
import {AttentionSpec, checkAttentionSpec, ResolvedAttention} from './attention_spec.js';
import {gatherTensorArgs, TENSOR_ARGS_KEY} from './functional.js';
import {
  checkCallKeys, checkOptionalBoolean, checkPositiveInt, checkRate, gelu, Initializer, kerasObject, layerNorm,
  serializeKerasObject,
} from './layer_utils.js';

type Shape = Array<number | null>;

/** keras_hub's config of TransformerEncoder / TransformerDecoder, plus our `attention`. */
export interface TransformerArgsBase {
  /** Hidden size of the feed-forward network. */
  intermediateDim: number;
  numHeads: number;
  /** Shared by the attention probabilities, the attention output and the feed-forward output (default 0). */
  dropout?: number;
  /** Feed-forward activation (default 'relu'): relu, gelu (exact, as Keras), tanh, sigmoid, linear, ... */
  activation?: string;
  layerNormEpsilon?: number;
  kernelInitializer?: unknown;
  biasInitializer?: unknown;
  /** Pre-norm (GPT-2) when true, post-norm (BERT, the default) when false. */
  normalizeFirst?: boolean;
  /** Ours: which attention runs in the attention sublayers (default 'flash'); see AttentionSpec. */
  attention?: AttentionSpec;
  /** Ours: the attention ops' precision option (see MultiHeadAttention); null / absent: the ATTENTION_PRECISION flag. */
  precision?: AttentionPrecision | null;
}

export const TRANSFORMER_KEYS = ['intermediateDim', 'numHeads', 'dropout', 'activation', 'layerNormEpsilon',
                                 'kernelInitializer', 'biasInitializer', 'normalizeFirst', 'attention',
                                 'precision'];

const ACTIVATIONS: Record<string, (x: tf.Tensor) => tf.Tensor> = {
  relu: tf.relu,
  gelu,
  tanh: tf.tanh,
  sigmoid: tf.sigmoid,
  linear: (x) => x,
  elu: tf.elu,
  selu: tf.selu,
  softplus: tf.softplus,
  relu6: tf.relu6,
  swish: (x) => tf.mul(x, tf.sigmoid(x)),
  silu: (x) => tf.mul(x, tf.sigmoid(x)),
};

export class TransformerConfig {
  readonly intermediateDim: number;
  readonly numHeads: number;
  readonly dropout: number;
  readonly activation: string;
  readonly layerNormEpsilon: number;
  readonly kernelInitializer: Initializer;
  readonly biasInitializer: Initializer;
  readonly normalizeFirst: boolean;
  readonly attention: ResolvedAttention;
  readonly precision: AttentionPrecision | null;

  constructor(layer: string, args: TransformerArgsBase) {
    if (args == null) throw new Error(`${layer}: config {intermediateDim, numHeads, ...} must be given`);
    this.intermediateDim = checkPositiveInt(layer, 'intermediateDim', args.intermediateDim);
    this.numHeads = checkPositiveInt(layer, 'numHeads', args.numHeads);
    this.dropout = checkRate(layer, 'dropout', args.dropout ?? undefined);
    const activation = args.activation ?? 'relu';
    if (typeof activation !== 'string' || !(activation in ACTIVATIONS)) {
      throw new Error(`${layer}: activation must be one of ${Object.keys(ACTIVATIONS).join(', ')}, got ${
          JSON.stringify(activation)}`);
    }
    this.activation = activation;
    this.layerNormEpsilon = args.layerNormEpsilon ?? 1e-5;
    if (typeof this.layerNormEpsilon !== 'number' || !(this.layerNormEpsilon > 0)) {
      throw new Error(`${layer}: layerNormEpsilon must be a positive number, got ${
          JSON.stringify(args.layerNormEpsilon)}`);
    }
    this.kernelInitializer =
        kerasObject<Initializer>(layer, 'kernelInitializer', 'initializer', args.kernelInitializer ?? 'glorotUniform')!;
    this.biasInitializer =
        kerasObject<Initializer>(layer, 'biasInitializer', 'initializer', args.biasInitializer ?? 'zeros')!;
    this.normalizeFirst = checkOptionalBoolean(layer, 'normalizeFirst', args.normalizeFirst ?? undefined, false);
    this.attention = new ResolvedAttention(checkAttentionSpec(args.attention, false), false);
    this.precision = args.precision == null ? null : checkPrecision(args.precision, `${layer}: precision`);
  }

  activate(x: tf.Tensor): tf.Tensor {
    return ACTIVATIONS[this.activation](x);
  }

  toConfig(): tf.serialization.ConfigDict {
    const config: tf.serialization.ConfigDict = {
      intermediateDim: this.intermediateDim,
      numHeads: this.numHeads,
      dropout: this.dropout,
      activation: this.activation,
      layerNormEpsilon: this.layerNormEpsilon,
      kernelInitializer: serializeKerasObject(this.kernelInitializer),
      biasInitializer: serializeKerasObject(this.biasInitializer),
      normalizeFirst: this.normalizeFirst,
    };
    if (this.attention.spec !== 'flash') config.attention = this.attention.spec as tf.serialization.ConfigDictValue;
    if (this.precision != null) config.precision = this.precision;
    return config;
  }
}

/** Layer.addWeight of the owning layer (protected there), with an initializer. */
export type AddLayerWeight = (name: string, shape: number[], init: Initializer) => LayerVariable;

export interface LayerNormWeights {
  gamma: LayerVariable;
  beta: LayerVariable;
}

export function addLayerNorm(add: AddLayerWeight, name: string, features: number): LayerNormWeights {
  return {gamma: add(`${name}/gamma`, [features], initializers.ones()),
          beta: add(`${name}/beta`, [features], initializers.zeros())};
}

export function applyLayerNorm(x: tf.Tensor, w: LayerNormWeights, epsilon: number): tf.Tensor {
  return layerNorm(x, w.gamma.read(), w.beta.read(), epsilon);
}

export function addDense(add: AddLayerWeight, c: TransformerConfig, name: string, inputs: number, units: number):
    Projection {
  return {kernel: add(`${name}/kernel`, [inputs, units], c.kernelInitializer),
          bias: add(`${name}/bias`, [units], c.biasInitializer)};
}

/** A MultiHeadAttention sublayer's weights (keyDim = valueDim = features / numHeads, as keras_hub). */
export function addAttentionSublayer(add: AddLayerWeight, c: TransformerConfig, name: string, layer: string,
                                     queryFeatures: number, kvFeatures: number):
    {weights: AttentionWeights; dims: AttentionDims} {
  const keyDim = Math.floor(queryFeatures / c.numHeads);
  if (keyDim === 0) {
    throw new Error(`${layer}: the hidden size ${queryFeatures} must be at least numHeads (${c.numHeads})`);
  }
  const dims: AttentionDims = {
    numHeads: c.numHeads, numKeyValueHeads: c.numHeads, keyDim, valueDim: keyDim, queryFeatures,
    keyFeatures: kvFeatures, valueFeatures: kvFeatures, outputShape: [queryFeatures], useBias: true,
  };
  const addWeight: AddWeight = (n, shape, role) =>
      add(n, shape, role === 'kernel' ? c.kernelInitializer : c.biasInitializer);
  return {weights: addAttentionWeights(addWeight, `${name}/`, dims), dims};
}

/** x [batch, seq, features] of a sequence input; throws naming the layer otherwise. */
export function sequenceFeatures(layer: string, what: string, shape: Shape): number {
  if (shape.length !== 3 || shape[2] == null) {
    throw new Error(`${layer}: ${what} must be [batch, seq, features] with known features, got [${shape}]`);
  }
  return shape[2];
}

/** Dense → activation → Dense: keras_hub's feed-forward block (before its dropout and residual). */
export function feedforward(x: tf.Tensor, c: TransformerConfig, intermediate: Projection, output: Projection):
    tf.Tensor {
  const shape = x.shape;
  const hidden = c.activate(project(x, intermediate, [...shape.slice(0, -1), c.intermediateDim]));
  return project(hidden, output, shape);
}

export function dropoutIf(x: tf.Tensor, rate: number, training: boolean): tf.Tensor {
  return training && rate > 0 ? tf.dropout(x, rate) : x;
}

/** A [batch, seq] padding mask (bool-like), checked. */
export function checkPaddingMask(layer: string, name: string, mask: tf.Tensor | undefined, batch: number,
                                 seq: number): tf.Tensor | undefined {
  if (mask == null) return undefined;
  if (mask.rank !== 2 || mask.shape[0] !== batch || mask.shape[1] !== seq) {
    throw new Error(`${layer}: ${name} must have shape [batch=${batch}, seq=${seq}], got [${mask.shape}]`);
  }
  return mask;
}

export function checkAttentionMask(layer: string, name: string, mask: tf.Tensor | undefined, batch: number,
                                   seqQ: number, seqK: number): tf.Tensor | undefined {
  if (mask == null) return undefined;
  if (mask.rank !== 3 || (mask.shape[0] !== batch && mask.shape[0] !== 1) || mask.shape[1] !== seqQ ||
      mask.shape[2] !== seqK) {
    throw new Error(`${layer}: ${name} must have shape [batch=${batch}, ${seqQ}, ${seqK}], got [${mask.shape}]`);
  }
  return mask;
}

/**
 * The apply/call plumbing TransformerEncoder and TransformerDecoder share: tensor call arguments become inputs with
 * roles (gatherTensorArgs); the roles and non-tensor call arguments of a graph node are recorded and replayed when
 * tf.layers' executor runs the graph (it passes only `training` and the first input's Keras mask).
 */
export abstract class KerasHubLayer extends layers.Layer {
  protected abstract readonly layerName: string;
  protected abstract readonly firstRole: string;
  protected abstract readonly tensorArgNames: readonly string[];
  protected abstract readonly positionalRoles: readonly string[];
  protected abstract readonly callKeys: readonly string[];
  protected pendingRoles?: string[];
  /** The call arguments of the apply in progress (computeOutputShape reads returnAttentionScores). */
  protected pendingArgs?: Record<string, unknown>;
  private graphCall?: {roles: string[]; args: Record<string, unknown>};

  override apply(inputs: tf.Tensor | tf.Tensor[] | SymbolicTensor | SymbolicTensor[], kwargs?: Kwargs):
      tf.Tensor | tf.Tensor[] | SymbolicTensor | SymbolicTensor[] {
    const args = {...(kwargs ?? {})} as Record<string, unknown>;
    checkCallKeys(this.layerName, args, [...this.callKeys, ...this.tensorArgNames, 'training', 'mask', TENSOR_ARGS_KEY]);
    const first = Array.isArray(inputs) ? inputs[0] : inputs;
    const symbolic = first instanceof SymbolicTensor;
    let list: Array<tf.Tensor | SymbolicTensor>;
    let roles: string[];
    const graph = this.graphCall;
    if (!symbolic && graph != null && args[TENSOR_ARGS_KEY] == null && Array.isArray(inputs) &&
        inputs.length === graph.roles.length && graph.roles.length > 1) {
      list = inputs;  // tf.layers' executor running a recorded node
      roles = graph.roles;
      for (const [k, v] of Object.entries(graph.args)) if (args[k] === undefined) args[k] = v;
    } else {
      ({list, roles} = gatherTensorArgs(this.layerName, inputs, args, this.firstRole, this.tensorArgNames,
                                        this.positionalRoles));
      if (!symbolic && graph != null && list.length === 1) {
        for (const [k, v] of Object.entries(graph.args)) if (args[k] === undefined) args[k] = v;
      }
    }
    if (symbolic) {
      const recorded: Record<string, unknown> = {};
      for (const k of this.callKeys) if (args[k] !== undefined) recorded[k] = args[k];
      const call = {roles, args: recorded};
      if (graph != null && JSON.stringify(graph) !== JSON.stringify(call)) {
        throw new Error(`${this.layerName} '${this.name}' is applied at several graph nodes with different call ` +
                        `arguments (${JSON.stringify(graph)} vs ${JSON.stringify(call)}); use separate layers`);
      }
      this.graphCall = call;
    }
    this.pendingRoles = roles;
    this.pendingArgs = args;
    try {
      return super.apply((list.length === 1 ? list[0] : list) as tf.Tensor[], args as Kwargs);
    } finally {
      this.pendingRoles = undefined;
      this.pendingArgs = undefined;
    }
  }

  /** The input of each role, from call()'s input list. */
  protected byRole<T>(list: T[]): Record<string, T | undefined> {
    const roles = this.pendingRoles ?? this.positionalRoles.slice(0, list.length);
    const out: Record<string, T | undefined> = {};
    roles.forEach((role, i) => out[role] = list[i]);
    return out;
  }

  /** Keras masks tf.layers passes (kwargs.mask: one, or one per input), by role. */
  protected masksByRole(list: unknown[], mask: unknown): Record<string, tf.Tensor | undefined> {
    const masks = Array.isArray(mask) ? mask : [mask];
    const byInput = list.map((t, i) => (masks[i] ?? (t as {kerasMask?: tf.Tensor}).kerasMask ?? undefined) as
                                       tf.Tensor | undefined);
    return this.byRole(byInput);
  }

  override computeMask(inputs: tf.Tensor | tf.Tensor[], mask?: tf.Tensor | tf.Tensor[]): tf.Tensor {
    // keras_hub's layers support masking: the output keeps the first input's mask.
    const first = Array.isArray(mask) ? mask[0] : mask;
    const input = Array.isArray(inputs) ? inputs[0] : inputs;
    return (first ?? (input as {kerasMask?: tf.Tensor} | undefined)?.kerasMask ?? null) as tf.Tensor;
  }
}
