/**
 * ONNX Runtime Web's WebGPU execution provider in node (dev-only comparison; onnxruntime-web is a devDependency):
 * a one-node com.microsoft MultiHeadAttention model (onnx_proto.ts), inputs resident on the GPU, output left on
 * the GPU, timed like the suite's tfjs runs (timing.ts).
 *
 * What it takes in node (found the hard way):
 *   - `import 'onnxruntime-web'` resolves to a CPU-only node build; dist/ort.webgpu.min.mjs has the WebGPU EP.
 *   - navigator.gpu and the `webgpu` package's globals (GPUDevice, GPUBufferUsage...) must exist before the import
 *     (test/webgpu_env.ts's setupWebGPU() installs them).
 *   - ort.env.wasm.numThreads = 1 (no worker threads for the wasm part in node).
 *   - Dawn's queue.writeBuffer in node rejects views of a SharedArrayBuffer (ORT's wasm memory): writeBuffer is
 *     wrapped to copy such data into a plain ArrayBuffer first.
 */
import {createRequire} from 'node:module';
import * as path from 'node:path';
import {pathToFileURL} from 'node:url';
import {multiHeadAttentionModel} from './onnx_proto.js';

/** The part of onnxruntime-web's API used here (typed locally so the type-check needs no onnxruntime-web). */
export interface OrtTensor {
  dims: readonly number[];
  getData(releaseData?: boolean): Promise<Float32Array>;
  dispose(): void;
}
export interface OrtSession {
  /** fetches: output name → a preallocated tensor to write into, or null (ORT allocates; on the GPU here). */
  run(feeds: Record<string, OrtTensor>, fetches?: Record<string, OrtTensor | null>):
      Promise<Record<string, OrtTensor>>;
  release(): Promise<void>;
}
export interface OrtModule {
  env: {wasm: {numThreads: number}; webgpu: {device?: GPUDevice}; logLevel?: string; versions?: Record<string, string>};
  InferenceSession: {create(model: Uint8Array, options: Record<string, unknown>): Promise<OrtSession>};
  Tensor: {
    new(type: 'int32', data: Int32Array, dims: readonly number[]): OrtTensor;
    fromGpuBuffer(buffer: GPUBuffer, options: {dataType: string; dims: readonly number[]}): OrtTensor;
  };
}

let ortPromise: Promise<OrtModule> | null = null;

/** Where onnxruntime-web's WebGPU build is, or an Error saying it is not installed. */
function ortWebGpuEntry(): string {
  const require = createRequire(import.meta.url);
  let main: string;
  try {
    main = require.resolve('onnxruntime-web');  // dist/ort.node.min.js (package.json is not exported)
  } catch {
    throw new Error('onnxruntime-web is not installed (npm install --save-dev onnxruntime-web@1.30.0)');
  }
  return path.join(path.dirname(main), 'ort.webgpu.min.mjs');
}

/** Copies SharedArrayBuffer-backed data before Dawn's writeBuffer sees it (idempotent). */
function patchWriteBuffer(): void {
  const Queue = (globalThis as {GPUQueue?: {prototype: GPUQueue}}).GPUQueue;
  if (Queue == null) throw new Error('GPUQueue is not defined: set up WebGPU (navigator.gpu) before loading ORT');
  const proto = Queue.prototype as GPUQueue & {__sabSafe?: boolean};
  if (proto.__sabSafe) return;
  const original = proto.writeBuffer;
  proto.writeBuffer = function(this: GPUQueue, buffer: GPUBuffer, offset: number, data: BufferSource | SharedArrayBuffer,
                                dataOffset?: number, size?: number) {
    const backing = ArrayBuffer.isView(data) ? data.buffer : data;
    if (typeof SharedArrayBuffer !== 'undefined' && backing instanceof SharedArrayBuffer) {
      const view = ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) :
                                              new Uint8Array(data as SharedArrayBuffer);
      const elementSize = ArrayBuffer.isView(data) && 'BYTES_PER_ELEMENT' in data ?
          (data as unknown as {BYTES_PER_ELEMENT: number}).BYTES_PER_ELEMENT : 1;
      const copy = view.slice();  // a plain ArrayBuffer; dataOffset/size keep their element units
      const typed = elementSize === 1 ? copy : new (data.constructor as Float32ArrayConstructor)(copy.buffer);
      return original.call(this, buffer, offset, typed, dataOffset, size);
    }
    return original.call(this, buffer, offset, data as BufferSource, dataOffset, size);
  } as GPUQueue['writeBuffer'];
  proto.__sabSafe = true;
}

/** Loads ORT's WebGPU build once. navigator.gpu must already be installed. */
export function loadOrtWebGPU(): Promise<OrtModule> {
  ortPromise ??= (async () => {
    if (typeof navigator === 'undefined' || !(navigator as {gpu?: unknown}).gpu) {
      throw new Error('navigator.gpu is missing: call setupWebGPU() (test/webgpu_env.ts) first');
    }
    patchWriteBuffer();
    const ort = await import(pathToFileURL(ortWebGpuEntry()).href) as OrtModule;
    ort.env.wasm.numThreads = 1;
    ort.env.logLevel = 'error';
    return ort;
  })();
  return ortPromise;
}

/**
 * A session on ORT's WebGPU execution provider with outputs left on the GPU. ORT requests its own device from the
 * same adapter (navigator.gpu) — with the features it wants, e.g. subgroups, which its flash-attention programs
 * require and tfjs's device does not request — and exposes it as env.webgpu.device once the first session exists.
 */
export async function createWebGpuSession(ort: OrtModule, model: Uint8Array):
    Promise<{session: OrtSession; device: GPUDevice}> {
  const session = await ort.InferenceSession.create(model, {
    executionProviders: ['webgpu'], preferredOutputLocation: 'gpu-buffer', graphOptimizationLevel: 'all',
  });
  const device = ort.env.webgpu.device;
  if (device == null) {
    await session.release();
    throw new Error('ORT did not expose its WebGPU device (env.webgpu.device)');
  }
  return {session, device};
}

/** A storage buffer on `device` holding `data` (size rounded up to 16 bytes). */
export function uploadToGpu(device: GPUDevice, data: Float32Array | Int32Array): GPUBuffer {
  const buffer = device.createBuffer({
    size: Math.ceil(data.byteLength / 16) * 16,
    usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST,
  });
  device.queue.writeBuffer(buffer, 0, data as Float32Array<ArrayBuffer>);
  return buffer;
}

export interface MhaShape {
  batch: number;
  seq: number;
  heads: number;
  headDim: number;
}

/** A MultiHeadAttention session with its inputs uploaded to the GPU. */
export class OrtMultiHeadAttention {
  private constructor(private readonly session: OrtSession, private readonly buffers: GPUBuffer[],
                      private readonly feeds: Record<string, OrtTensor>, readonly device: GPUDevice) {}

  /** q, k, v: [B, S, H, D] float32 data (this library's layout). */
  static async create(ort: OrtModule, s: MhaShape, q: Float32Array, k: Float32Array, v: Float32Array):
      Promise<OrtMultiHeadAttention> {
    const {session, device} = await createWebGpuSession(ort, multiHeadAttentionModel({
      batch: s.batch, seqQ: s.seq, seqK: s.seq, heads: s.heads, headDim: s.headDim}));
    const dims = [s.batch, s.seq, s.heads * s.headDim];
    const buffers: GPUBuffer[] = [];
    const feeds: Record<string, OrtTensor> = {};
    for (const [name, data] of [['query', q], ['key', k], ['value', v]] as const) {
      const buffer = uploadToGpu(device, data);
      buffers.push(buffer);
      feeds[name] = ort.Tensor.fromGpuBuffer(buffer, {dataType: 'float32', dims});
    }
    return new OrtMultiHeadAttention(session, buffers, feeds, device);
  }

  /** Starts one inference; the output stays on the GPU. */
  async call(): Promise<OrtTensor> {
    return (await this.session.run(this.feeds)).output;
  }

  /** Waits for everything submitted to ORT's device. */
  async sync(): Promise<void> {
    await this.device.queue.onSubmittedWorkDone();
  }

  async release(): Promise<void> {
    await this.session.release();
    for (const b of this.buffers) b.destroy();
  }
}
