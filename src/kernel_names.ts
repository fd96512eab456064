/**
 * Kernel names and their inputs/attrs, as in tfjs-core's kernel_names.ts.
 *
 * Forward kernels: inputs {q, k, v, keyLengths, queryOffsets, mask, bias, alibiSlopes, queryIds, keyIds},
 *   attrs {plan}; outputs [output, lse]: output [batch, seqQ, heads, headDim] float32, lse [batch, heads, seqQ].
 * Grad kernels: the forward inputs and {output, lse, dOutput, dLse}, attrs {plan}; outputs [dq, dk, dv], and dBias
 *   (the shape of bias: dS summed over its broadcast axes) when plan.bias is set.
 *   dLse is the gradient flowing into lse (zeros when lse is unused): dS = P ∘ (dP − rowsum(dO∘O) + dLse);
 *   with dropout dP = (dO·Vᵀ) ∘ Z / (1 − rate) and dV = (P ∘ Z / (1 − rate))ᵀ·dO (FlashAttention-2).
 * Every input is always present (the gradient config saves them by name). keyLengths is an int32 [batch] tensor,
 * read only when plan.hasKeyLengths. The optional inputs are read only when the plan says they are there
 * (queryOffsets: plan.hasQueryOffsets, int32 [batch]; mask: plan.mask; bias: plan.bias; alibiSlopes: plan.alibi,
 * float32 [batch | 1, heads]; queryIds/keyIds: plan.hasSegments, int32 [batch, seqQ] / [batch, seqK]); when absent
 * they are bound to some other tensor (today the keyLengths tensor) and must not be read.
 */
import type {NamedAttrMap} from '@tensorflow/tfjs-core';
import type {AttentionKind, AttentionPlan} from './plan/plan.js';

export const FlashAttention = 'FlashAttention';
export const SlidingWindowAttention = 'SlidingWindowAttention';
export const SparseAttention = 'SparseAttention';
export const FlashAttentionGrad = 'FlashAttentionGrad';
export const SlidingWindowAttentionGrad = 'SlidingWindowAttentionGrad';
export const SparseAttentionGrad = 'SparseAttentionGrad';

export const FORWARD_KERNEL: Record<AttentionKind, string> = {
  flash: FlashAttention,
  sliding: SlidingWindowAttention,
  sparse: SparseAttention,
};
export const GRAD_KERNEL: Record<AttentionKind, string> = {
  flash: FlashAttentionGrad,
  sliding: SlidingWindowAttentionGrad,
  sparse: SparseAttentionGrad,
};
export const ALL_KERNELS = [...Object.values(FORWARD_KERNEL), ...Object.values(GRAD_KERNEL)];

export const ATTENTION_INPUT_NAMES = [
  'q', 'k', 'v', 'keyLengths', 'queryOffsets', 'mask', 'bias', 'alibiSlopes', 'queryIds', 'keyIds',
] as const;
export const ATTENTION_GRAD_INPUT_NAMES = [...ATTENTION_INPUT_NAMES, 'output', 'lse', 'dOutput', 'dLse'] as const;
export type AttentionInputNames = typeof ATTENTION_INPUT_NAMES[number];
export type AttentionGradInputNames = typeof ATTENTION_GRAD_INPUT_NAMES[number];

export interface AttentionAttrs {
  plan: AttentionPlan;
}

export function attentionAttrs(plan: AttentionPlan): NamedAttrMap {
  return {plan} as unknown as NamedAttrMap;
}

export function planOf(attrs: NamedAttrMap | undefined): AttentionPlan {
  const plan = (attrs as unknown as AttentionAttrs | undefined)?.plan;
  if (plan == null) throw new Error('attention kernel called without its plan attribute');
  return plan;
}
