/**
 * Shared by the webgpu-decode bench section and bench/device/decode_sweep.ts (no ORT import here, so the device
 * script bundles without onnxruntime-web): naive GQA attention in tfjs ops, its causal mask, and the device's copy
 * bandwidth.
 */
import * as tf from '@tensorflow/tfjs-core';
import {additiveMask} from '../../../src/layers/naive_attention.js';
import {makePlan} from '../../../src/plan/plan.js';

export interface HeadConfig {heads: number; kvHeads: number; headDim: number}

/** Naive GQA attention: the g query heads of a kv head become g·seqQ rows of one matMul against that kv head (no
 *  K/V repetition); `mask` [seqQ·g, seqK] additive (rows in (query row, head in group) order), null when every key
 *  is visible (seqQ 1). */
export function naive(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, mask: tf.Tensor2D | null): tf.Tensor4D {
  return tf.tidy(() => {
    const [b, sq, h, d] = q.shape;
    const kvh = k.shape[2], g = h / kvh;
    const qh = tf.reshape(tf.transpose(tf.reshape(q, [b, sq, kvh, g, d]), [0, 2, 1, 3, 4]), [b, kvh, sq * g, d]);
    const kh = tf.transpose(k, [0, 2, 1, 3]), vh = tf.transpose(v, [0, 2, 1, 3]);
    const scaled = tf.mul(tf.matMul(qh, kh, false, true), 1 / Math.sqrt(d));
    const s = mask == null ? scaled : tf.add(scaled, mask);
    const o = tf.reshape(tf.matMul(tf.softmax(s), vh), [b, kvh, sq, g, d]);
    return tf.reshape(tf.transpose(o, [0, 2, 1, 3, 4]), [b, sq, h, d]) as tf.Tensor4D;
  });
}

/** The causal mask of naive's rows: the plan's [seqQ, seqK] mask, each row repeated for the g heads of a group. */
export function naiveCausalMask(c: HeadConfig, seqQ: number, seqK: number): tf.Tensor2D | null {
  if (seqQ === 1) return null;
  const plan = makePlan({kind: 'flash', batch: 1, seqQ, seqK, ...c, scale: 1 / Math.sqrt(c.headDim), softcap: 0,
                         windowLeft: -1, windowRight: 0, layout: null, hasKeyLengths: false});
  const g = c.heads / c.kvHeads;
  return tf.tidy(() => tf.reshape(tf.tile(tf.expandDims(additiveMask(plan), 1), [1, g, 1]), [seqQ * g, seqK]) as tf.Tensor2D);
}

/** The device's copy bandwidth (GB/s): a large buffer-to-buffer copy, read + write counted once each way. */
export async function copyBandwidth(device: GPUDevice, bytes: number): Promise<number> {
  const src = device.createBuffer({size: bytes, usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.STORAGE});
  const dst = device.createBuffer({size: bytes, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.STORAGE});
  const ms = await medianMsPerRepetition((n, enc) => {
    for (let i = 0; i < n; i++) enc.copyBufferToBuffer(src, 0, dst, 0, bytes);
  }, device);
  src.destroy();
  dst.destroy();
  // A copy reads and writes `bytes`: 2·bytes of traffic, as attention's K/V reads are counted one way.
  return 2 * bytes / (ms * 1e-3) / 1e9;
}

/**
 * Median ms of one repetition of what `record(n, encoder)` records n times: one warm-up submit of 2, then 5 submits
 * of 10, each waited for (the bandwidth references of the decode benchmarks).
 */
export async function medianMsPerRepetition(
    record: (n: number, encoder: GPUCommandEncoder) => void, device: GPUDevice): Promise<number> {
  const submit = async (n: number) => {
    const t0 = performance.now();
    const enc = device.createCommandEncoder();
    record(n, enc);
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
    return performance.now() - t0;
  };
  await submit(2);
  const times: number[] = [];
  for (let r = 0; r < 5; r++) times.push(await submit(10) / 10);
  times.sort((a, b) => a - b);
  return times[2];
}
