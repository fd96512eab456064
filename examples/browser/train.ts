/**
 * Trains a tiny transformer in the page: the model of the node training example (examples/node-training/model.ts:
 * token embedding + PositionEmbedding, one pre-norm TransformerDecoder of this package, a classifier) on a small key–value
 * recall task (examples/node-training/task.ts): a few "k=v" facts at the start of the sequence, then queries "k?"
 * whose answer is the value stored with k. Only attention can reach the facts, so the loss falls from ln(numValues)
 * once the attention layer learns to look them up (~30–40 steps with full attention).
 */
import * as tf from '@tensorflow/tfjs';
import type {AttentionSpec} from '../../src/index.js';
import {buildModel, logitsFrom} from '../node-training/model.js';
import {makeBatches, RecallTask, vocabularySize} from '../node-training/task.js';

export type TrainAttention = 'flash' | 'sliding' | 'sparse' | 'naive';

/** The attention of the training run: same model, only the attention layer differs. */
export const TRAIN_ATTENTION: Record<TrainAttention, {label: string; spec: AttentionSpec}> = {
  flash: {label: 'flash (full causal)', spec: 'flash'},
  sliding: {label: 'sliding window 4 (cannot reach the facts)', spec: {type: 'sliding', windowSize: 4}},
  sparse: {label: 'sparse local+global (blocks of 8)',
           spec: {type: 'sparse', pattern: {name: 'longformer', blockSize: 8, windowBlocks: 1, globalBlocks: [0]}}},
  naive: {label: 'naive (tfjs matMul→softmax→matMul)', spec: 'naive'},
};

/** Short sequences, so a training step takes well under a second even on a software renderer. */
export const TASK: RecallTask = {seq: 32, promptLength: 8, numFacts: 4, numKeys: 4, numValues: 8, numFiller: 4};

export interface TrainConfig {
  attention: TrainAttention;
  steps: number;
  batch: number;
  learningRate: number;
  seed: number;
}

export interface TrainStep {
  step: number;
  loss: number;
  ms: number;
}

/** Trains for config.steps steps, calling onStep after each (await it: the page redraws there); returns the losses. */
export async function train(config: TrainConfig, onStep: (s: TrainStep) => Promise<void> | void,
                            shouldStop: () => boolean = () => false): Promise<TrainStep[]> {
  const task = TASK;
  const model = buildModel({
    vocabSize: vocabularySize(task), numClasses: task.numValues, maxLength: task.seq, modelDim: 32, numHeads: 2,
    numLayers: 1, attention: TRAIN_ATTENTION[config.attention].spec,
    positionInitializer: tf.initializers.randomUniform({minval: -0.05, maxval: 0.05}),
  });
  const optimizer = tf.train.adam(config.learningRate);
  const nextBatch = makeBatches(task, config.seed);
  const queries = task.seq - task.promptLength;
  const steps: TrainStep[] = [];
  try {
    for (let s = 0; s < config.steps && !shouldStop(); s++) {
      const {tokens, targets} = nextBatch(config.batch);
      const t0 = performance.now();
      const loss = tf.tidy(() => {
        const x = tf.tensor2d(tokens, [config.batch, task.seq], 'int32');
        const y = tf.oneHot(tf.tensor2d(targets, [config.batch, queries], 'int32'), task.numValues);
        return optimizer.minimize(
            () => tf.losses.softmaxCrossEntropy(y, logitsFrom(model, x, task.promptLength, true)) as tf.Scalar, true)!;
      });
      const value = (await loss.data())[0];
      loss.dispose();
      const step = {step: s + 1, loss: value, ms: performance.now() - t0};
      steps.push(step);
      await onStep(step);
    }
  } finally {
    optimizer.dispose();
    model.dispose();
  }
  return steps;
}
