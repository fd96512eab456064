/**
 * ONNX Runtime Web's decode attention on WebGPU (dev-only comparison): a one-node com.microsoft GroupQueryAttention
 * model (onnx_proto.ts) over a KV cache resident on ORT's device, the way a generation loop runs it — the cache is
 * both past_key/past_value and present_key/present_value (the same GPU buffers, so ORT writes the new tokens in place
 * instead of copying the cache), the new tokens' K/V are the cache's last rows (the rewrite leaves it unchanged, so
 * calls can repeat), seqlens_k = total − 1, total_sequence_length = seqK. Same attention as this library's
 * flashAttention(q, k, v, {causal: true}) with k/v the whole cache.
 */
import type {AttentionShapes} from '../../src/plan/plan.js';
import {groupQueryAttentionModel} from './onnx_proto.js';
import {createWebGpuSession, OrtModule, OrtSession, OrtTensor, uploadToGpu} from './ort_webgpu.js';

/** The decode call's sizes, as this library's plans name them. */
export type GqaShape = AttentionShapes;

/** [B, S, H, D] → [B, H, S, D] (ORT's cache layout is BNSH, this library's BSNH). */
export function toHeadMajor(x: Float32Array, b: number, s: number, h: number, d: number): Float32Array {
  const out = new Float32Array(x.length);
  for (let bi = 0; bi < b; bi++) {
    for (let si = 0; si < s; si++) {
      for (let hi = 0; hi < h; hi++) {
        const from = ((bi * s + si) * h + hi) * d, to = ((bi * h + hi) * s + si) * d;
        out.set(x.subarray(from, from + d), to);
      }
    }
  }
  return out;
}

/** The last `n` of `s` rows of each batch of a [B, S, H, D] array: [B, n, H·D]. */
function lastRows(x: Float32Array, b: number, s: number, n: number, rowLength: number): Float32Array {
  const out = new Float32Array(b * n * rowLength);
  for (let bi = 0; bi < b; bi++) {
    out.set(x.subarray((bi * s + s - n) * rowLength, (bi * s + s) * rowLength), bi * n * rowLength);
  }
  return out;
}

export class OrtGroupQueryAttention {
  private constructor(private readonly session: OrtSession, private readonly buffers: GPUBuffer[],
                      private readonly feeds: Record<string, OrtTensor>,
                      private readonly fetches: Record<string, OrtTensor | null>, readonly device: GPUDevice) {}

  /** q [B, Sq, H, D], k/v [B, Sk, Hkv, D] float32 data (this library's layout). */
  static async create(ort: OrtModule, s: GqaShape, q: Float32Array, k: Float32Array, v: Float32Array):
      Promise<OrtGroupQueryAttention> {
    const {session, device} = await createWebGpuSession(ort, groupQueryAttentionModel({
      batch: s.batch, seqQ: s.seqQ, capacity: s.seqK, heads: s.heads, kvHeads: s.kvHeads, headDim: s.headDim,
      scale: 1 / Math.sqrt(s.headDim)}));
    const kvRow = s.kvHeads * s.headDim;
    const buffers: GPUBuffer[] = [];
    const onGpu = (data: Float32Array, dims: number[]) => {
      const buffer = uploadToGpu(device, data);
      buffers.push(buffer);
      return ort.Tensor.fromGpuBuffer(buffer, {dataType: 'float32', dims});
    };
    const cacheDims = [s.batch, s.kvHeads, s.seqK, s.headDim];
    const pastKey = onGpu(toHeadMajor(k, s.batch, s.seqK, s.kvHeads, s.headDim), cacheDims);
    const pastValue = onGpu(toHeadMajor(v, s.batch, s.seqK, s.kvHeads, s.headDim), cacheDims);
    const feeds: Record<string, OrtTensor> = {
      query: onGpu(q, [s.batch, s.seqQ, s.heads * s.headDim]),
      key: onGpu(lastRows(k, s.batch, s.seqK, s.seqQ, kvRow), [s.batch, s.seqQ, kvRow]),
      value: onGpu(lastRows(v, s.batch, s.seqK, s.seqQ, kvRow), [s.batch, s.seqQ, kvRow]),
      past_key: pastKey,
      past_value: pastValue,
      // CPU tensors: total_sequence_length is a CPU input of the op; seqlens_k is uploaded by ORT per call, as a
      // generation loop does.
      seqlens_k: new ort.Tensor('int32', new Int32Array(s.batch).fill(s.seqK - 1), [s.batch]),
      total_sequence_length: new ort.Tensor('int32', Int32Array.of(s.seqK), []),
    };
    const fetches = {output: null, present_key: pastKey, present_value: pastValue};
    return new OrtGroupQueryAttention(session, buffers, feeds, fetches, device);
  }

  /** Starts one inference; the output [B, Sq, H·D] stays on the GPU. */
  async call(): Promise<OrtTensor> {
    return (await this.session.run(this.feeds, this.fetches)).output;
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
