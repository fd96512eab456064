/**
 * The one shape of every attention kernel file: a backend supplies its executor pair
 *   runAttentionForward(backend, plan, inputs)   → [output, lse]
 *   runAttentionBackward(backend, plan, inputs)  → [dq, dk, dv]
 * and its kernel files wrap them with attentionKernelFunc, which reads the plan attribute and checks that every
 * input the kernel contract names (src/kernel_names.ts) is present.
 */
import type {KernelBackend, KernelFunc, TensorInfo} from '@tensorflow/tfjs-core';
import {
  ATTENTION_GRAD_INPUT_NAMES, ATTENTION_INPUT_NAMES, AttentionGradInputNames, AttentionInputNames, planOf,
} from '../src/kernel_names.js';
import type {AttentionPlan} from '../src/plan/plan.js';

export type AttentionInputs = Record<AttentionInputNames, TensorInfo>;
export type AttentionGradInputs = Record<AttentionGradInputNames, TensorInfo>;

export type RunAttention<Backend, Inputs> = (backend: Backend, plan: AttentionPlan, inputs: Inputs) => TensorInfo[];

function kernelFuncOf<Backend extends KernelBackend, Inputs>(
    names: readonly string[], run: RunAttention<Backend, Inputs>): KernelFunc {
  return ({inputs, backend, attrs}) => {
    const plan = planOf(attrs);
    for (const name of names) {
      if (inputs[name] == null) throw new Error(`attention kernel (${plan.kind}): missing input '${name}'`);
    }
    return run(backend as Backend, plan, inputs as unknown as Inputs);
  };
}

/** kernelFunc of a forward kernel (FlashAttention, SlidingWindowAttention, SparseAttention). */
export function forwardKernelFunc<Backend extends KernelBackend>(
    run: RunAttention<Backend, AttentionInputs>): KernelFunc {
  return kernelFuncOf(ATTENTION_INPUT_NAMES, run);
}

/** kernelFunc of a backward kernel (FlashAttentionGrad, …). */
export function backwardKernelFunc<Backend extends KernelBackend>(
    run: RunAttention<Backend, AttentionGradInputs>): KernelFunc {
  return kernelFuncOf(ATTENTION_GRAD_INPUT_NAMES, run);
}
