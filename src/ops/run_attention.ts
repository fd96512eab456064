/**
 * The path every op takes: checked options → AttentionPlan → engine.runKernel → [output, lse].
 */
import * as tf from '@tensorflow/tfjs-core';
import {ensureAttentionKernels} from '../../kernels/composite/register_composite_kernels.js';
import {attentionAttrs, FORWARD_KERNEL} from '../kernel_names.js';
import {BlockLayout} from '../patterns/block_layout.js';
import {AttentionKind, AttentionShapes, makePlan} from '../plan/plan.js';
import {checkBoolean, checkKeyLengths, checkScale, checkSoftcap} from './validate.js';

export interface CommonAttentionOptions {
  /** Multiplies q·k; default 1/sqrt(headDim). */
  scale?: number;
  /** score ← softcap·tanh(score/softcap), after scaling and before masking. 0 or absent disables it. */
  softcap?: number;
  /** Per batch, keys at positions >= keyLengths[b] are masked (padding). number[] or int32 Tensor1D [batch]. */
  keyLengths?: number[] | Int32Array | tf.Tensor1D;
  /** Return {output, lse} instead of the output alone. */
  returnLse?: boolean;
}

export interface AttentionWithLse {
  /** [batch, seqQ, heads, headDim] */
  output: tf.Tensor4D;
  /** [batch, heads, seqQ]: natural-log logsumexp of the final scores; -Infinity for a row that sees no key. */
  lse: tf.Tensor3D;
}

export interface MaskOptions {
  windowLeft: number;
  windowRight: number;
  layout: BlockLayout | null;
}

export function runAttention(
    kind: AttentionKind, q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, shapes: AttentionShapes,
    options: CommonAttentionOptions, mask: MaskOptions): tf.Tensor4D | AttentionWithLse {
  const scale = checkScale(options.scale, shapes.headDim);
  const softcap = checkSoftcap(options.softcap);
  const returnLse = checkBoolean('returnLse', options.returnLse);
  const keyLengths = checkKeyLengths(options.keyLengths, shapes.batch, shapes.seqK);
  const plan = makePlan({...shapes, ...mask, kind, scale, softcap, hasKeyLengths: keyLengths != null});

  ensureAttentionKernels(tf.getBackend());
  // Kernels always receive keyLengths (the gradient config saves it by name); without padding it is seqK everywhere
  // and plan.hasKeyLengths tells kernels to ignore it.
  const keyLengthsTensor = keyLengths instanceof tf.Tensor ? keyLengths :
      tf.tensor1d(keyLengths ?? new Array(shapes.batch).fill(shapes.seqK), 'int32');
  let outputs: tf.Tensor[];
  try {
    outputs = tf.engine().runKernel(
        FORWARD_KERNEL[kind], {q, k, v, keyLengths: keyLengthsTensor}, attentionAttrs(plan)) as tf.Tensor[];
  } finally {
    if (keyLengthsTensor !== keyLengths) keyLengthsTensor.dispose();
  }
  const [output, lse] = outputs;
  if (returnLse) return {output: output as tf.Tensor4D, lse: lse as tf.Tensor3D};
  lse.dispose();
  return output as tf.Tensor4D;
}
