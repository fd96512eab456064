/**
 * setupWebGPU(): tfjs's 'webgpu' backend on a device that has the optional features our kernels use (issue 19 §1).
 *
 * tfjs's own backend requests only what tfjs uses (timestamp-query, bgra8unorm-storage), so 'shader-f16',
 * 'subgroups' and 'chromium-experimental-subgroup-matrix' never reach a kernel. This requests the device the way
 * tfjs-backend-webgpu's base.ts does (same features, same required limits) plus those, and registers tfjs's
 * WebGPUBackend on it under the name 'webgpu', replacing any 'webgpu' backend already registered.
 *
 * @tensorflow/tfjs-backend-webgpu is an optional peer dependency: it is imported here, dynamically, only when this
 * function runs.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {rememberAdapterInfo, WebGPUCapabilities, webgpuCapabilities} from './device_capabilities.js';

/** Features the kernels can use, requested when the adapter offers them ('available'). */
export const OPTIONAL_WEBGPU_FEATURES = ['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix'] as const;

/** Features tfjs-backend-webgpu requests itself when offered (base.ts). */
const TFJS_FEATURES = ['timestamp-query', 'bgra8unorm-storage'];

export interface SetupWebGPUOptions {
  /** The GPU to take the adapter from: default navigator.gpu; in node, Dawn's `create([...toggles])`. */
  gpu?: GPU;
  /** Adapter choice; default as tfjs: 'high-performance' unless the WEBGPU_USE_LOW_POWER_GPU flag is set. */
  powerPreference?: GPUPowerPreference;
  /**
   * 'available' (default): every OPTIONAL_WEBGPU_FEATURES entry the adapter offers. Or an explicit list of feature
   * names, each of which the adapter must offer (else setupWebGPU throws, naming it).
   */
  features?: 'available' | readonly string[];
}

const OPTION_KEYS = ['gpu', 'powerPreference', 'features'];
const POWER_PREFERENCES = ['low-power', 'high-performance'];

function checkOptions(options: SetupWebGPUOptions): void {
  if (options == null || typeof options !== 'object') {
    throw new Error(`setupWebGPU: options must be an object, got ${JSON.stringify(options)}`);
  }
  const unknown = Object.keys(options).filter((k) => !OPTION_KEYS.includes(k));
  if (unknown.length > 0) {
    throw new Error(`setupWebGPU: unknown option${unknown.length > 1 ? 's' : ''} ${
        unknown.map((k) => `'${k}'`).join(', ')} (expected ${OPTION_KEYS.map((k) => `'${k}'`).join(', ')})`);
  }
  const {powerPreference, features} = options;
  if (powerPreference !== undefined && !POWER_PREFERENCES.includes(powerPreference)) {
    throw new Error(`setupWebGPU: powerPreference must be 'low-power' or 'high-performance', got ${
        JSON.stringify(powerPreference)}`);
  }
  if (features !== undefined && features !== 'available' &&
      !(Array.isArray(features) && features.every((f) => typeof f === 'string'))) {
    throw new Error(`setupWebGPU: features must be 'available' or an array of feature names, got ${
        JSON.stringify(features)}`);
  }
}

/** The features to request: tfjs's own when offered, plus the optional ones asked for. */
function featuresToRequest(adapter: GPUAdapter, features: 'available' | readonly string[]): GPUFeatureName[] {
  const offered = (f: string) => adapter.features.has(f);
  const asked = features === 'available' ? OPTIONAL_WEBGPU_FEATURES.filter(offered) : features;
  const missing = asked.filter((f) => !offered(f));
  if (missing.length > 0) {
    throw new Error(`setupWebGPU: the adapter does not offer feature${missing.length > 1 ? 's' : ''} ${
        missing.map((f) => `'${f}'`).join(', ')} (it offers ${[...adapter.features].sort().map((f) => `'${f}'`)
        .join(', ')}; on Dawn, shader-f16 on NVIDIA needs the toggle vulkan_enable_f16_on_nvidia and subgroup ` +
        'matrices need allow_unsafe_apis)');
  }
  return [...new Set([...TFJS_FEATURES.filter(offered), ...asked])] as GPUFeatureName[];
}

/**
 * Registers tfjs's WebGPU backend as 'webgpu' on a device with the optional features the adapter offers (or those
 * named in `features`), makes it the current backend and returns what the device can do.
 *
 * A 'webgpu' backend registered before (tfjs-backend-webgpu registers one when imported in a page with
 * navigator.gpu) is removed first (tf.removeBackend): if it was already instantiated, it is disposed and tensors it
 * held are gone — call setupWebGPU before making webgpu tensors. In node, navigator.gpu is set to `gpu` when there is
 * none (tfjs's backend refuses to start without it).
 */
export async function setupWebGPU(options: SetupWebGPUOptions = {}): Promise<WebGPUCapabilities> {
  checkOptions(options);
  const nav = (globalThis as {navigator?: {gpu?: GPU}}).navigator;
  const gpu = options.gpu ?? nav?.gpu;
  if (gpu == null) {
    throw new Error('setupWebGPU: no WebGPU here (navigator.gpu is undefined); in node pass options.gpu, e.g. ' +
        "create([]) from the 'webgpu' package");
  }
  if (nav == null) {
    Object.defineProperty(globalThis, 'navigator', {value: {gpu}, configurable: true, writable: true});
  } else if (nav.gpu == null) {
    Object.defineProperty(nav, 'gpu', {value: gpu, configurable: true, writable: true});
  }
  // Imported after navigator.gpu exists: the package registers its own 'webgpu' factory only then (removed below).
  const {WebGPUBackend} = await import('@tensorflow/tfjs-backend-webgpu');
  if (typeof WebGPUBackend !== 'function') {
    throw new Error('setupWebGPU: @tensorflow/tfjs-backend-webgpu is not loaded (with the global tf of a page, load ' +
        'tf-backend-webgpu.min.js before this library)');
  }
  // After the import: the package registers the flag.
  const powerPreference = options.powerPreference ??
      (tf.env().getBool('WEBGPU_USE_LOW_POWER_GPU') ? 'low-power' : 'high-performance');
  const adapter = await gpu.requestAdapter({powerPreference});
  if (adapter == null) throw new Error('setupWebGPU: requestAdapter() returned null (no WebGPU adapter)');
  const requiredFeatures = featuresToRequest(adapter, options.features ?? 'available');
  const device = await adapter.requestDevice({requiredFeatures, requiredLimits: tfjsRequiredLimits(adapter)});
  rememberAdapterInfo(device, adapter.info);
  const backend = new WebGPUBackend(device, adapter.info) as WebGPUBackend;
  if (tf.findBackendFactory('webgpu') != null) tf.removeBackend('webgpu');
  tf.registerBackend('webgpu', () => backend, 3 /* tfjs's priority for webgpu */);
  if (!(await tf.setBackend('webgpu'))) throw new Error('setupWebGPU: tf.setBackend(\'webgpu\') failed');
  return webgpuCapabilities(backend);
}

/** The limits tfjs-backend-webgpu's base.ts requires of a device: the adapter's maxima. */
export function tfjsRequiredLimits(adapter: GPUAdapter): Record<string, number> {
  const l = adapter.limits;
  return {
    maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
    maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
    maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
    maxBufferSize: l.maxBufferSize,
    maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
    maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
  };
}
