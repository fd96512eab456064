/**
 * A tfjs WebGPU backend on a device that has what the tensor-core forward needs (shader-f16, subgroups and
 * chromium-experimental-subgroup-matrix where the adapter offers them: tfjs's own 'webgpu' backend requests none),
 * with the library's kernels; its forward kernels are re-registered from THIS copy of the modules, so that test hooks
 * set through this copy (setTensorCoreEmulationForTests, setDecodePathForTests) reach them even when another copy
 * registered the 'webgpu' kernels first; the backward kernels likewise (the tensor-core
 * backward reads the same emulation hook). attention_forward.ts takes the tensor-core path where it applies. Used by
 * test/webgpu_tc.test.ts and bench/device/tc_check.ts.
 */
import * as tf from '@tensorflow/tfjs-core';
import {rememberAdapterInfo} from '../kernels/webgpu/device_capabilities.js';
import {tfjsRequiredLimits} from '../kernels/webgpu/setup_webgpu.js';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {FORWARD_KERNEL, GRAD_KERNEL} from '../src/kernel_names.js';
import type {AttentionPlan} from '../src/plan/plan.js';
import {type AttentionInputs, backwardKernelFunc, forwardKernelFunc} from '../kernels/attention_kernel_func.js';
import {runAttentionBackward} from '../kernels/webgpu/attention_backward.js';
import {runAttentionForward} from '../kernels/webgpu/attention_forward.js';
import {WEBGPU_FEATURES} from '../kernels/webgpu/attention_options.js';

function runForward(backend: WebGPUBackend, plan: AttentionPlan, inputs: AttentionInputs) {
  return runAttentionForward(backend, plan, inputs);
}

/** Features the tensor-core path may use, in the order Dawn wants them enabled. */
export const TENSOR_CORE_FEATURES = ['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix'];

/**
 * Registers backend `name` on a device of `adapter` requested with the tensor-core features it offers (plus
 * timestamp-query) and tfjs's limits, copies the 'webgpu' kernels to it (tfjs's and this library's: the library's
 * webgpu kernels must be registered first) and replaces the forward kernels. Returns the device.
 */
export async function registerTensorCoreBackend(name: string, adapter: GPUAdapter): Promise<GPUDevice> {
  const {WebGPUBackend} = await import('@tensorflow/tfjs-backend-webgpu');
  const requiredFeatures = [...TENSOR_CORE_FEATURES, 'timestamp-query']
      .filter((f) => adapter.features.has(f)) as GPUFeatureName[];
  const device = await adapter.requestDevice({requiredFeatures, requiredLimits: tfjsRequiredLimits(adapter)});
  rememberAdapterInfo(device, adapter.info);
  tf.registerBackend(name, async () => new WebGPUBackend(device, adapter.info));
  tf.copyRegisteredKernels('webgpu', name);
  for (const kernelName of Object.values(FORWARD_KERNEL)) {
    tf.unregisterKernel(kernelName, name);
    tf.registerKernel({kernelName, backendName: name, kernelFunc: forwardKernelFunc(runForward, WEBGPU_FEATURES)});
  }
  for (const kernelName of Object.values(GRAD_KERNEL)) {
    tf.unregisterKernel(kernelName, name);
    tf.registerKernel({kernelName, backendName: name,
                       kernelFunc: backwardKernelFunc(runAttentionBackward, WEBGPU_FEATURES)});
  }
  return device;
}

/** Lines of `code` declaring a function-scope `var` without an initialiser (WGSL: a var in a loop must have one). */
export function uninitialisedVars(code: string): string[] {
  return code.split('\n').filter((l) => /^\s*var\s+\w+\s*(:[^=]*)?;/.test(l));
}

/** The program's @workgroup_size (one dimension). */
export function workgroupSize(code: string): number {
  return Number(/@workgroup_size\((\d+)\)/.exec(code)![1]);
}

/**
 * Loop headers, innermost last, enclosing each subgroup-matrix call; throws on a branch around one (except
 * `uniformBranch`: branches known to be workgroup-uniform, e.g. on a workgroupUniformLoad value, named by how their
 * header starts). Shared by test/webgpu_tc_codegen.test.ts (forward) and test/webgpu_tc_grad.test.ts (backward).
 */
export function checkMatrixCallsUnbranched(code: string, uniformBranch?: string | string[]): string[] {
  const allowed = uniformBranch == null ? [] : [uniformBranch].flat();
  const stack: string[] = [];
  const loops: string[] = [];
  for (const line of code.split('\n')) {
    const trimmed = line.trim();
    if (/subgroupMatrix\w+\(/.test(trimmed)) {
      const branch = stack.find((h) => /^(\}\s*else|if\b|else\b|switch\b|while\b|loop\b)/.test(h) &&
                                 !allowed.some((u) => h.startsWith(u)));
      if (branch != null) throw new Error(`subgroup-matrix call under '${branch}': ${trimmed}`);
      loops.push(stack.filter((h) => h.startsWith('for')).join(' / '));
    }
    for (const ch of trimmed) {
      if (ch === '{') stack.push(trimmed);
      if (ch === '}') stack.pop();
    }
  }
  return loops;
}
