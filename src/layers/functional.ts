/**
 * Functional models from Keras JSON whose nodes pass tensors as call arguments, e.g. the converter's output for
 *   y = MultiHeadAttention(...)(q, v, attention_mask=m, use_causal_mask=True)
 * which Keras 2 (tf.keras) serializes as ONE inbound entry carrying the other tensors as references in its kwargs:
 *   "inbound_nodes": [[["q", 0, 0, {"value": ["v", 0, 0], "attention_mask": ["m", 0, 0], "use_causal_mask": true}]]]
 * (keras/engine/node.py `Node.serialize`: the first argument is the node's input, every other argument becomes a
 * kwarg, Keras tensors in them become [layer_name, node_index, tensor_index]). tfjs-layers' Container.fromConfig
 * passes such kwargs through unresolved (and tfjs' key conversion camel-cases the layer names inside them), so the
 * layer would get arrays instead of tensors. The classes here, registered under Keras's model class names
 * 'Functional' and 'Model', rewrite each such node before tfjs builds the graph: the referenced tensors become
 * further inputs of the node and `tensorArgs` (kept in the node's kwargs) names them, which our layers' apply reads.
 * Models without tensor kwargs load exactly as tfjs loads them.
 */
import * as tf from '@tensorflow/tfjs-core';
import {LayersModel, SymbolicTensor} from '@tensorflow/tfjs-layers';

type NodeEntry = [string, number, number, Record<string, unknown>?];
type Config = tf.serialization.ConfigDict;

/** The call-argument key under which a node lists the names of its inputs after the first. */
export const TENSOR_ARGS_KEY = 'tensorArgs';

/** tfjs-layers' toCamelCase (utils/generic_utils), which its loader applies to strings inside kwargs. */
function toCamelCase(identifier: string): string {
  if (identifier.length <= 1 || !identifier.includes('_')) return identifier;
  return identifier.replace(/[_]+(\w|$)/g, (_m, c: string) => c.toUpperCase());
}

const isTensorReference = (v: unknown): v is [string, number, number] => Array.isArray(v) &&
    (v.length === 3 || v.length === 4) && typeof v[0] === 'string' && Number.isInteger(v[1]) &&
    Number.isInteger(v[2]);

/** The config with every node's tensor kwargs turned into inputs (a deep copy; the input is not changed). */
export function resolveTensorKwargs(config: Config): Config {
  const copy = JSON.parse(JSON.stringify(config)) as Config;
  const layerList = (copy.layers ?? []) as Array<{name: string; className: string; inboundNodes: unknown[]}>;
  const names = layerList.map((l) => l.name);
  const resolveName = (reference: string, where: string) => {
    if (names.includes(reference)) return reference;
    const matches = names.filter((n) => toCamelCase(n) === reference);
    if (matches.length !== 1) {
      throw new Error(`${where}: cannot resolve the tensor reference '${reference}' in its call arguments (${
          matches.length === 0 ? 'no layer has that name' : `ambiguous: ${matches.join(', ')}`})`);
    }
    return matches[0];
  };
  for (const layer of layerList) {
    layer.inboundNodes = (layer.inboundNodes ?? []).map((node) => {
      const entries = node as NodeEntry[];
      const kwargs = entries[0]?.[3];
      if (kwargs == null) return node;
      const tensorNames = Object.keys(kwargs).filter((k) => isTensorReference(kwargs[k]));
      if (tensorNames.length === 0) return node;
      const where = `layer '${layer.name}' (${layer.className})`;
      if (entries.length !== 1) {
        throw new Error(`${where}: a node with several positional inputs and tensor call arguments (${
            tensorNames.join(', ')}) is not supported`);
      }
      const rest: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(kwargs)) if (!tensorNames.includes(k)) rest[k] = v;
      rest[TENSOR_ARGS_KEY] = tensorNames;
      const [name, nodeIndex, tensorIndex] = entries[0];
      return [
        [name, nodeIndex, tensorIndex, rest],
        ...tensorNames.map((k) => {
          const [ref, refNode, refTensor] = kwargs[k] as [string, number, number];
          return [resolveName(ref, where), refNode, refTensor, rest];
        }),
      ];
    });
  }
  return copy;
}

type ModelClass = tf.serialization.SerializableConstructor<LayersModel>;
const fromConfigOf = (LayersModel as unknown as {
  fromConfig(cls: ModelClass, config: Config, customObjects?: Config, fastWeightInit?: boolean): LayersModel;
}).fromConfig;

/** Keras's functional model class ('Functional', tf.keras >= 2.4), with tensor call arguments resolved. */
export class KerasFunctional extends LayersModel {
  static override className = 'Functional';
  static override fromConfig<T extends tf.serialization.Serializable>(
      cls: tf.serialization.SerializableConstructor<T>, config: Config, customObjects: Config = {},
      fastWeightInit = false): T {
    return fromConfigOf(cls as unknown as ModelClass, resolveTensorKwargs(config), customObjects,
                        fastWeightInit) as unknown as T;
  }
}
tf.serialization.registerClass(KerasFunctional);

/** The same under 'Model' (older tf.keras, and tfjs' own tf.model), so those load with tensor kwargs too. */
export class KerasModel extends KerasFunctional {
  static override className = 'Model';
}
tf.serialization.registerClass(KerasModel);

type AnyTensor = tf.Tensor | SymbolicTensor;
const isTensorLike = (x: unknown): x is AnyTensor => x instanceof tf.Tensor || x instanceof SymbolicTensor;

/**
 * A layer's apply(input, {tensor call arguments, ...}) as one input list with a role per input, so functional
 * models track the tensors: `first` names the first input; tensors among `tensorNames` in `args` are appended (and
 * their names recorded under TENSOR_ARGS_KEY, which stays in the node's call arguments so model.save round-trips); a
 * node rebuilt from a model file already has them as inputs. `positional` names the roles of an input array.
 */
export function gatherTensorArgs(layer: string, inputs: AnyTensor | AnyTensor[], args: Record<string, unknown>,
                                 first: string, tensorNames: readonly string[], positional: readonly string[]):
    {list: AnyTensor[]; roles: string[]} {
  const list = Array.isArray(inputs) ? [...inputs] : [inputs];
  const recorded = args[TENSOR_ARGS_KEY];
  if (recorded != null) {
    if (!Array.isArray(recorded) || recorded.length !== list.length - 1 ||
        !recorded.every((n) => tensorNames.includes(n))) {
      throw new Error(`${layer}: tensor call arguments ${JSON.stringify(recorded)} must be among ${
          tensorNames.join(', ')}, one per input after the first`);
    }
    return {list, roles: [first, ...recorded as string[]]};
  }
  if (list.length > positional.length) {
    throw new Error(`${layer}: expected at most ${positional.length} positional inputs (${positional.join(', ')}), ` +
                    `got ${list.length}`);
  }
  const roles = positional.slice(0, list.length);
  const moved: string[] = [];
  for (const name of tensorNames) {
    const value = args[name];
    if (value == null) continue;
    if (!isTensorLike(value)) {
      throw new Error(`${layer}: call argument ${name} must be a tensor, got ${JSON.stringify(value)}${
          Array.isArray(value) && typeof value[0] === 'string' ?
              ' (an unresolved Keras tensor reference: import this library before tf.loadLayersModel)' : ''}`);
    }
    if (roles.includes(name)) throw new Error(`${layer}: ${name} is given both as an input and a call argument`);
    list.push(value);
    roles.push(name);
    moved.push(name);
    delete args[name];
  }
  if (moved.length > 0) args[TENSOR_ARGS_KEY] = [...roles.slice(1)];
  return {list, roles};
}
