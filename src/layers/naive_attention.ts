/**
 * Attention the way a tfjs user writes it by hand: scores = q·kᵀ (matMul), additive mask, softmax, probs·v (matMul).
 * It materialises the [batch, heads, seqQ, seqK] scores and probabilities (and autograd keeps them for the
 * backward pass), which is exactly the cost the attention kernels avoid. The one implementation of that composition:
 * the layers' `attention: 'naive'` mode runs it (naiveAttention) and every benchmark races it as the tfjs baseline
 * (naiveAttentionWithBias and additiveMask, re-exported by bench/naive_attention.ts). The masks come from the
 * AttentionPlan, so the semantics are the kernels'.
 */
import * as tf from '@tensorflow/tfjs-core';
import {MaskOptions} from '../ops/run_attention.js';
import {AttentionPlan, isVisible, makePlan, scheduleHeads} from '../plan/plan.js';

/** Masked scores get this added: exp underflows to exactly 0 and nothing overflows (unlike -Infinity rows). */
const MASKED_SCORE = -1e30;

/** [heads, seqQ, seqK] values: `visible` where mask head h (< heads) sees key j from query i, else `masked`. */
function visibilityValues(plan: AttentionPlan, heads: number, visible: number, masked: number): Float32Array {
  const values = new Float32Array(heads * plan.seqQ * plan.seqK);
  for (let h = 0, n = 0; h < heads; h++) {
    for (let i = 0; i < plan.seqQ; i++) {
      for (let j = 0; j < plan.seqK; j++, n++) values[n] = isVisible(plan, h, i, j) ? visible : masked;
    }
  }
  return values;
}

const visibilityCache = new Map<string, Float32Array>();
const VISIBILITY_CACHE_SIZE = 16;

/** 1/0 per (mask head, i, j): [scheduleHeads(plan), seqQ, seqK], cached by the plan's mask key. */
function visibility(plan: AttentionPlan): Float32Array {
  const key = `${plan.maskKey},${scheduleHeads(plan)}`;
  let mask = visibilityCache.get(key);
  if (mask == null) {
    mask = visibilityValues(plan, scheduleHeads(plan), 1, 0);
    if (visibilityCache.size >= VISIBILITY_CACHE_SIZE) visibilityCache.delete(visibilityCache.keys().next().value!);
    visibilityCache.set(key, mask);
  }
  return mask;
}

/** [seqQ, seqK] additive mask (0 visible, -1e30 masked) for head 0 of the plan (layouts with one head). */
export function additiveMask(plan: AttentionPlan): tf.Tensor2D {
  return tf.tensor2d(visibilityValues(plan, 1, 0, MASKED_SCORE), [plan.seqQ, plan.seqK]);
}

/**
 * The composition itself. q [B, Sq, H, D], k/v [B, Sk, Hkv, D] → [B, Sq, H, D]. `bias` is added to the (scaled,
 * softcapped) [B, H, Sq, Sk] scores, broadcasting ([Sq, Sk] from additiveMask, or null: dense); `rowScale`, when
 * given, multiplies the probabilities (broadcasting to [B, H, Sq, 1]: 0 zeroes rows that see no key). GQA repeats the
 * kv heads with a rank-4 tile, as a tfjs user would (tfjs has no rank-5 tile gradient): query head h reads kv head
 * floor(h / (H / Hkv)).
 */
export function naiveAttentionWithBias(
    q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, scale: number, bias: tf.Tensor | null, softcap = 0,
    rowScale: tf.Tensor | null = null): tf.Tensor4D {
  return tf.tidy(() => {
    const groups = q.shape[2] / k.shape[2];
    // [B, S, Hkv, D·groups] → [B, S, Hkv·groups, D]: head h holds kv head h / groups.
    const expand = (x: tf.Tensor4D) => groups === 1 ? x :
        tf.reshape(tf.tile(x, [1, 1, 1, groups]), [x.shape[0], x.shape[1], q.shape[2], x.shape[3]]) as tf.Tensor4D;
    const qh = tf.transpose(q, [0, 2, 1, 3]);
    const kh = tf.transpose(expand(k), [0, 2, 1, 3]);
    const vh = tf.transpose(expand(v), [0, 2, 1, 3]);
    let scores = tf.mul(tf.matMul(qh, kh, false, true), scale);  // [B, H, Sq, Sk]
    if (softcap > 0) scores = tf.mul(tf.tanh(tf.div(scores, softcap)), softcap);
    if (bias != null) scores = tf.add(scores, bias);
    let probs = tf.softmax(scores);
    if (rowScale != null) probs = tf.mul(probs, rowScale);
    return tf.transpose(tf.matMul(probs, vh), [0, 2, 1, 3]) as tf.Tensor4D;
  });
}

/**
 * The layers' `naive` mode: q: [batch, seqQ, heads, d]; k, v: [batch, seqK, kvHeads, d]; the mask options and
 * keyLengths as the attention ops take them. Returns [batch, seqQ, heads, d]; rows that see no key are 0.
 */
/**
 * 1 where query i may see key j under the op's own mask (causal / window / layout) and keyLengths, else 0:
 * [1 | batch, scheduleHeads(plan), seqQ, seqK] float32. What the kernels compute, as a tensor.
 */
export function structuralVisibility(plan: AttentionPlan, keyLengths?: tf.Tensor1D): tf.Tensor4D {
  return tf.tidy(() => {
    const {seqQ, seqK} = plan;
    let visible: tf.Tensor = tf.tensor4d(visibility(plan), [1, scheduleHeads(plan), seqQ, seqK]);
    if (keyLengths != null) {
      const inLength = tf.less(tf.reshape(tf.range(0, seqK, 1, 'int32'), [1, 1, 1, seqK]),
                               tf.reshape(tf.cast(keyLengths, 'int32'), [keyLengths.shape[0], 1, 1, 1]));
      visible = tf.mul(visible, tf.cast(inLength, 'float32'));
    }
    return visible as tf.Tensor4D;
  });
}

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
    const visible = structuralVisibility(plan, keyLengths);
    const bias = tf.mul(tf.sub(1, visible), MASKED_SCORE);
    return naiveAttentionWithBias(q, k, v, scale, bias, softcap, tf.max(visible, -1, true));  // empty rows → 0
  });
}
