/**
 * Section `webgpu-decode` of bench/suite.ts (issue 18): one or a few query rows against a long KV cache, GQA 32 query heads over 8 kv heads,
 * headDim 128, fp32, webgpu. Ours on the split-K decode path vs ours forced onto the tiled kernel vs tfjs naive
 * (K/V heads repeated, matMul → softmax → matMul), one process, one device. K/V GB/s = bytes of K and V (read once
 * per kv head) / time.
 *
 *   npx tsx bench/suite.ts --section webgpu-decode [--quick] [--out DIR]
 */
// tfjs's op gradients and the cpu backend, as @tensorflow/tfjs users have them (see webgpu_kernel.ts).
import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import {mkdirSync, writeFileSync} from 'node:fs';
import * as lib from '../../../src/index.js';
import '../../../kernels/webgpu/register_all_webgpu_kernels.js';
import {setDecodePathForTests} from '../../../kernels/webgpu/attention_decode.js';
import {setupWebGPU} from '../../../test/webgpu_env.js';
import {timeOnQueue} from '../webgpu_timing.js';

const HEADS = 32, KV_HEADS = 8, D = 128;

interface Row {name: string; seqQ: number; seqK: number; ms: number; kvGBps: number; maxRelErr?: number; note?: string}
const rows: Row[] = [];

/** Naive GQA attention without a mask (seqQ = 1: causal sees every key): the g query heads of a kv head become
 *  g·seqQ rows of one matMul against that kv head (no K/V repetition). */
function naive(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D): tf.Tensor4D {
  return tf.tidy(() => {
    const [b, sq] = q.shape;
    const g = HEADS / KV_HEADS;
    const qh = tf.reshape(tf.transpose(tf.reshape(q, [b, sq, KV_HEADS, g, D]), [0, 2, 1, 3, 4]), [b, KV_HEADS, sq * g, D]);
    const kh = tf.transpose(k, [0, 2, 1, 3]), vh = tf.transpose(v, [0, 2, 1, 3]);
    const s = tf.mul(tf.matMul(qh, kh, false, true), 1 / Math.sqrt(D));
    const o = tf.reshape(tf.matMul(tf.softmax(s), vh), [b, KV_HEADS, sq, g, D]);
    return tf.reshape(tf.transpose(o, [0, 2, 1, 3, 4]), [b, sq, HEADS, D]) as tf.Tensor4D;
  });
}

/** The device's copy bandwidth (GB/s): a large buffer-to-buffer copy, read + write counted once each way. */
async function copyBandwidth(device: GPUDevice, bytes: number): Promise<number> {
  const src = device.createBuffer({size: bytes, usage: GPUBufferUsage.COPY_SRC | GPUBufferUsage.STORAGE});
  const dst = device.createBuffer({size: bytes, usage: GPUBufferUsage.COPY_DST | GPUBufferUsage.STORAGE});
  const copy = async (n: number) => {
    const t0 = performance.now();
    const enc = device.createCommandEncoder();
    for (let i = 0; i < n; i++) enc.copyBufferToBuffer(src, 0, dst, 0, bytes);
    device.queue.submit([enc.finish()]);
    await device.queue.onSubmittedWorkDone();
    return performance.now() - t0;
  };
  await copy(2);
  const times: number[] = [];
  for (let r = 0; r < 5; r++) times.push(await copy(10) / 10);
  times.sort((a, b) => a - b);
  src.destroy();
  dst.destroy();
  // A copy reads and writes `bytes`: 2·bytes of traffic, as attention's K/V reads are counted one way.
  return 2 * bytes / (times[2] * 1e-3) / 1e9;
}

async function maxRelErr(a: tf.Tensor, b: tf.Tensor): Promise<number> {
  const [diff, ref] = await Promise.all([tf.max(tf.abs(tf.sub(a, b))).data(), tf.max(tf.abs(b)).data()]);
  return diff[0] / Math.max(ref[0], 1e-3);
}

function record(r: Row) {
  rows.push(r);
  console.log(`${r.name.padEnd(44)} Sq=${String(r.seqQ).padStart(2)} Sk=${String(r.seqK).padStart(6)} ${
      r.ms.toFixed(3).padStart(8)} ms ${r.kvGBps.toFixed(0).padStart(6)} GB/s K/V${
      r.maxRelErr != null ? `  err ${r.maxRelErr.toExponential(1)}` : ''}${r.note ? `  ${r.note}` : ''}`);
}

export async function main(argv: string[]): Promise<Row[]> {
  const QUICK = argv.includes('--quick');
  const outIndex = argv.indexOf('--out');
  const OUT_DIR = outIndex >= 0 ? argv[outIndex + 1] : process.env.OUT ?? null;
  const env = await setupWebGPU();
  if (env == null) throw new Error('no WebGPU');
  console.log(`adapter: ${env.adapterDescription}`);
  const copyGBps = await copyBandwidth(env.device, QUICK ? 64 << 20 : 1 << 30);
  console.log(`device copy bandwidth (buffer to buffer, read + write): ${copyGBps.toFixed(0)} GB/s`);
  const seqKs = QUICK ? [512] : [4096, 32768];
  for (const seqK of seqKs) {
    for (const seqQ of [1, 16]) {
      const q = tf.randomUniform([1, seqQ, HEADS, D], -1, 1) as tf.Tensor4D;
      const k = tf.randomUniform([1, seqK, KV_HEADS, D], -1, 1) as tf.Tensor4D;
      const v = tf.randomUniform([1, seqK, KV_HEADS, D], -1, 1) as tf.Tensor4D;
      const kvBytes = 2 * seqK * KV_HEADS * D * 4;
      const gbps = (ms: number) => kvBytes / (ms * 1e-3) / 1e9;
      const ours = () => [lib.flashAttention(q, k, v, {causal: true})];
      const reference = seqQ === 1 ? naive(q, k, v) : null;
      for (const mode of ['decode', 'tiled'] as const) {
        setDecodePathForTests(mode === 'decode' ? null : 'never');
        const out = lib.flashAttention(q, k, v, {causal: true});
        const err = reference ? await maxRelErr(out, reference) : undefined;
        out.dispose();
        const ms = await timeOnQueue(ours);
        record({name: `ours ${mode === 'decode' ? 'split-K decode' : 'tiled kernel'}`, seqQ, seqK, ms,
                kvGBps: gbps(ms), maxRelErr: err});
      }
      setDecodePathForTests(null);
      if (seqQ === 1) {
        const ms = await timeOnQueue(() => [naive(q, k, v)]);
        record({name: 'naive (GQA as matMul rows)', seqQ, seqK, ms, kvGBps: gbps(ms)});
      }
      // A preallocated cache: capacity seqK, `len` valid keys, the new query row at position len - 1.
      const len = Math.floor(seqK * 0.6);
      try {
        const opts = {causal: true, keyLengths: [len], queryOffsets: [len - seqQ]};
        const ms = await timeOnQueue(() => [lib.flashAttention(q, k, v, opts)]);
        record({name: `ours decode, cache ${len}/${seqK} (queryOffsets)`, seqQ, seqK, ms,
                kvGBps: gbps(ms) * len / seqK});
      } catch (e) {
        console.log(`cache row skipped: ${(e as Error).message}`);
      }
      reference?.dispose();
      tf.dispose([q, k, v]);
    }
  }
  if (OUT_DIR != null) {
    mkdirSync(OUT_DIR, {recursive: true});
    writeFileSync(`${OUT_DIR}/webgpu-decode.json`, JSON.stringify({adapter: env.adapterDescription, copyGBps, rows}, null, 1));
  }
  return rows;
}
