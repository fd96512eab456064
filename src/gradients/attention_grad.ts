/**
 * The gradient of every attention forward kernel: save q, k, v, keyLengths and the outputs [output, lse] (never the
 * probabilities), then run the matching backward kernel, which recomputes scores tile by tile (FlashAttention-2).
 */
import * as tf from '@tensorflow/tfjs-core';
import {FORWARD_KERNEL, GRAD_KERNEL, planOf} from '../kernel_names.js';
import {AttentionKind} from '../plan/plan.js';

export function makeAttentionGradConfig(kind: AttentionKind): tf.GradConfig {
  return {
    kernelName: FORWARD_KERNEL[kind],
    inputsToSave: ['q', 'k', 'v', 'keyLengths'],
    outputsToSave: [true, true],
    gradFunc: (dys: tf.Tensor|tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap) => {
      const [q, k, v, keyLengths, output, lse] = saved;
      const [dOutput, dLse] = dys as tf.Tensor[];
      planOf(attrs);  // fail early with a clear message if attrs were lost
      const [dq, dk, dv] = tf.engine().runKernel(
          GRAD_KERNEL[kind], {q, k, v, output, lse, dOutput, dLse, keyLengths}, attrs) as tf.Tensor[];
      return {q: () => dq, k: () => dk, v: () => dv, keyLengths: () => tf.zerosLike(keyLengths)};
    },
  };
}
