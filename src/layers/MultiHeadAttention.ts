/**
 * keras.layers.MultiHeadAttention on the library's kernels: Keras's config, weights (names, shapes, order), call
 * arguments and masking, so converted Keras models load and give Keras's answer. Masks, useCausalMask and dropout
 * run on the kernels' mask / queryOffsets / dropout options; only returnAttentionScores materializes the
 * probability matrix (see attention_dispatch.ts). With `cache` (and `cacheUpdateIndex`) it is keras_hub's
 * CachedMultiHeadAttention: the call returns [output, cache] (see attention_cache.ts).
 */
import * as tf from '@tensorflow/tfjs-core';
import {layers, SymbolicTensor} from '@tensorflow/tfjs-layers';
import type {LayerArgs} from '@tensorflow/tfjs-layers/dist/engine/topology';
import type {Kwargs} from '@tensorflow/tfjs-layers/dist/types';
import {addAttentionWeights, AttentionDims, AttentionWeights, attentionForward, toKeyLengths} from
    './attention_core.js';
import {AttentionPrecision, checkPrecision} from '../plan/precision.js';
import {checkLayerCache, RotarySettings} from './attention_cache.js';
import {AttentionSpec, checkAttentionSpec, ResolvedAttention} from './attention_spec.js';
import {TENSOR_ARGS_KEY} from './functional.js';
import {
  checkCallKeys, checkConfigKeys, checkOptionalBoolean, checkPositiveInt, checkRate, checkSoftcapValue, Initializer,
  kerasObject, serializeKerasObject, shapeList,
} from './layer_utils.js';

type Shape = Array<number | null>;
type AnyTensor = tf.Tensor | SymbolicTensor;

export interface MultiHeadAttentionArgs extends LayerArgs {
  /** Number of attention heads. */
  numHeads: number;
  /** Size of each query and key head. */
  keyDim: number;
  /** Size of each value head (default keyDim). */
  valueDim?: number | null;
  /** Dropout rate on the attention probabilities, in training (Keras's meaning). Default 0. */
  dropout?: number;
  /** Biases on the four projections (default true). */
  useBias?: boolean;
  /** Trailing shape of the output (default: the query's feature size). */
  outputShape?: number | number[] | null;
  /** Only the default (attention over the sequence axis: null, 1 or [1]) is supported; others throw. */
  attentionAxes?: number | number[] | null;
  /** Default 'glorotUniform' (fans from the 3-D kernel shapes, as Keras). Name, instance or {className, config}. */
  kernelInitializer?: unknown;
  /** Default 'zeros'. */
  biasInitializer?: unknown;
  kernelRegularizer?: unknown;
  biasRegularizer?: unknown;
  /** tf.layers cannot run activity regularizers: only null is accepted. */
  activityRegularizer?: unknown;
  kernelConstraint?: unknown;
  biasConstraint?: unknown;
  /** Seed of the attention-probability dropout. */
  seed?: number | null;
  /** Ours: key/value heads for grouped-query attention (default numHeads; must divide numHeads). */
  numKeyValueHeads?: number;
  /** Ours: which attention runs (default 'flash'); see AttentionSpec. */
  attention?: AttentionSpec;
  /** Ours: logit soft-capping score ← softcap·tanh(score/softcap); 0 (default) disables it. */
  softcap?: number;
  /**
   * Ours: a bottom-right aligned causal mask built into the layer (query i sees key j iff j <= i + seqK - seqQ).
   * Keras's per-call `useCausalMask` is top-left aligned (j <= i); the two agree when seqQ == seqK.
   */
  causal?: boolean;
  /**
   * Ours: rotary position embedding (keras_hub's RotaryEmbedding) of the projected queries and keys, as in Llama-style
   * attention: true for the defaults, or {maxWavelength (10000), scalingFactor (1)}. Positions are 0 … seq − 1, or
   * cacheUpdateIndex + 0 … with a cache. Default off.
   */
  rotary?: boolean | {maxWavelength?: number; scalingFactor?: number} | null;
  /**
   * Ours: the attention ops' precision option ('highest' | 'high' | 'medium', see flashAttention); null / absent
   * (default): the tf.env() flag ATTENTION_PRECISION at call time.
   */
  precision?: AttentionPrecision | null;
  /** Keras 2 configs record the build shapes; checked against the shapes the layer is built with. */
  queryShape?: Shape | null;
  keyShape?: Shape | null;
  valueShape?: Shape | null;
}

const CONFIG_KEYS = [
  'numHeads', 'keyDim', 'valueDim', 'dropout', 'useBias', 'outputShape', 'attentionAxes', 'kernelInitializer',
  'biasInitializer', 'kernelRegularizer', 'biasRegularizer', 'activityRegularizer', 'kernelConstraint',
  'biasConstraint', 'seed', 'numKeyValueHeads', 'attention', 'softcap', 'causal', 'rotary', 'queryShape', 'keyShape',
  'valueShape', 'precision',
] as const;

/** Call arguments (kwargs of apply). `mask` is how tf.layers passes input Keras masks. */
export interface MultiHeadAttentionCallArgs {
  value?: AnyTensor;
  key?: AnyTensor;
  /** Boolean-like [batch, seqQ, seqK] (or [seqQ, seqK]); true = may attend. */
  attentionMask?: AnyTensor;
  /** Keras's causal mask: query i sees key j iff j <= i (top-left aligned). */
  useCausalMask?: boolean;
  /** Return [output, scores [batch, heads, seqQ, seqK]]: materializes the probabilities. */
  returnAttentionScores?: boolean;
  training?: boolean;
  queryMask?: tf.Tensor;
  valueMask?: tf.Tensor;
  keyMask?: tf.Tensor;
  /** Ours: right padding, keys at positions >= keyLengths[b] masked (number[] or Tensor [batch]). */
  keyLengths?: number[] | tf.Tensor;
  /**
   * keras_hub's CachedMultiHeadAttention cache [batch, 2, capacity, numKeyValueHeads, keyDim] (keys, values; needs
   * keyDim == valueDim): the call returns [output, newCache]. Eager calls only (decoding).
   */
  cache?: tf.Tensor;
  /**
   * Where the new tokens' keys and values are written in `cache` (a number, or an integer tensor: scalar or [batch]);
   * the queries sit at positions cacheUpdateIndex + i and see the keys j < cacheUpdateIndex + seq (j <=
   * cacheUpdateIndex + i with useCausalMask or a causal layer). Without it the cache is used as is (all its rows).
   */
  cacheUpdateIndex?: number | tf.Tensor;
}
const CALL_KEYS = ['value', 'key', 'attentionMask', 'useCausalMask', 'returnAttentionScores', 'training', 'queryMask',
                   'valueMask', 'keyMask', 'keyLengths', 'cache', 'cacheUpdateIndex', 'mask', TENSOR_ARGS_KEY];

/** Which input of the layer's input list is what; the list is [query, value, key?, attentionMask?, keyLengths?]. */
type Role = 'query' | 'value' | 'key' | 'attentionMask' | 'keyLengths';

/** What a symbolic (graph) application recorded, replayed when tf.layers' executor runs the graph. */
interface GraphCall {
  roles: Role[];
  useCausalMask: boolean;
  returnAttentionScores: boolean;
}

const isTensorLike = (x: unknown): x is AnyTensor => x instanceof tf.Tensor || x instanceof SymbolicTensor;

export class MultiHeadAttention extends layers.Layer {
  static className = 'MultiHeadAttention';

  readonly numHeads: number;
  readonly keyDim: number;
  readonly valueDim: number;
  readonly dropout: number;
  readonly useBias: boolean;
  readonly outputShapeArg: number[] | null;
  readonly seed: number | null;
  readonly numKeyValueHeads: number;
  readonly softcap: number;
  readonly precision: AttentionPrecision | null;
  readonly causal: boolean;
  readonly rotary: RotarySettings | null;
  readonly attention: ResolvedAttention;
  private readonly kernelInitializer: Initializer;
  private readonly biasInitializer: Initializer;
  private readonly kernelRegularizer: unknown;
  private readonly biasRegularizer: unknown;
  private readonly kernelConstraint: unknown;
  private readonly biasConstraint: unknown;
  private readonly recordedShapes: {query?: Shape | null; key?: Shape | null; value?: Shape | null};
  private dims?: AttentionDims;
  private attentionWeights?: AttentionWeights;
  private graphCall?: GraphCall;
  private pendingRoles?: Role[];
  private pendingReturnScores = false;
  private pendingReturnCache = false;
  private dropoutCalls = 0;

  constructor(args: MultiHeadAttentionArgs) {
    const name = 'MultiHeadAttention';
    if (args == null) throw new Error(`${name}: config {numHeads, keyDim, ...} must be given`);
    super(args);
    checkConfigKeys(name, args, CONFIG_KEYS);
    this.supportsMasking = true;
    this.numHeads = checkPositiveInt(name, 'numHeads', args.numHeads);
    this.keyDim = checkPositiveInt(name, 'keyDim', args.keyDim);
    this.valueDim = checkPositiveInt(name, 'valueDim', args.valueDim || this.keyDim);
    this.dropout = checkRate(name, 'dropout', args.dropout ?? undefined);
    this.useBias = checkOptionalBoolean(name, 'useBias', args.useBias ?? undefined, true);
    const outputShape = args.outputShape;
    this.outputShapeArg = outputShape == null ? null :
        (Array.isArray(outputShape) ? outputShape : [outputShape]).map((n) => checkPositiveInt(name, 'outputShape', n));
    const axes = args.attentionAxes;
    const axesList = axes == null ? null : Array.isArray(axes) ? axes : [axes];
    if (axesList != null && !(axesList.length === 1 && (axesList[0] === 1 || axesList[0] === -2))) {
      throw new Error(`${name}: attentionAxes ${JSON.stringify(axes)} is not supported: only attention over the ` +
                      `sequence axis (null, 1 or [1], Keras's default for [batch, seq, features] inputs)`);
    }
    this.kernelInitializer = kerasObject<Initializer>(name, 'kernelInitializer', 'initializer',
                                                      args.kernelInitializer ?? 'glorotUniform')!;
    this.biasInitializer =
        kerasObject<Initializer>(name, 'biasInitializer', 'initializer', args.biasInitializer ?? 'zeros')!;
    this.kernelRegularizer = kerasObject(name, 'kernelRegularizer', 'regularizer', args.kernelRegularizer);
    this.biasRegularizer = kerasObject(name, 'biasRegularizer', 'regularizer', args.biasRegularizer);
    if (args.activityRegularizer != null) {
      throw new Error(`${name}: activityRegularizer is not supported (tf.layers cannot run activity regularizers)`);
    }
    this.kernelConstraint = kerasObject(name, 'kernelConstraint', 'constraint', args.kernelConstraint);
    this.biasConstraint = kerasObject(name, 'biasConstraint', 'constraint', args.biasConstraint);
    if (args.seed != null && !Number.isInteger(args.seed)) {
      throw new Error(`${name}: seed must be an integer or null, got ${JSON.stringify(args.seed)}`);
    }
    this.seed = args.seed ?? null;
    this.numKeyValueHeads = checkPositiveInt(name, 'numKeyValueHeads', args.numKeyValueHeads ?? this.numHeads);
    if (this.numHeads % this.numKeyValueHeads !== 0) {
      throw new Error(`${name}: numHeads (${this.numHeads}) must be divisible by numKeyValueHeads (${
          this.numKeyValueHeads})`);
    }
    this.softcap = checkSoftcapValue(name, args.softcap);
    this.causal = checkOptionalBoolean(name, 'causal', args.causal, false);
    this.attention = new ResolvedAttention(checkAttentionSpec(args.attention, this.causal), this.causal);
    this.rotary = checkRotary(name, args.rotary, this.keyDim);
    this.precision = args.precision == null ? null : checkPrecision(args.precision, `${name}: precision`);
    this.recordedShapes = {query: args.queryShape, key: args.keyShape, value: args.valueShape};
  }

  /**
   * apply(query, {value, key, attentionMask, useCausalMask, returnAttentionScores, training}) as Keras, or the array
   * forms apply(x) (self-attention), apply([query, value]), apply([query, value, key]); a trailing rank-1/2 input is
   * our keyLengths. Tensor call arguments become inputs of the node, so functional models track them.
   */
  override apply(inputs: tf.Tensor | tf.Tensor[] | SymbolicTensor | SymbolicTensor[], kwargs?: Kwargs):
      tf.Tensor | tf.Tensor[] | SymbolicTensor | SymbolicTensor[] {
    const args = {...(kwargs ?? {})} as Record<string, unknown>;
    checkCallKeys('MultiHeadAttention', args, CALL_KEYS);
    for (const name of ['value', 'key', 'attentionMask']) {
      const v = args[name];
      if (v != null && !isTensorLike(v)) {
        throw new Error(`MultiHeadAttention: call argument ${name} must be a tensor, got ${JSON.stringify(v)}${
            Array.isArray(v) && typeof v[0] === 'string' ?
                ' (an unresolved Keras tensor reference: load the model with tf.loadLayersModel after importing ' +
                    'this library, which registers a Functional class that resolves it)' : ''}`);
      }
    }
    const list: AnyTensor[] = Array.isArray(inputs) ? [...inputs] : [inputs];
    let roles: Role[];
    const symbolic = list[0] instanceof SymbolicTensor;
    if (symbolic && (args.cache != null || args.cacheUpdateIndex != null)) {
      throw new Error('MultiHeadAttention: cache and cacheUpdateIndex are for eager calls (decoding), not for ' +
                      'symbolic tensors of a functional model');
    }
    const tensorArgs = args[TENSOR_ARGS_KEY];
    if (tensorArgs != null) {
      // A graph node whose tensor call arguments were made inputs (functional.ts): [query, ...tensorArgs].
      if (!Array.isArray(tensorArgs) || tensorArgs.length !== list.length - 1 ||
          !tensorArgs.every((n) => ['value', 'key', 'attentionMask'].includes(n))) {
        throw new Error(`MultiHeadAttention: tensor call arguments ${JSON.stringify(tensorArgs)} must be among ` +
                        `value, key, attentionMask, one per input after the query`);
      }
      roles = ['query', ...tensorArgs as Role[]];
    } else if (args.value != null || args.key != null || args.attentionMask != null) {
      if (list.length !== 1) {
        throw new Error('MultiHeadAttention: pass the query alone as the first argument when value, key or ' +
                        'attentionMask are given as call arguments');
      }
      if (args.value == null) throw new Error('MultiHeadAttention: call argument key needs value');
      roles = ['query'];
      for (const name of ['value', 'key', 'attentionMask'] as const) {
        if (args[name] != null) {
          list.push(args[name] as AnyTensor);
          roles.push(name);
        }
        delete args[name];
      }
      args[TENSOR_ARGS_KEY] = roles.slice(1);  // kept in the node's call arguments, so model.save round-trips
    } else if (!symbolic && this.graphCall != null && list.length === this.graphCall.roles.length) {
      roles = this.graphCall.roles;  // tf.layers' executor running a graph node: the inputs it recorded
    } else {
      roles = positionalRoles(list);
    }
    if (symbolic) this.recordGraphCall(roles, args);
    this.pendingRoles = roles;
    this.pendingReturnScores = typeof args.returnAttentionScores === 'boolean' ? args.returnAttentionScores :
                                                                                 this.graphCall?.returnAttentionScores === true && !symbolic;
    this.pendingReturnCache = args.cache != null;
    try {
      return super.apply((list.length === 1 ? list[0] : list) as tf.Tensor[], args as Kwargs);
    } finally {
      this.pendingRoles = undefined;
      this.pendingReturnScores = false;
      this.pendingReturnCache = false;
    }
  }

  /** The call arguments of a graph node; replayed by `call` when tf.layers' executor does not pass them. */
  private recordGraphCall(roles: Role[], args: Record<string, unknown>): void {
    const call: GraphCall = {
      roles,
      useCausalMask: args.useCausalMask === true,
      returnAttentionScores: args.returnAttentionScores === true,
    };
    const previous = this.graphCall;
    if (previous != null && JSON.stringify(previous) !== JSON.stringify(call)) {
      throw new Error(`MultiHeadAttention '${this.name}' is applied at several graph nodes with different call ` +
                      `arguments (${JSON.stringify(previous)} vs ${JSON.stringify(call)}); use separate layers`);
    }
    this.graphCall = call;
  }

  override build(inputShape: Shape | Shape[]): void {
    const shapes = shapeList(inputShape);
    const roles = this.pendingRoles ?? positionalRoles(shapes.map((shape) => ({shape})));
    const byRole = (role: Role) => shapes[roles.indexOf(role)];
    const query = byRole('query');
    const value = roles.includes('value') ? byRole('value') : query;
    const key = roles.includes('key') ? byRole('key') : value;
    const features = (s: Shape, what: string) => {
      if (s.length !== 3 || s[2] == null) {
        throw new Error(`MultiHeadAttention: the ${what} must be [batch, seq, features] with known features, got [${
            s}]`);
      }
      return s[2];
    };
    for (const [what, shape, recorded] of
         [['query', query, this.recordedShapes.query], ['key', key, this.recordedShapes.key],
          ['value', value, this.recordedShapes.value]] as const) {
      if (recorded != null && recorded[recorded.length - 1] !== shape[shape.length - 1]) {
        throw new Error(`MultiHeadAttention: config ${what}Shape [${recorded}] does not match the ${what} [${shape}]`);
      }
    }
    this.dims = {
      numHeads: this.numHeads,
      numKeyValueHeads: this.numKeyValueHeads,
      keyDim: this.keyDim,
      valueDim: this.valueDim,
      queryFeatures: features(query, 'query'),
      keyFeatures: features(key, 'key'),
      valueFeatures: features(value, 'value'),
      outputShape: this.outputShapeArg ?? [features(query, 'query')],
      useBias: this.useBias,
    };
    this.attentionWeights = addAttentionWeights(
        (name, shape, role) => this.addWeight(
            name, shape, 'float32', role === 'kernel' ? this.kernelInitializer : this.biasInitializer,
            (role === 'kernel' ? this.kernelRegularizer : this.biasRegularizer) as never, true,
            (role === 'kernel' ? this.kernelConstraint : this.biasConstraint) as never),
        '', this.dims);
    this.built = true;
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape | Shape[] {
    const shapes = shapeList(inputShape);
    const roles = this.pendingRoles ?? positionalRoles(shapes.map((shape) => ({shape})));
    const query = shapes[roles.indexOf('query')];
    const value = roles.includes('value') ? shapes[roles.indexOf('value')] : query;
    const output = [query[0], query[1], ...(this.outputShapeArg ?? [query[2]])];
    return this.pendingReturnScores ? [output, [query[0], this.numHeads, query[1], value[1]]] : output;
  }

  override computeMask(inputs: tf.Tensor | tf.Tensor[], mask?: tf.Tensor | tf.Tensor[]): tf.Tensor | tf.Tensor[] {
    // Keras sets the query's mask on the output (and none on the scores).
    const list = Array.isArray(inputs) ? inputs : [inputs];
    const masks = Array.isArray(mask) ? mask : [mask];
    const queryMask = (masks[0] ?? (list[0] as {kerasMask?: tf.Tensor}).kerasMask ?? null) as tf.Tensor;
    return this.pendingReturnScores || this.pendingReturnCache ? [queryMask, null as unknown as tf.Tensor] : queryMask;
  }

  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor | tf.Tensor[] {
    const list = Array.isArray(inputs) ? inputs : [inputs];
    const roles = this.pendingRoles ?? positionalRoles(list);
    const get = (role: Role) => roles.includes(role) ? list[roles.indexOf(role)] : undefined;
    const query = get('query')!;
    const value = get('value') ?? query;
    const key = get('key') ?? value;
    const args = (kwargs ?? {}) as MultiHeadAttentionCallArgs & {mask?: tf.Tensor | tf.Tensor[]};
    const graph = this.graphCall;
    const useCausalMask = args.useCausalMask ?? graph?.useCausalMask ?? false;
    const returnScores = args.returnAttentionScores ?? graph?.returnAttentionScores ?? false;
    for (const [name, v] of [['useCausalMask', useCausalMask], ['returnAttentionScores', returnScores]] as const) {
      if (typeof v !== 'boolean') throw new Error(`MultiHeadAttention: ${name} must be a boolean, got ${v}`);
    }
    // Keras masks: explicit call arguments, else the masks tf.layers passes (kwargs.mask: the first input's mask,
    // or one per input), else the masks tfjs attaches to eager tensors.
    const passed = Array.isArray(args.mask) ? args.mask : [args.mask];
    const maskOf = (role: Role, t: tf.Tensor) => {
      const index = roles.indexOf(role);
      return (index >= 0 ? passed[index] : undefined) ?? (t as {kerasMask?: tf.Tensor}).kerasMask ?? undefined;
    };
    const queryMask = args.queryMask ?? maskOf('query', query);
    const valueMask = args.valueMask ?? (value === query ? queryMask : maskOf('value', value));
    const keyMask = args.keyMask ?? (key === value ? undefined : key === query ? queryMask : maskOf('key', key));
    const training = args.training === true;
    const dropoutSeed = this.seed == null || !(training && this.dropout > 0) ? undefined :
        this.seed + this.dropoutCalls++;
    const batch = query.shape[0] as number;
    const cache = checkLayerCache('MultiHeadAttention', {cache: 'cache', index: 'cacheUpdateIndex'}, args.cache,
                                  args.cacheUpdateIndex, this.dims!, batch, query.shape[1] as number);
    if (cache != null) {
      if (returnScores) throw new Error('MultiHeadAttention: returnAttentionScores is not supported with a cache');
      if (cache.updateIndex != null && (get('keyLengths') ?? args.keyLengths) != null) {
        throw new Error('MultiHeadAttention: keyLengths cannot be given with cacheUpdateIndex (the keys are the ' +
                        'cache rows written so far)');
      }
      if (cache.updateIndex != null && key.shape[1] !== query.shape[1]) {
        throw new Error(`MultiHeadAttention: with cacheUpdateIndex, key and value must have the query's ${
            query.shape[1]} new tokens, got ${key.shape[1]}`);
      }
    }
    const seqK = cache == null ? key.shape[1] as number : cache.cache.shape[2] as number;
    return tf.tidy(() => {
      const keyLengths = toKeyLengths(get('keyLengths') ?? args.keyLengths, batch, seqK);
      // keras_hub's CachedMultiHeadAttention takes only attentionMask: with a cache the Keras masks of the inputs
      // (which cover the new tokens, not the cache) are not used.
      const keyPadding = cache != null ? undefined : valueMask != null && keyMask != null ?
          tf.logicalAnd(tf.cast(valueMask, 'bool'), tf.cast(keyMask, 'bool')) : valueMask ?? keyMask;
      const attentionMask = get('attentionMask') ?? (args.attentionMask as tf.Tensor | undefined);
      const result = attentionForward(this.attentionWeights!, this.dims!, query, key, value, {
        attention: this.attention, softcap: this.softcap, dropout: this.dropout, seed: dropoutSeed, training,
        keyLengths, attentionMask, queryMask: cache != null ? undefined : queryMask, keyMask: keyPadding, useCausalMask,
        returnScores, cache,
        rotary: this.rotary, precision: this.precision,
      });
      const {output, scores} = result;
      if (cache != null) return [output, result.cache!];
      return returnScores ? [output, scores!] : output;
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    // Keras's keys (snake_cased by model.save); ours only when they differ from plain Keras behaviour.
    const config: tf.serialization.ConfigDict = {
      numHeads: this.numHeads,
      keyDim: this.keyDim,
      valueDim: this.valueDim,
      dropout: this.dropout,
      useBias: this.useBias,
      outputShape: this.outputShapeArg,
      attentionAxes: null,
      kernelInitializer: serializeKerasObject(this.kernelInitializer),
      biasInitializer: serializeKerasObject(this.biasInitializer),
      kernelRegularizer: serializeKerasObject(this.kernelRegularizer),
      biasRegularizer: serializeKerasObject(this.biasRegularizer),
      activityRegularizer: null,
      kernelConstraint: serializeKerasObject(this.kernelConstraint),
      biasConstraint: serializeKerasObject(this.biasConstraint),
      seed: this.seed,
    };
    if (this.numKeyValueHeads !== this.numHeads) config.numKeyValueHeads = this.numKeyValueHeads;
    if (this.attention.spec !== 'flash') config.attention = this.attention.spec as tf.serialization.ConfigDictValue;
    if (this.softcap !== 0) config.softcap = this.softcap;
    if (this.causal) config.causal = true;
    if (this.rotary != null) config.rotary = {...this.rotary};
    if (this.precision != null) config.precision = this.precision;
    return {...super.getConfig(), ...config};
  }
}
tf.serialization.registerClass(MultiHeadAttention);

/** The rotary config, checked: null (off), or its settings (keyDim must be even). */
function checkRotary(layer: string, rotary: MultiHeadAttentionArgs['rotary'], keyDim: number): RotarySettings | null {
  if (rotary == null || rotary === false) return null;
  const given = rotary === true ? {} : rotary;
  if (typeof given !== 'object' || Array.isArray(given)) {
    throw new Error(`${layer}: rotary must be true, false or {maxWavelength?, scalingFactor?}, got ${
        JSON.stringify(rotary)}`);
  }
  const unknown = Object.keys(given).filter((k) => k !== 'maxWavelength' && k !== 'scalingFactor');
  if (unknown.length > 0) throw new Error(`${layer}: rotary has unknown keys ${unknown} (maxWavelength, scalingFactor)`);
  const settings = {maxWavelength: given.maxWavelength ?? 10000, scalingFactor: given.scalingFactor ?? 1};
  for (const [k, v] of Object.entries(settings)) {
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      throw new Error(`${layer}: rotary.${k} must be a finite number > 0, got ${String(v)}`);
    }
  }
  if (keyDim % 2 !== 0) throw new Error(`${layer}: rotary needs an even keyDim, got ${keyDim}`);
  return settings;
}

/** Roles of a positional input list: [query], [query, value], [query, value, key], then keyLengths (rank < 3). */
function positionalRoles(list: Array<{shape: Shape | number[]}>): Role[] {
  const names: Role[] = ['query', 'value', 'key'];
  const roles: Role[] = [];
  list.forEach((x, i) => {
    if (i > 0 && i === list.length - 1 && x.shape.length < 3) {
      roles.push('keyLengths');
    } else if (i < 3 && x.shape.length === 3) {
      roles.push(names[i]);
    } else {
      throw new Error(`MultiHeadAttention expects query, [query, value] or [query, value, key] of rank 3 [batch, ` +
                      `seq, features] (optionally followed by keyLengths [batch] or [batch, 1]), got shapes ${
                          JSON.stringify(list.map((t) => t.shape))}`);
    }
  });
  return roles;
}

/**
 * keras.layers.MultiHeadAttention on the library's kernels.
 *
 * ```js
 * const mha = layers.multiHeadAttention({numHeads: 8, keyDim: 64});
 * const y = mha.apply(x, {value: x, useCausalMask: true});   // as Keras: mha(x, x, use_causal_mask=True)
 * const [out, scores] = mha.apply(q, {value: kv, returnAttentionScores: true}) as tf.Tensor[];
 * const local = layers.multiHeadAttention({numHeads: 8, keyDim: 64, causal: true,
 *                                         attention: {type: 'sliding', windowSize: 256}});
 * ```
 */
export function multiHeadAttention(args: MultiHeadAttentionArgs): MultiHeadAttention {
  return new MultiHeadAttention(args);
}
