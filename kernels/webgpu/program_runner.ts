/**
 * Runs a compute program with several inputs AND several outputs inside tfjs-backend-webgpu's own command stream.
 *
 * tfjs's runWebGPUProgram binds exactly one output and derives the uniforms from shapes; attention kernels write two
 * outputs (output and lse forward, dK and dV backward) and want sizes as uniforms so that one pipeline serves every
 * sequence length. This mirrors WebGPUBackend.recordAndSubmit (backend_webgpu.js, tfjs 4.22): same command encoder
 * and compute pass, same deferred-submit batching, same commandQueueOwnedIds bookkeeping (so tensors disposed while
 * queued are released after submit), same pipeline cache, and the same timestamp queries under tf.profile/tf.time.
 * No readbacks, no second device.
 *
 * Binding order: outputs (read_write storage), then inputs (read-only storage), then one uniform buffer
 * `uniforms: Uniforms` made of the program's scalar fields. A binding may cover part of a tensor's buffer
 * (BufferRange) so that callers can split work whose tensors exceed maxStorageBufferBindingSize.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';

export type UniformType = 'i32' | 'u32' | 'f32';

/** A GPU program with named bindings; the class fields follow tfjs's WebGPUProgram where they mean the same. */
export interface MultiOutputProgram {
  /** Output binding names, in binding order (bindings 0 .. outputs - 1). */
  outputNames: string[];
  /** WGSL element type of each output array, e.g. 'f32' or 'vec4<f32>'. */
  outputTypes: string[];
  /** Input binding names, in binding order after the outputs. */
  variableNames: string[];
  /** WGSL element type of each input array, e.g. 'f32', 'vec4<f32>', 'i32'. */
  variableTypes: string[];
  /** Scalar uniform fields, in order: [name, type]. Read in the shader as `uniforms.name`. */
  uniformFields: Array<[string, UniformType]>;
  /** WGSL `enable` extensions the code needs (e.g. 'subgroups'); the device must have the features. */
  enables?: string[];
  /** WGSL global diagnostic filters, e.g. 'off, subgroup_uniformity' (written as `diagnostic(...)`). */
  diagnostics?: string[];
  /** Everything that changes the generated code (and nothing that doesn't): the pipeline cache key. */
  shaderKey: string;
  /** The shader after the generated binding declarations; defines `@compute @workgroup_size(...) fn main`. */
  getUserCode(): string;
}

/** A byte range of a tensor's buffer; byteOffset must be a multiple of minStorageBufferOffsetAlignment. */
export interface BufferRange {
  tensor: tf.TensorInfo;
  byteOffset: number;
  byteSize: number;
}

export type Binding = tf.TensorInfo | BufferRange;

export interface ProgramRun {
  outputs: Binding[];
  inputs: Binding[];
  /** One value per uniformFields entry. */
  uniforms: number[];
  dispatch: [number, number, number];
}

/** Limits the attention kernels plan against; tests can shrink them (setLimitsOverrideForTests) to exercise splits. */
export interface ProgramLimits {
  maxStorageBufferBindingSize: number;
  maxComputeWorkgroupsPerDimension: number;
  maxComputeWorkgroupStorageSize: number;
  maxComputeInvocationsPerWorkgroup: number;
  minStorageBufferOffsetAlignment: number;
}

let limitsOverride: Partial<ProgramLimits> | null = null;

/** Test hook: pretend the device has smaller limits (null restores the real ones). */
export function setLimitsOverrideForTests(limits: Partial<ProgramLimits> | null): void {
  limitsOverride = limits == null ? null : {...limits};
}

/** The device's limits, read once per device (each read of device.limits crosses into the WebGPU implementation). */
const deviceLimits = new WeakMap<GPUDevice, ProgramLimits>();
/** The last override merged with the device's limits (one object while neither changes: callers may key on it). */
let overridden: {device: GPUDevice; override: Partial<ProgramLimits>; limits: ProgramLimits} | null = null;

export function getLimits(backend: WebGPUBackend): ProgramLimits {
  const device = backend.device;
  let real = deviceLimits.get(device);
  if (real === undefined) {
    const l = device.limits;
    real = Object.freeze({
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      minStorageBufferOffsetAlignment: l.minStorageBufferOffsetAlignment,
    });
    deviceLimits.set(device, real);
  }
  if (limitsOverride == null) return real;
  if (overridden?.device !== device || overridden.override !== limitsOverride) {
    overridden = {device, override: limitsOverride, limits: Object.freeze({...real, ...limitsOverride})};
  }
  return overridden.limits;
}

// The backend's private members this module mirrors recordAndSubmit with (present in tfjs-backend-webgpu 4.x).
interface BackendInternals {
  device: GPUDevice;
  queue: GPUQueue;
  commandEncoder: GPUCommandEncoder | null;
  computePassEncoder: GPUComputePassEncoder | null;
  dispatchCountInPass: number;
  commandQueueOwnedIds: WeakSet<object>;
  pipelineCache: Record<string, GPUComputePipeline | Promise<GPUComputePipeline>>;
  tensorMap: {get(dataId: object): {dtype: string; resource: GPUBuffer | unknown; values: unknown}};
  activeTimers: Array<{name: string; query: Promise<number>}> | null;
  supportTimestampQuery: boolean;
  querySet: GPUQuerySet | null;
  querySetCount: number;
  makeTensorInfo(shape: number[], dtype: tf.DataType, values?: tf.backend_util.BackendValues): tf.TensorInfo;
  uploadToGPU(dataId: object): void;
  bufferManager: {acquireBuffer(size: number, usage: number): GPUBuffer};
  uniformPendingDisposal: GPUBuffer[];
  ensureCommandEncoderReady(): void;
  endComputePassEncoder(): void;
  submitQueue(): void;
  getQueryTime(): Promise<number>;
}

function internals(backend: WebGPUBackend): BackendInternals {
  return backend as unknown as BackendInternals;
}

/** A new output tensor (engine-owned once returned from a kernel) with its GPU buffer allocated. */
export function createOutput(backend: WebGPUBackend, shape: number[], dtype: tf.DataType = 'float32'): tf.TensorInfo {
  const b = internals(backend);
  const info = b.makeTensorInfo(shape, dtype);
  if (tf.util.sizeFromShape(shape) > 0) b.uploadToGPU(info.dataId);
  return info;
}

/** The GPU buffer behind a tensor (uploading it first if its data is still on the CPU). */
export function gpuBufferOf(backend: WebGPUBackend, tensor: tf.TensorInfo): GPUBuffer {
  const b = internals(backend);
  b.uploadToGPU(tensor.dataId);
  const resource = b.tensorMap.get(tensor.dataId).resource;
  if (!(resource instanceof GPUBuffer)) throw new Error('attention kernels need tensors stored in GPU buffers');
  return resource;
}

/**
 * The values of a tensor whose data is still on the CPU (made from numbers, never uploaded), else null. Reading them
 * costs nothing: no upload, no readback.
 */
export function cpuResidentValues(backend: WebGPUBackend, tensor: tf.TensorInfo): ArrayLike<number> | null {
  const data = internals(backend).tensorMap.get(tensor.dataId);
  return data.resource == null && data.values != null ? data.values as ArrayLike<number> : null;
}

function isRange(b: Binding): b is BufferRange {
  return (b as BufferRange).tensor !== undefined;
}

function bindingTensor(b: Binding): tf.TensorInfo {
  return isRange(b) ? b.tensor : b;
}

/** The WGSL declarations the runner puts before program.getUserCode(). */
export function makeBindingHeader(program: MultiOutputProgram): string {
  const lines: string[] = [
    ...(program.diagnostics ?? []).map((d) => `diagnostic(${d});`),
    ...(program.enables ?? []).map((e) => `enable ${e};`),
  ];
  let binding = 0;
  program.outputNames.forEach((name, i) => {
    lines.push(`@group(0) @binding(${binding++}) var<storage, read_write> ${name}: array<${program.outputTypes[i]}>;`);
  });
  program.variableNames.forEach((name, i) => {
    lines.push(`@group(0) @binding(${binding++}) var<storage, read> ${name}: array<${program.variableTypes[i]}>;`);
  });
  const fields = program.uniformFields.length > 0 ? program.uniformFields : [['unused', 'i32']];
  lines.push(`struct Uniforms { ${fields.map(([n, t]) => `${n}: ${t}`).join(', ')} };`);
  lines.push(`@group(0) @binding(${binding}) var<uniform> uniforms: Uniforms;`);
  return lines.join('\n') + '\n';
}

/**
 * What runProgram needs of a program on one backend, found once: its pipeline (in tfjs's pipeline cache, under
 * `key`), that pipeline's bind group layout, and a scratch buffer for its uniform values.
 */
interface ProgramState {
  pipelineCache: object;
  shaderKey: string;
  key: string;
  pipeline: GPUComputePipeline;
  layout: GPUBindGroupLayout;
  uniformBytes: number;
  uniforms: {i32: Int32Array; u32: Uint32Array; f32: Float32Array};
}

const programStates = new WeakMap<MultiOutputProgram, ProgramState>();

function getProgramState(backend: WebGPUBackend, program: MultiOutputProgram): ProgramState {
  const b = internals(backend);
  const state = programStates.get(program);
  // Valid while tfjs's cache still holds that pipeline (a new backend has a new cache) and the program's key is the
  // same (programs are not changed once made; checked anyway, the same string object compares at once).
  if (state !== undefined && state.pipelineCache === b.pipelineCache && b.pipelineCache[state.key] === state.pipeline &&
      state.shaderKey === program.shaderKey) {
    return state;
  }
  const key = PIPELINE_KEY_PREFIX + program.shaderKey;
  const {pipeline, layout} = getPipeline(backend, program, key);
  // The uniform struct: scalar fields at 4-byte offsets (as tfjs's makeUniforms lays them out); one unused i32 when
  // the program has none.
  const buffer = new ArrayBuffer(4 * Math.max(1, program.uniformFields.length));
  const fresh: ProgramState = {
    pipelineCache: b.pipelineCache, shaderKey: program.shaderKey, key, pipeline, layout, uniformBytes: buffer.byteLength,
    uniforms: {i32: new Int32Array(buffer), u32: new Uint32Array(buffer), f32: new Float32Array(buffer)},
  };
  programStates.set(program, fresh);
  return fresh;
}

// Prefixed so that tfjs's own keys (made from program class names and shapes) can never collide with ours.
const PIPELINE_KEY_PREFIX = 'tfjs-attention:';

function getPipeline(backend: WebGPUBackend, program: MultiOutputProgram, key: string):
    {pipeline: GPUComputePipeline; layout: GPUBindGroupLayout} {
  const b = internals(backend);
  const cached = b.pipelineCache[key];
  if (cached != null && !(cached instanceof Promise)) return {pipeline: cached, layout: cached.getBindGroupLayout(0)};
  const device = b.device;
  // An explicit layout: with layout 'auto' a binding the code happens not to read (say keyLengths without padding)
  // would vanish from the layout and the bind group would fail validation.
  const entries: GPUBindGroupLayoutEntry[] = [];
  let binding = 0;
  for (let i = 0; i < program.outputNames.length; i++) {
    entries.push({binding: binding++, visibility: GPUShaderStage.COMPUTE, buffer: {type: 'storage'}});
  }
  for (let i = 0; i < program.variableNames.length; i++) {
    entries.push({binding: binding++, visibility: GPUShaderStage.COMPUTE, buffer: {type: 'read-only-storage'}});
  }
  entries.push({binding, visibility: GPUShaderStage.COMPUTE, buffer: {type: 'uniform'}});
  const bindGroupLayout = device.createBindGroupLayout({entries});
  const code = makeBindingHeader(program) + program.getUserCode();
  const module = device.createShaderModule({code, label: program.shaderKey});
  const pipeline = device.createComputePipeline({
    layout: device.createPipelineLayout({bindGroupLayouts: [bindGroupLayout]}),
    compute: {module, entryPoint: 'main'},
    label: program.shaderKey,
  });
  b.pipelineCache[key] = pipeline;
  return {pipeline, layout: bindGroupLayout};
}

/** The source a program compiles to (for tests and debugging). */
export function programSource(program: MultiOutputProgram): string {
  return makeBindingHeader(program) + program.getUserCode();
}

/** Records one dispatch of `program` into the backend's current compute pass, like recordAndSubmit. */
export function runProgram(backend: WebGPUBackend, program: MultiOutputProgram, run: ProgramRun): void {
  const b = internals(backend);
  if (run.uniforms.length !== program.uniformFields.length) {
    throw new Error(`${program.shaderKey}: ${run.uniforms.length} uniform values for ${
        program.uniformFields.length} fields`);
  }
  if (run.outputs.length !== program.outputNames.length || run.inputs.length !== program.variableNames.length) {
    throw new Error(`${program.shaderKey}: binding count mismatch`);
  }
  const limit = getLimits(backend).maxComputeWorkgroupsPerDimension;
  if (run.dispatch.some((d) => d > limit || d < 0 || !Number.isInteger(d))) {
    throw new Error(`${program.shaderKey}: dispatch ${run.dispatch} exceeds maxComputeWorkgroupsPerDimension ${limit}`);
  }
  if (run.dispatch.some((d) => d === 0)) return;
  const state = getProgramState(backend, program);

  // The uniform buffer, as tfjs's makeUniforms makes it (a pooled buffer written now, released after the submit),
  // from the program's scratch values (writeBuffer copies them at once).
  const {i32, u32, f32} = state.uniforms;
  const fields = program.uniformFields;
  if (fields.length === 0) i32[0] = 0;
  for (let i = 0; i < fields.length; i++) {
    const type = fields[i][1];
    if (type === 'f32') f32[i] = run.uniforms[i];
    else if (type === 'u32') u32[i] = run.uniforms[i];
    else i32[i] = run.uniforms[i];
  }
  const uniformBuffer = b.bufferManager.acquireBuffer(state.uniformBytes, GPUBufferUsage.COPY_DST | GPUBufferUsage.UNIFORM);
  b.queue.writeBuffer(uniformBuffer, 0, i32.buffer, 0, state.uniformBytes);
  b.uniformPendingDisposal.push(uniformBuffer);

  const entries: GPUBindGroupEntry[] = [];
  const bind = (binding: Binding) => {
    const tensor = bindingTensor(binding);
    b.commandQueueOwnedIds.add(tensor.dataId);
    const buffer = gpuBufferOf(backend, tensor);
    entries.push({
      binding: entries.length,
      resource: isRange(binding) ? {buffer, offset: binding.byteOffset, size: binding.byteSize} : {buffer},
    });
  };
  for (const output of run.outputs) bind(output);
  for (const input of run.inputs) bind(input);
  entries.push({binding: entries.length, resource: {buffer: uniformBuffer, offset: 0, size: state.uniformBytes}});
  const bindGroup = b.device.createBindGroup({layout: state.layout, entries});
  const pipeline = state.pipeline;

  const shouldTimeProgram = b.activeTimers != null;
  b.ensureCommandEncoderReady();
  if (shouldTimeProgram && b.supportTimestampQuery) {
    b.endComputePassEncoder();
    if (b.querySet == null) b.querySet = b.device.createQuerySet({type: 'timestamp', count: b.querySetCount});
    b.computePassEncoder = b.commandEncoder!.beginComputePass({
      timestampWrites: {querySet: b.querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1},
    });
  } else if (b.computePassEncoder == null) {
    b.computePassEncoder = b.commandEncoder!.beginComputePass({});
  }
  b.computePassEncoder!.setPipeline(pipeline);
  b.computePassEncoder!.setBindGroup(0, bindGroup);
  b.computePassEncoder!.dispatchWorkgroups(run.dispatch[0], run.dispatch[1], run.dispatch[2]);
  b.dispatchCountInPass++;
  if (shouldTimeProgram || (tf.env().get('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE') as number) <= b.dispatchCountInPass) {
    b.endComputePassEncoder();
    if (shouldTimeProgram) {
      b.activeTimers!.push({name: program.shaderKey.split(':')[0], query: b.getQueryTime()});
    } else {
      b.submitQueue();
    }
  }
}

/**
 * Binds `count` elements of `tensor` from element `start` (4-byte elements): the offset is aligned down to
 * minStorageBufferOffsetAlignment and the remainder returned as `base`, the index of element `start` inside the
 * binding. Throws when the range cannot fit one binding.
 */
export function bindElements(
    backend: WebGPUBackend, tensor: tf.TensorInfo, start: number, count: number, what: string):
    {binding: Binding; base: number} {
  const limits = getLimits(backend);
  const total = tf.util.sizeFromShape(tensor.shape);
  const align = limits.minStorageBufferOffsetAlignment;
  const byteStart = Math.floor((start * 4) / align) * align;
  const byteEnd = Math.max((start + Math.max(count, 1)) * 4, byteStart + 4);
  const byteSize = Math.min(byteEnd, Math.max(total, 1) * 4) - byteStart;
  if (byteSize > limits.maxStorageBufferBindingSize) {
    throw new Error(`${what}: ${byteSize} bytes in one binding exceed maxStorageBufferBindingSize ${
        limits.maxStorageBufferBindingSize}`);
  }
  if (byteStart === 0 && byteSize === total * 4) return {binding: tensor, base: 0};
  return {binding: {tensor, byteOffset: byteStart, byteSize}, base: start - byteStart / 4};
}
