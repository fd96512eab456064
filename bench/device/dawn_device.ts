/**
 * Dawn (the `webgpu` package) for the device scripts of this folder: its GPU created with their toggles, its GPU
 * globals (GPUBufferUsage, GPUDevice, …) installed, navigator.gpu set (tfjs's webgpu package and setupWebGPU look
 * there), the high-performance adapter and its name in one line; then the backend: setupWebGPU({gpu}) for the
 * library's 'webgpu' backend, or tensorCoreBackend(adapter) below for one on a device with the tensor-core features.
 */
import {create, globals} from 'webgpu';

/**
 * The toggles that unhide shader-f16 (vulkan_enable_f16_on_nvidia) and the subgroup-matrix configurations
 * (allow_unsafe_apis) on NVIDIA's Vulkan driver (README, "Precision and device features"; features_probe.mjs).
 */
export const DAWN_TOGGLES = 'enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia';

/** Dawn's GPU created with `toggles`, with its globals installed and navigator.gpu set to it. */
export function dawnGpu(toggles: string[] = []): GPU {
  Object.assign(globalThis, globals);
  const gpu = create(toggles);
  Object.defineProperty(globalThis, 'navigator', {value: {gpu}, configurable: true, writable: true});
  return gpu;
}

/** dawnGpu(toggles) and its high-performance adapter (null where there is none). */
export async function dawnAdapter(toggles: string[] = []): Promise<{gpu: GPU; adapter: GPUAdapter | null}> {
  const gpu = dawnGpu(toggles);
  return {gpu, adapter: await gpu.requestAdapter({powerPreference: 'high-performance'})};
}

/** The adapter in one line: vendor / architecture / device / description (the ones Dawn fills in). */
export function adapterName(adapter: GPUAdapter): string {
  const info = adapter.info;
  return [info.vendor, info.architecture, info.device, info.description].filter((s) => s).join(' / ');
}

/**
 * The tensor-core scripts' backend: 'webgpu-tc' on a device of `adapter` with the tensor-core features
 * (registerTensorCoreBackend: the library's webgpu kernels must be registered already), made current. `uncaptured`
 * collects the device's uncaptured errors. tfjs is imported here, after dawnGpu has set navigator.gpu.
 */
export async function tensorCoreBackend(adapter: GPUAdapter): Promise<{device: GPUDevice; uncaptured: string[]}> {
  const tf = await import('@tensorflow/tfjs-core');
  const {registerTensorCoreBackend} = await import('../../test/tc_kernels.js');
  const device = await registerTensorCoreBackend('webgpu-tc', adapter);
  const uncaptured: string[] = [];
  device.onuncapturederror = (e: GPUUncapturedErrorEvent) => uncaptured.push(e.error.message);
  await tf.setBackend('webgpu-tc');
  return {device, uncaptured};
}
