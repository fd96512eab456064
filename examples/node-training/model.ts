/**
 * A tiny GPT in a few lines of tf.layers: token embedding + position embedding, pre-norm transformer blocks whose
 * attention is chosen per variant, and a classifier over the answer values. (No final tf.layers.layerNormalization:
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
}

export function buildModel(o: ModelOptions): tf.Sequential {
  const model = tf.sequential();
  model.add(new TokenEmbedding({inputDim: o.vocabSize, outputDim: o.modelDim, inputShape: [null]}));
  model.add(layers.positionEmbedding({type: 'learned', maxLength: o.maxLength}));
  for (let i = 0; i < o.numLayers; i++) {
    model.add(layers.transformerBlock({numHeads: o.numHeads, mlpDim: 2 * o.modelDim, attention: o.attention}));
  }
  model.add(tf.layers.dense({units: o.numClasses}));
  return model;
}

/** Logits at positions [from, seq): [batch, seq - from, numClasses]. */
export function logitsFrom(model: tf.LayersModel, tokens: tf.Tensor2D, from: number, training: boolean): tf.Tensor3D {
  const logits = model.apply(tokens, {training}) as tf.Tensor3D;
  const [batch, seq, classes] = logits.shape;
  return tf.slice(logits, [0, from, 0], [batch, seq - from, classes]);
}
