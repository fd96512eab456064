/**
 * Attention the way a tfjs user writes it by hand: scores = q·kᵀ (matMul), masked softmax, probs·v (matMul).
 * It materialises the [batch, heads, seqQ, seqK] scores and probabilities (and autograd keeps them for the
 * backward pass), which is exactly the cost the attention kernels avoid. Used by `attention: 'naive'` as the
 * baseline; same mask semantics as the kernels (the visibility comes from the AttentionPlan).
 */
import * as tf from '@tensorflow/tfjs-core';
import {MaskOptions} from '../ops/run_attention.js';
import {AttentionPlan, isVisible, makePlan, scheduleHeads} from '../plan/plan.js';

/** Masked scores get this added: exp underflows to exactly 0 and nothing overflows (unlike -Infinity rows). */
const MASKED_SCORE = -1e30;

const visibilityCache = new Map<string, Float32Array>();
const VISIBILITY_CACHE_SIZE = 16;

/** 1/0 per (mask head, i, j): [scheduleHeads(plan), seqQ, seqK], cached by the plan's mask key. */
function visibility(plan: AttentionPlan): Float32Array {
  const key = `${plan.maskKey},${scheduleHeads(plan)}`;
  let mask = visibilityCache.get(key);
  if (mask == null) {
    const maskHeads = scheduleHeads(plan);
    mask = new Float32Array(maskHeads * plan.seqQ * plan.seqK);
    for (let h = 0, n = 0; h < maskHeads; h++) {
      for (let i = 0; i < plan.seqQ; i++) {
        for (let j = 0; j < plan.seqK; j++, n++) mask[n] = isVisible(plan, h, i, j) ? 1 : 0;
      }
    }
    if (visibilityCache.size >= VISIBILITY_CACHE_SIZE) visibilityCache.delete(visibilityCache.keys().next().value!);
    visibilityCache.set(key, mask);
  }
  return mask;
}

/**
 * q: [batch, seqQ, heads, d]; k, v: [batch, seqK, kvHeads, d] (GQA: query head h reads kv head
 * floor(h / (heads / kvHeads))). Returns [batch, seqQ, heads, d]; rows that see no key are 0.
 */
export function naiveAttention(
    q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, mask: MaskOptions, scale: number, keyLengths?: tf.Tensor1D,
    softcap = 0): tf.Tensor4D {
  return tf.tidy(() => {
    const [batch, seqQ, heads, headDim] = q.shape;
    const [, seqK, kvHeads] = k.shape;
    const plan = makePlan({
      kind: 'flash', batch, seqQ, seqK, heads, kvHeads, headDim, scale, softcap, ...mask,
      hasKeyLengths: keyLengths != null,
    });
    let kh = tf.transpose(k, [0, 2, 1, 3]), vh = tf.transpose(v, [0, 2, 1, 3]);  // [b, kvHeads, seqK, d]
    if (plan.groupSize > 1) {
      const kvHeadOf = tf.tensor1d(Array.from({length: heads}, (_, h) => Math.floor(h / plan.groupSize)), 'int32');
      kh = tf.gather(kh, kvHeadOf, 1);
      vh = tf.gather(vh, kvHeadOf, 1);
    }
    let scores = tf.mul(tf.matMul(tf.transpose(q, [0, 2, 1, 3]), kh, false, true), scale);  // [b, h, seqQ, seqK]
    if (softcap > 0) scores = tf.mul(tf.tanh(tf.div(scores, softcap)), softcap);

    let visible: tf.Tensor = tf.tensor4d(visibility(plan), [1, scheduleHeads(plan), seqQ, seqK]);
    if (keyLengths != null) {
      const inLength = tf.less(tf.reshape(tf.range(0, seqK, 1, 'int32'), [1, 1, 1, seqK]),
                               tf.reshape(tf.cast(keyLengths, 'int32'), [batch, 1, 1, 1]));
      visible = tf.mul(visible, tf.cast(inLength, 'float32'));
    }
    const probs = tf.mul(tf.softmax(tf.add(scores, tf.mul(tf.sub(1, visible), MASKED_SCORE))),
                         tf.max(visible, -1, true));  // rows that see nothing → 0
    return tf.transpose(tf.matMul(probs, vh), [0, 2, 1, 3]) as tf.Tensor4D;
  });
}
