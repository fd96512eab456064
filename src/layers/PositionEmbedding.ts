/**
 * keras_hub.layers.PositionEmbedding: a learned [sequenceLength, features] table; the layer RETURNS the position
 * embeddings broadcast to the input's shape (add them to the token embeddings yourself, as in keras_hub):
 *   const tokens = tf.layers.embedding({inputDim: vocab, outputDim: 64}).apply(ids);
 *   const x = tf.layers.add().apply([tokens, layers.positionEmbedding({sequenceLength: 128}).apply(tokens)]);
 * Inputs longer than sequenceLength use keras_hub's hierarchical extension (hierarchicalAlpha).
 */
import * as tf from '@tensorflow/tfjs-core';
import {layers, LayerVariable} from '@tensorflow/tfjs-layers';
import type {LayerArgs} from '@tensorflow/tfjs-layers/dist/engine/topology';
import type {Kwargs} from '@tensorflow/tfjs-layers/dist/types';
import {
  checkCallKeys, checkConfigKeys, checkPositiveInt, Initializer, kerasObject, serializeKerasObject, shapeList,
} from './layer_utils.js';

type Shape = Array<number | null>;

export interface PositionEmbeddingArgs extends LayerArgs {
  /** The longest sequence the table covers. */
  sequenceLength: number;
  /** Default 'glorotUniform' (keras_hub's default). */
  initializer?: unknown;
  /** keras_hub's extension to inputs longer than sequenceLength (default 0.4). */
  hierarchicalAlpha?: number;
}

const NAME = 'PositionEmbedding';

export class PositionEmbedding extends layers.Layer {
  static className = 'PositionEmbedding';

  readonly sequenceLength: number;
  readonly hierarchicalAlpha: number;
  private readonly initializer: Initializer;
  private embeddings?: LayerVariable;

  constructor(args: PositionEmbeddingArgs) {
    super(args ?? {});
    if (args == null) throw new Error(`${NAME}: config {sequenceLength} must be given`);
    checkConfigKeys(NAME, args, ['sequenceLength', 'initializer', 'hierarchicalAlpha']);
    this.sequenceLength = checkPositiveInt(NAME, 'sequenceLength', args.sequenceLength);
    this.initializer = kerasObject<Initializer>(NAME, 'initializer', 'initializer',
                                                args.initializer ?? 'glorotUniform')!;
    const alpha = args.hierarchicalAlpha ?? 0.4;
    if (typeof alpha !== 'number' || !(alpha >= 0 && alpha < 1)) {
      throw new Error(`${NAME}: hierarchicalAlpha must be a number in [0, 1), got ${JSON.stringify(alpha)}`);
    }
    this.hierarchicalAlpha = alpha;
  }

  override build(inputShape: Shape | Shape[]): void {
    const shape = shapeList(inputShape)[0];
    const features = shape[shape.length - 1];
    if (shape.length < 2 || features == null) {
      throw new Error(`${NAME} expects [..., seq, features] with known features, got [${shape}]`);
    }
    this.embeddings = this.addWeight('embeddings', [this.sequenceLength, features], 'float32', this.initializer);
    this.built = true;
  }

  override computeOutputShape(inputShape: Shape | Shape[]): Shape {
    return shapeList(inputShape)[0];
  }

  /** kwargs.startIndex (default 0): the position of the first input step (cached decoding). */
  override call(inputs: tf.Tensor | tf.Tensor[], kwargs: Kwargs): tf.Tensor {
    checkCallKeys(NAME, kwargs, ['startIndex', 'training', 'mask']);
    const x = Array.isArray(inputs) ? inputs[0] : inputs;
    const startIndex = (kwargs?.startIndex ?? 0) as number;
    if (!Number.isInteger(startIndex) || startIndex < 0) {
      throw new Error(`${NAME}: startIndex must be a non-negative integer, got ${JSON.stringify(startIndex)}`);
    }
    return tf.tidy(() => {
      const seq = x.shape[x.rank - 2];
      const features = x.shape[x.rank - 1];
      const table = this.embeddings!.read();
      let positions: tf.Tensor;
      if (startIndex + seq <= this.sequenceLength) {
        // Within the table (the common case): a slice, whose gradient is a pad (no gather / segment sum).
        positions = tf.slice(table, [startIndex, 0], [seq, features]);
      } else {
        // keras_hub: e = (E - α·E[0]) / (1 - α); position p → α·e[p // L] + (1 - α)·e[p % L] (= E[p] for p < L).
        const alpha = this.hierarchicalAlpha;
        const e = tf.div(tf.sub(table, tf.mul(alpha, tf.slice(table, [0, 0], [1, features]))), 1 - alpha);
        const ids = tf.range(startIndex, startIndex + seq, 1, 'int32');
        const length = tf.scalar(this.sequenceLength, 'int32');
        positions = tf.add(tf.mul(alpha, tf.gather(e, tf.floorDiv(ids, length))),
                           tf.mul(1 - alpha, tf.gather(e, tf.mod(ids, length))));
      }
      return tf.broadcastTo(positions, x.shape);
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {
      ...super.getConfig(),
      sequenceLength: this.sequenceLength,
      hierarchicalAlpha: this.hierarchicalAlpha,
      initializer: serializeKerasObject(this.initializer),
    };
  }
}
tf.serialization.registerClass(PositionEmbedding);

/** keras_hub.layers.PositionEmbedding: returns learned position embeddings shaped like its input. */
export function positionEmbedding(args: PositionEmbeddingArgs): PositionEmbedding {
  return new PositionEmbedding(args);
}
