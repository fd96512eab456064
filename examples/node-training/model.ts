/**
 * A tiny GPT in a few lines of tf.layers, written as in keras_hub: token embedding + PositionEmbedding (added),
 * pre-norm TransformerDecoder blocks (causal self-attention) whose attention is chosen per variant, and a classifier
 * over the answer values. (No final tf.layers.layerNormalization:
 * its backward pass runs Tile's gradient, one Slice + Add kernel per (batch, position), which at 4k tokens per step
 * cost more than the whole transformer on the cpu backend.)
 */
import * as tf from '@tensorflow/tfjs';
// In an app: import {layers} from 'tfjs-efficient-attention';
import {layers} from '../../src/index.js';
import type {AttentionSpec} from '../../src/index.js';
import {TokenEmbedding} from './token_embedding.js';

export interface ModelOptions {
  vocabSize: number;
  numClasses: number;
  maxLength: number;
  modelDim: number;
  numHeads: number;
  numLayers: number;
  attention: AttentionSpec;
  /**
   * The position table's initializer (default keras_hub's, glorot uniform: ±0.3 at dim 32 against the token
   * embedding's ±0.05). The browser demo's short run (seq 32, 40 steps) learns sooner with small position vectors.
   */
  positionInitializer?: ReturnType<typeof tf.initializers.randomUniform>;
}

export function buildModel(o: ModelOptions): tf.LayersModel {
  const tokens = tf.input({shape: [null]});
  const embedded = new TokenEmbedding({inputDim: o.vocabSize, outputDim: o.modelDim}).apply(tokens) as tf.SymbolicTensor;
  const positions = layers.positionEmbedding({sequenceLength: o.maxLength, initializer: o.positionInitializer})
                        .apply(embedded) as tf.SymbolicTensor;
  let x = tf.layers.add().apply([embedded, positions]) as tf.SymbolicTensor;
  for (let i = 0; i < o.numLayers; i++) {
    x = layers.transformerDecoder({
      numHeads: o.numHeads, intermediateDim: 2 * o.modelDim, normalizeFirst: true, activation: 'gelu',
      attention: o.attention,
    }).apply(x) as tf.SymbolicTensor;
  }
  const logits = tf.layers.dense({units: o.numClasses}).apply(x) as tf.SymbolicTensor;
  return tf.model({inputs: tokens, outputs: logits});
}

/** Logits at positions [from, seq): [batch, seq - from, numClasses]. */
export function logitsFrom(model: tf.LayersModel, tokens: tf.Tensor2D, from: number, training: boolean): tf.Tensor3D {
  const logits = model.apply(tokens, {training}) as tf.Tensor3D;
  const [batch, seq, classes] = logits.shape;
  return tf.slice(logits, [0, from, 0], [batch, seq - from, classes]);
}
