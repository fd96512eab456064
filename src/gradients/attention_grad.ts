/**
 * The gradient of every attention forward kernel: save every input and the outputs [output, lse] (never the
 * probabilities), then run the matching backward kernel, which recomputes scores tile by tile (FlashAttention-2) and
 * regenerates the dropout mask from its seed.
 *
 * Gradients: q, k, v from the kernel; bias → dBias (the kernel's fourth output, in the bias's own shape) when the
 * plan has a bias. keyLengths, queryOffsets, mask, ALiBi slopes and segment ids are not differentiable: zeros (as
 * FlashAttention, ALiBi slopes get no gradient). tfjs asks for an input's gradient only when that input lies on the
 * path from the tensors being differentiated, so these zeros are rarely made.
 */
import * as tf from '@tensorflow/tfjs-core';
import {ATTENTION_INPUT_NAMES, FORWARD_KERNEL, GRAD_KERNEL, planOf} from '../kernel_names.js';
import {AttentionKind} from '../plan/plan.js';

export function makeAttentionGradConfig(kind: AttentionKind): tf.GradConfig {
  return {
    kernelName: FORWARD_KERNEL[kind],
    inputsToSave: [...ATTENTION_INPUT_NAMES],
    outputsToSave: [true, true],
    gradFunc: (dys: tf.Tensor|tf.Tensor[], saved: tf.Tensor[], attrs: tf.NamedAttrMap) => {
      const inputs = Object.fromEntries(ATTENTION_INPUT_NAMES.map((name, i) => [name, saved[i]]));
      const [output, lse] = saved.slice(ATTENTION_INPUT_NAMES.length);
      const [dOutput, dLse] = dys as tf.Tensor[];
      const plan = planOf(attrs);  // fail early with a clear message if attrs were lost
      const [dq, dk, dv, dBias] = tf.engine().runKernel(
          GRAD_KERNEL[kind], {...inputs, output, lse, dOutput, dLse}, attrs) as tf.Tensor[];
      const grads: Record<string, () => tf.Tensor> = {};
      // tfjs requires float32 gradients, also for int32/bool inputs.
      for (const name of ATTENTION_INPUT_NAMES) grads[name] = () => tf.zeros(inputs[name].shape, 'float32');
      grads.q = () => dq;
      grads.k = () => dk;
      grads.v = () => dv;
      if (plan.bias != null) {
        if (dBias == null) throw new Error(`${GRAD_KERNEL[kind]} returned no dBias for a plan with a bias`);
        grads.bias = () => dBias;
      }
      return grads;
    },
  };
}
