/**
 * Token embedding (like tf.layers.embedding) with a gradient the cpu backend computes quickly.
 *
 * tf.layers.embedding's gradient is gather's: unsortedSegmentSum, which tfjs-backend-cpu runs as one pass over the
 * whole gradient per vocabulary entry (hundreds of kernels per step; on this task it cost more than the rest of the
 * model). Here the table's gradient is a scatter-add: a plain loop on the cpu and wasm backends (their data is in
 * JS-visible memory), oneHot(ids)ᵀ · dy as one matMul elsewhere.
 */
import * as tf from '@tensorflow/tfjs';

export class TokenEmbedding extends tf.layers.Layer {
  static className = 'TokenEmbedding';
  private table?: tf.LayerVariable;

  constructor(readonly args: {inputDim: number; outputDim: number; inputShape?: Array<number | null>; name?: string}) {
    super(args);
  }

  override build(): void {
    this.table = this.addWeight('embeddings', [this.args.inputDim, this.args.outputDim], 'float32',
                                tf.initializers.randomUniform({minval: -0.05, maxval: 0.05}));
    this.built = true;
  }

  override computeOutputShape(inputShape: Array<number | null>): Array<number | null> {
    return [...inputShape, this.args.outputDim];
  }

  override call(inputs: tf.Tensor | tf.Tensor[]): tf.Tensor {
    return tf.tidy(() => {
      const tokens = Array.isArray(inputs) ? inputs[0] : inputs;
      const ids = tf.cast(tf.reshape(tokens, [-1]), 'int32');
      const vocab = this.args.inputDim;
      const embed = tf.customGrad(((idsIn: tf.Tensor, table: tf.Tensor, save: tf.GradSaveFunc) => {
        save([idsIn]);
        return {
          value: tf.gather(table, idsIn),
          gradFunc: (dy: tf.Tensor, [saved]: tf.Tensor[]) => [tf.zerosLike(saved), scatterAdd(saved, dy, vocab)],
        };
      }) as unknown as Parameters<typeof tf.customGrad>[0]);
      return tf.reshape(embed(ids, this.table!.read()), [...tokens.shape, this.args.outputDim]);
    });
  }

  override getConfig(): tf.serialization.ConfigDict {
    return {...super.getConfig(), inputDim: this.args.inputDim, outputDim: this.args.outputDim};
  }
}
tf.serialization.registerClass(TokenEmbedding);

/** table gradient [vocab, dim]: row ids[i] += dy[i]. */
function scatterAdd(ids: tf.Tensor, dy: tf.Tensor, vocab: number): tf.Tensor {
  const dim = dy.shape[1]!;
  if (tf.getBackend() !== 'cpu' && tf.getBackend() !== 'wasm') {
    return tf.matMul(tf.oneHot(ids as tf.Tensor1D, vocab), dy, true);
  }
  const index = ids.dataSync(), rows = dy.dataSync();
  const grad = new Float32Array(vocab * dim);
  for (let i = 0; i < index.length; i++) {
    const to = index[i] * dim, from = i * dim;
    for (let d = 0; d < dim; d++) grad[to + d] += rows[from + d];
  }
  return tf.tensor2d(grad, [vocab, dim]);
}
