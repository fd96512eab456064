/**
 * The FlashAttentionGrad kernel called directly on saved forward outputs (the backward alone, no tf.grads tape), as
 * the backward benchmarks time it (bench/suite/sections/webgpu_backward.ts, bench/device/backward_sweep.ts).
 * B1, H heads, no options; `precision` (default 'highest') for the forward it saves and the backward plan; `dispose`
 * frees what it made (not q, k, v, dy).
 */
import * as tf from '@tensorflow/tfjs-core';
import {flashAttention} from '../../src/index.js';
import {attentionAttrs, FlashAttentionGrad} from '../../src/kernel_names.js';
import {AttentionPlan, makePlan} from '../../src/plan/plan.js';
import type {AttentionPrecision} from '../../src/plan/precision.js';

export function backwardKernelCall(
    q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, dy: tf.Tensor4D, causal: boolean,
    precision: AttentionPrecision = 'highest'):
    {run: () => tf.Tensor[]; plan: AttentionPlan; dispose: () => void} {
  const [, seq, heads, headDim] = q.shape;
  const {output, lse} =
      flashAttention(q, k, v, {causal, returnLse: true, precision}) as {output: tf.Tensor; lse: tf.Tensor};
  const dLse = tf.zerosLike(lse);
  const keyLengths = tf.tensor1d([seq], 'int32');
  const plan = makePlan({kind: 'flash', batch: 1, seqQ: seq, seqK: seq, heads, kvHeads: heads, headDim,
                         scale: 1 / Math.sqrt(headDim), softcap: 0, windowLeft: -1, windowRight: causal ? 0 : -1,
                         layout: null, hasKeyLengths: false, precision});
  // Every input the kernel contract names; the absent optional ones are bound to keyLengths (as the ops do).
  const absent = keyLengths;
  const inputs = {q, k, v, keyLengths, queryOffsets: absent, mask: absent, bias: absent, alibiSlopes: absent,
                  queryIds: absent, keyIds: absent, output, lse, dOutput: dy, dLse};
  return {
    plan,
    run: () => tf.engine().runKernel(FlashAttentionGrad, inputs, attentionAttrs(plan)) as tf.Tensor[],
    dispose: () => tf.dispose([output, lse, dLse, keyLengths]),
  };
}
