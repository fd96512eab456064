/**
 * tfjs's naive attention, the baseline every benchmark races: matMul → (additive mask) → softmax → matMul.
 * It materializes a [batch, heads, seqQ, seqK] score tensor, which is exactly what the fused kernels avoid.
 * The mask comes from the same AttentionPlan semantics (src/plan), materialized as a [seqQ, seqK] additive bias.
 */
import * as tf from '@tensorflow/tfjs-core';
import {AttentionPlan, isVisible} from '../src/plan/plan.js';

/** [seqQ, seqK] additive mask (0 visible, -1e30 masked) for head 0 of the plan (layouts with one head). */
export function additiveMask(plan: AttentionPlan): tf.Tensor2D {
  const bias = new Float32Array(plan.seqQ * plan.seqK);
  for (let i = 0; i < plan.seqQ; i++) {
    for (let j = 0; j < plan.seqK; j++) bias[i * plan.seqK + j] = isVisible(plan, 0, i, j) ? 0 : -1e30;
  }
  return tf.tensor2d(bias, [plan.seqQ, plan.seqK]);
}

/**
 * q [B, Sq, H, D], k/v [B, Sk, Hkv, D] → [B, Sq, H, D]. `mask` is an additive [Sq, Sk] bias or null (dense).
 * GQA is handled by repeating kv heads, as a tfjs user would.
 */
export function naiveAttention(
    q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, scale: number, mask: tf.Tensor2D | null): tf.Tensor4D {
  return tf.tidy(() => {
    const groups = q.shape[2] / k.shape[2];
    // Rank-4 tile (tfjs has no rank-5 tile gradient): [B, S, Hkv, D·groups] → [B, S, Hkv·groups, D], head h → h / groups.
    const expand = (x: tf.Tensor4D) => groups === 1 ? x :
        tf.reshape(tf.tile(x, [1, 1, 1, groups]), [x.shape[0], x.shape[1], q.shape[2], x.shape[3]]) as tf.Tensor4D;
    const qh = tf.transpose(q, [0, 2, 1, 3]);
    const kh = tf.transpose(expand(k), [0, 2, 1, 3]);
    const vh = tf.transpose(expand(v), [0, 2, 1, 3]);
    let scores = tf.mul(tf.matMul(qh, kh, false, true), scale);
    if (mask != null) scores = tf.add(scores, mask);
    const out = tf.matMul(tf.softmax(scores), vh);
    return tf.transpose(out, [0, 2, 1, 3]) as tf.Tensor4D;
  });
}
