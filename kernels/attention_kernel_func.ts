/**
 * The one shape of every attention kernel file: a backend supplies its executor pair
 *   runAttentionForward(backend, plan, inputs)   → [output, lse]
 *   runAttentionBackward(backend, plan, inputs)  → [dq, dk, dv]
 * and its kernel files wrap them with forwardKernelFunc / backwardKernelFunc, which read the plan attribute, check
 * that every input the kernel contract names (src/kernel_names.ts) is present, and refuse (with an error naming the
 * option and the backend) a plan that uses an option the backend does not declare in `supported`: an option is
 * either executed exactly or rejected, never ignored.
 */
import {getBackend, type KernelBackend, type KernelFunc, type TensorInfo} from '@tensorflow/tfjs-core';
import {
  ATTENTION_GRAD_INPUT_NAMES, ATTENTION_INPUT_NAMES, AttentionGradInputNames, AttentionInputNames, FORWARD_KERNEL,
  GRAD_KERNEL, planOf,
} from '../src/kernel_names.js';
import {type AttentionPlan, type PlanFeature, planFeatures} from '../src/plan/plan.js';
import {recordAttentionPath} from '../src/plan/precision.js';

export type AttentionInputs = Record<AttentionInputNames, TensorInfo>;
export type AttentionGradInputs = Record<AttentionGradInputNames, TensorInfo>;

export type RunAttention<Backend, Inputs> = (backend: Backend, plan: AttentionPlan, inputs: Inputs) => TensorInfo[];

/** Options (src/plan/plan.ts PlanFeature) a backend's kernels execute. */
export type SupportedFeatures = readonly PlanFeature[];

/** planFeatures of each plan (the ops reuse plan objects across calls: src/ops/run_attention.ts). */
const featuresOfPlan = new WeakMap<AttentionPlan, readonly PlanFeature[]>();

function featuresOf(plan: AttentionPlan): readonly PlanFeature[] {
  let f = featuresOfPlan.get(plan);
  if (f === undefined) featuresOfPlan.set(plan, f = planFeatures(plan));
  return f;
}

function kernelFuncOf<Backend extends KernelBackend, Inputs>(
    kernelNames: Record<AttentionPlan['kind'], string>, names: readonly string[], run: RunAttention<Backend, Inputs>, supported: SupportedFeatures): KernelFunc {
  return ({inputs, backend, attrs}) => {
    const plan = planOf(attrs);
    for (const name of names) {
      if (inputs[name] == null) throw new Error(`attention kernel (${plan.kind}): missing input '${name}'`);
    }
    const features = featuresOf(plan);
    const missing = features.length === 0 ? features : features.filter((f) => !supported.includes(f));
    if (missing.length > 0) {
      const name = getBackend();
      throw new Error(`attention (${plan.kind}): option${missing.length > 1 ? 's' : ''} ${
          missing.map((m) => `'${m}'`).join(', ')} ${missing.length > 1 ? 'are' : 'is'} not supported by the ${
          name} kernels of this version`);
    }
    // fp32 unless the backend's executor records the faster path it took (src/plan/precision.ts).
    recordAttentionPath({backend: getBackend(), kernel: kernelNames[plan.kind], requested: plan.precision, path: 'fp32'});
    return run(backend as Backend, plan, inputs as unknown as Inputs);
  };
}

/** kernelFunc of a forward kernel (FlashAttention, SlidingWindowAttention, SparseAttention). */
export function forwardKernelFunc<Backend extends KernelBackend>(
    run: RunAttention<Backend, AttentionInputs>, supported: SupportedFeatures = []): KernelFunc {
  return kernelFuncOf(FORWARD_KERNEL, ATTENTION_INPUT_NAMES, run, supported);
}

/** kernelFunc of a backward kernel (FlashAttentionGrad, …). */
export function backwardKernelFunc<Backend extends KernelBackend>(
    run: RunAttention<Backend, AttentionGradInputs>, supported: SupportedFeatures = []): KernelFunc {
  return kernelFuncOf(GRAD_KERNEL, ATTENTION_GRAD_INPUT_NAMES, run, supported);
}
