/**
 * The UpdateKVCache program: one invocation per output element (per vec4 when a cache row's kvHeads·headDim values
 * are a multiple of 4), reading the update where the row was written and the old cache elsewhere. Workgroups are
 * laid out in two dimensions so that caches of more than 65,535 workgroups still dispatch.
 */
import type {MultiOutputProgram, UniformType} from './program_runner.js';

export const UPDATE_KV_CACHE_WORKGROUP = 64;

export class UpdateKVCacheProgram implements MultiOutputProgram {
  outputNames = ['result'];
  outputTypes: string[];
  variableNames = ['cache', 'update', 'positions'];
  variableTypes: string[];
  /** size and rowSize count vectors of `width` floats. */
  uniformFields: Array<[string, UniformType]> = [
    ['size', 'u32'], ['capacity', 'i32'], ['updateRows', 'i32'], ['rowSize', 'u32'], ['workgroupsX', 'u32'],
  ];
  shaderKey: string;

  /** width: 4 (vec4 elements) or 1. */
  constructor(readonly width: 1 | 4) {
    const type = width === 4 ? 'vec4<f32>' : 'f32';
    this.outputTypes = [type];
    this.variableTypes = [type, type, 'i32'];
    this.shaderKey = `updateKVCache:${width}`;
  }

  getUserCode(): string {
    return `
@compute @workgroup_size(${UPDATE_KV_CACHE_WORKGROUP}, 1, 1)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let index = (wg.y * uniforms.workgroupsX + wg.x) * ${UPDATE_KV_CACHE_WORKGROUP}u + lid;
  if (index >= uniforms.size) { return; }
  let row = index / uniforms.rowSize;           // b · capacity + c
  let within = index - row * uniforms.rowSize;
  let b = i32(row) / uniforms.capacity;
  let c = i32(row) - b * uniforms.capacity;
  // The kernels' clamp rule: the n written rows always fit.
  let start = clamp(positions[b], 0, uniforms.capacity - uniforms.updateRows);
  let r = c - start;
  if (r >= 0 && r < uniforms.updateRows) {
    result[index] = update[u32(b * uniforms.updateRows + r) * uniforms.rowSize + within];
  } else {
    result[index] = cache[index];
  }
}
`;
  }
}
