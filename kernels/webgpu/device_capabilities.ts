/**
 * What the WebGPU device under a tfjs backend can do beyond core WebGPU (issue 19 §1), read at run time from the
 * device itself: its enabled features and GPUDevice.adapterInfo (subgroup sizes, subgroup-matrix configurations).
 * A feature the adapter offers but the device was not created with is absent here: tfjs's own backend requests only
 * what tfjs uses; setupWebGPU() (setup_webgpu.ts) requests the rest.
 */
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';

/** One subgroup-matrix configuration: left M×K, right K×N, result M×N (Dawn's GPUSubgroupMatrixConfig). */
export interface SubgroupMatrixShape {
  M: number;
  N: number;
  K: number;
}

export interface WebGPUCapabilities {
  /** `shader-f16` is enabled: WGSL may `enable f16`. */
  shaderF16: boolean;
  /** `subgroups` is enabled. */
  subgroups: boolean;
  /** Subgroup sizes the adapter may use (0 when unknown). */
  subgroupMinSize: number;
  subgroupMaxSize: number;
  /**
   * f16 × f16 → f32 subgroup-matrix configurations the device can run: non-empty only when
   * `chromium-experimental-subgroup-matrix`, `shader-f16` and `subgroups` are all enabled.
   */
  subgroupMatrixF16: SubgroupMatrixShape[];
}

interface SubgroupMatrixConfig extends SubgroupMatrixShape {
  componentType: string;
  resultComponentType: string;
}

interface AdapterInfoWithSubgroups {
  subgroupMinSize?: number;
  subgroupMaxSize?: number;
  subgroupMatrixConfigs?: SubgroupMatrixConfig[];
}

const cache = new WeakMap<GPUDevice, WebGPUCapabilities>();
const adapterInfos = new WeakMap<GPUDevice, AdapterInfoWithSubgroups>();

/**
 * Records the adapter info of a device (setupWebGPU does): Dawn's GPUDevice.adapterInfo may lack the
 * subgroup-matrix configurations that GPUAdapter.info has (seen on the H100 through Dawn/Vulkan).
 */
export function rememberAdapterInfo(device: GPUDevice, info: GPUAdapterInfo): void {
  adapterInfos.set(device, info as unknown as AdapterInfoWithSubgroups);
  cache.delete(device);
}

export function deviceCapabilities(device: GPUDevice): WebGPUCapabilities {
  let caps = cache.get(device);
  if (caps == null) {
    const has = (f: string) => device.features.has(f);
    const info = adapterInfos.get(device) ??
        (device as unknown as {adapterInfo?: AdapterInfoWithSubgroups}).adapterInfo ?? {};
    const shaderF16 = has('shader-f16'), subgroups = has('subgroups');
    const matrices = shaderF16 && subgroups && has('chromium-experimental-subgroup-matrix');
    caps = {
      shaderF16,
      subgroups,
      subgroupMinSize: info.subgroupMinSize ?? 0,
      subgroupMaxSize: info.subgroupMaxSize ?? 0,
      subgroupMatrixF16: !matrices ? [] :
          (info.subgroupMatrixConfigs ?? [])
              .filter((c) => c.componentType === 'f16' && c.resultComponentType === 'f32')
              .map((c) => ({M: c.M, N: c.N, K: c.K})),
    };
    cache.set(device, caps);
  }
  return caps;
}

/** The capabilities of a tfjs WebGPU backend's device. */
export function webgpuCapabilities(backend: WebGPUBackend): WebGPUCapabilities {
  return deviceCapabilities(backend.device);
}

/** Whether the device has the f16 subgroup-matrix configuration M×N×K. */
export function hasSubgroupMatrixF16(caps: WebGPUCapabilities, {M, N, K}: SubgroupMatrixShape): boolean {
  return caps.subgroupMatrixF16.some((c) => c.M === M && c.N === N && c.K === K);
}
