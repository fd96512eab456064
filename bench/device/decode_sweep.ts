/**
 * The decode path's variants (issue 18) on one device, in one run: for each shape, ours in every variant
 * (kernels/webgpu/attention_decode.ts setDecodeVariantForTests) vs naive tfjs ops (the webgpu-decode section's), the
 * preallocated-cache case with keyLengths as a number[] (uploaded per call) and as a GPU int32 tensor, next to the
 * device's copy bandwidth (copyBufferToBuffer, read + write) and read bandwidth (a vec4 sum over a large buffer).
 *
 * Per row: ms per call (median of 5 batches of calls back to back, one queue sync each, after warm-up), K/V GB/s
 * (bytes of K and V / ms), % of copy and of read bandwidth, × naive (naive ms / ours), the CPU µs per call (the time
 * to record the calls alone, no sync: if it is close to ms, the call is CPU-bound), err (max |ours − naive| / max
 * |naive|).
 *
 * Variants (DecodeVariant): base = the first session's kernel (P·V on row-owning threads, 256-key blocks); new = the
 * default now (P·V on every thread, ≤ 4 rows per thread, the rest on key parts; the block chosen to fill the GPU);
 * rows1 = new with every row in every thread's registers; rows32 = new with up to 32 rows per workgroup (seqQ 16);
 * b256 / b128 / b64 = new with a fixed block.
 * The split score layout (decode-d128 branch; DecodeConfig.scoreLanes): split = new with up to 8 threads per key
 * (coalesced K rows, partial dots added through the subgroup where the device has `subgroups`) and P·V loading 4 V
 * rows ahead; splitwg = split adding through workgroup memory (the path of a device without subgroups); split4 /
 * split2 = 4 / 2 lanes; splitpv1 = split without the P·V loads ahead; pv4 = new with only the P·V loads ahead;
 * splitT512 / splitT2k = split aiming at 512 / 2048 workgroups instead of 1024 (more / fewer blocks per workgroup);
 * splitb128 = split with 128-key blocks. cache[] =
 * keyLengths as number[] (read from the uniforms now), cache[]up = the same uploaded per call (as before), cacheT = an
 * int32 tensor already on the GPU (a generation loop's positions).
 *
 *   npm run bench:decode-bundle && node .bench-dist/decode_sweep.mjs [--quick] [--variants base,new] [--seqk 1024,8192]
 * Old vs the split layout in one call (seqQ 1, the issue's 8k–131k keys, both head configurations):
 *   node .bench-dist/decode_sweep.mjs --seqq 1 --seqk 8192,32768,131072 \
 *       --variants new,split,splitwg,split4,splitpv1,pv4,splitT512,splitT2k,splitb128
 * (the bundle needs only the `webgpu` package beside it). --quick: small shapes (a software GPU check).
 */
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import * as lib from '../../src/index.js';
import {DecodeVariant, decodeRunsForTests, setDecodeVariantForTests} from '../../kernels/webgpu/attention_decode.js';
import {copyBandwidth, HeadConfig, medianMsPerRepetition, naive, naiveCausalMask} from '../suite/sections/webgpu_decode_naive.js';
import {syncQueue, timeOnQueue} from '../suite/webgpu_timing.js';
import {adapterName, dawnAdapter} from './dawn_device.js';


const VARIANTS: Record<string, DecodeVariant> = {
  base: {pvRowParts: 'rows', block: 256},
  new: {},
  rows1: {pvRowParts: 1},
  rows32: {maxRows: 32},
  b256: {block: 256},
  b128: {block: 128},
  b64: {block: 64},
  split: {scoreLanes: 'auto', pvUnroll: 4},
  splitwg: {scoreLanes: 'auto', scoreSubgroups: false, pvUnroll: 4},
  split4: {scoreLanes: 4, pvUnroll: 4},
  split2: {scoreLanes: 2, pvUnroll: 4},
  splitpv1: {scoreLanes: 'auto'},
  pv4: {pvUnroll: 4},
  splitT512: {scoreLanes: 'auto', pvUnroll: 4, targetWorkgroups: 512},
  splitT2k: {scoreLanes: 'auto', pvUnroll: 4, targetWorkgroups: 2048},
  splitb128: {scoreLanes: 'auto', pvUnroll: 4, block: 128},
};

const argv = process.argv.slice(2);
const arg = (name: string) => {
  const i = argv.indexOf(`--${name}`);
  return i < 0 ? undefined : argv[i + 1];
};
const quick = argv.includes('--quick');
const variantNames = (arg('variants') ?? Object.keys(VARIANTS).join(',')).split(',');
const unknownVariants = variantNames.filter((name) => !(name in VARIANTS));
if (unknownVariants.length > 0) {
  throw new Error(`--variants: unknown ${unknownVariants.join(', ')} (known: ${Object.keys(VARIANTS).join(', ')})`);
}
const seqKs = arg('seqk')?.split(',').map(Number) ?? (quick ? [300, 1024] : [1024, 8192, 32768, 131072]);
const seqQs = arg('seqq')?.split(',').map(Number) ?? [1, 16];
const heads: HeadConfig[] = quick ? [{heads: 8, kvHeads: 2, headDim: 64}] :
    [{heads: 32, kvHeads: 8, headDim: 128}, {heads: 16, kvHeads: 16, headDim: 64}];
const timing = quick ? {targetMs: 20, repeats: 3} : {targetMs: 60, repeats: 5};

/** Read bandwidth (GB/s): every thread sums a grid-strided run of vec4s of a large buffer (what decode does to K/V). */
async function readBandwidth(device: GPUDevice, bytes: number): Promise<number> {
  const n4 = bytes / 16;
  const threads = 132 * 2048;
  const src = device.createBuffer({size: bytes, usage: GPUBufferUsage.STORAGE});
  const dst = device.createBuffer({size: threads * 16, usage: GPUBufferUsage.STORAGE});
  const module = device.createShaderModule({code: `
    @group(0) @binding(0) var<storage, read> src: array<vec4<f32>>;
    @group(0) @binding(1) var<storage, read_write> dst: array<vec4<f32>>;
    @compute @workgroup_size(256) fn main(@builtin(global_invocation_id) id: vec3<u32>) {
      var s = vec4<f32>(0.0);
      for (var i = id.x; i < ${n4}u; i += ${threads}u) { s += src[i]; }
      dst[id.x] = s;
    }`});
  const pipeline = device.createComputePipeline({layout: 'auto', compute: {module, entryPoint: 'main'}});
  const bindGroup = device.createBindGroup({layout: pipeline.getBindGroupLayout(0), entries: [
    {binding: 0, resource: {buffer: src}}, {binding: 1, resource: {buffer: dst}}]});
  const ms = await medianMsPerRepetition((n, enc) => {
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, bindGroup);
    for (let i = 0; i < n; i++) pass.dispatchWorkgroups(threads / 256);
    pass.end();
  }, device);
  src.destroy();
  dst.destroy();
  return bytes / (ms * 1e-3) / 1e9;
}

/** CPU µs per call: recording `n` calls without waiting for the GPU (then one sync, not counted). */
async function cpuMicros(fn: () => tf.Tensor, n = 30): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) fn().dispose();
  const us = (performance.now() - t0) / n * 1000;
  await syncQueue();
  return us;
}

async function relErr(a: tf.Tensor, b: tf.Tensor): Promise<number> {
  const [diff, ref] = await Promise.all([tf.max(tf.abs(tf.sub(a, b))).data(), tf.max(tf.abs(b)).data()]);
  return diff[0] / Math.max(ref[0], 1e-3);
}

const gb = (x: number) => x.toFixed(x < 10 ? 2 : 0);

interface Row {shape: string; impl: string; ms: number; gbps: number; naiveMs: number | null; cpuUs: number | null;
              err: number | null; note?: string}

async function main(): Promise<number> {
  const {gpu, adapter} = await dawnAdapter();
  if (adapter == null) {
    console.log('no WebGPU adapter');
    return 1;
  }
  const deviceName = adapterName(adapter);
  console.log(`device: ${deviceName}`);
  await lib.setupWebGPU({gpu});
  const device = (tf.backend() as unknown as {device: GPUDevice}).device;
  const limits = device.limits;
  const bwBytes = Math.min(quick ? 64 << 20 : 1 << 30, limits.maxBufferSize, limits.maxStorageBufferBindingSize);
  const copyGBps = await copyBandwidth(device, bwBytes);
  const readGBps = await readBandwidth(device, Math.floor(bwBytes / 16) * 16);
  console.log(`copy bandwidth (copyBufferToBuffer, read + write): ${copyGBps.toFixed(0)} GB/s; read bandwidth ` +
              `(vec4 sum kernel): ${readGBps.toFixed(0)} GB/s`);
  const maxBinding = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
  const rows: Row[] = [];
  const started = performance.now();

  for (const c of heads) {
    for (const seqK of seqKs) {
      for (const seqQ of seqQs) {
        const shape = `${c.heads}/${c.kvHeads} D${c.headDim} Sq${seqQ} Sk${seqK}`;
        if (performance.now() - started > 125e3) {  // the lead's device call: stay under ~150 s in all
          console.log(`${shape}: skipped (time budget; run it alone with --seqk / --seqq / --variants)`);
          continue;
        }
        const kvBytes = 2 * seqK * c.kvHeads * c.headDim * 4;
        if (kvBytes / 2 > maxBinding) {
          console.log(`${shape}: skipped (K is over maxStorageBufferBindingSize)`);
          continue;
        }
        const gbps = (ms: number) => kvBytes / (ms * 1e-3) / 1e9;
        const q = tf.randomUniform([1, seqQ, c.heads, c.headDim], -1, 1) as tf.Tensor4D;
        const k = tf.randomUniform([1, seqK, c.kvHeads, c.headDim], -1, 1) as tf.Tensor4D;
        const v = tf.randomUniform([1, seqK, c.kvHeads, c.headDim], -1, 1) as tf.Tensor4D;
        const naiveFits = c.heads * seqQ * seqK * 4 <= maxBinding;
        const mask = naiveFits ? naiveCausalMask(c, seqQ, seqK) : null;
        const reference = naiveFits ? naive(q, k, v, mask) : null;
        const naiveMs = naiveFits ? await timeOnQueue(() => [naive(q, k, v, mask)], timing) : null;
        if (naiveMs != null) {
          rows.push({shape, impl: 'naive', ms: naiveMs, gbps: gbps(naiveMs), naiveMs, cpuUs: null, err: null});
          log(rows[rows.length - 1]);
        }

        for (const name of variantNames) {
          setDecodeVariantForTests(VARIANTS[name]);
          try {
            const before = decodeRunsForTests();
            const call = () => lib.flashAttention(q, k, v, {causal: true}) as tf.Tensor;
            const out = call();
            const err = reference != null ? await relErr(out, reference) : null;
            out.dispose();
            const note = decodeRunsForTests() > before ? undefined : 'NOT the decode path';
            const ms = await timeOnQueue(() => [call()], timing);
            const cpuUs = await cpuMicros(call);
            rows.push({shape, impl: name, ms, gbps: gbps(ms), naiveMs, cpuUs, err, note});
          } catch (e) {
            console.log(`${shape} ${name}: ${(e as Error).message.split('\n')[0]}`);
          }
          log(rows[rows.length - 1]);
        }
        setDecodeVariantForTests({});

        // The preallocated cache: capacity seqK, 60% valid, the new rows ending at the last valid key.
        const len = Math.floor(seqK * 0.6);
        const lenTensor = tf.tensor1d([len], 'int32');
        await lenTensor.data();  // uploaded once, as a generation loop's positions tensor is
        const cases: Array<[string, () => tf.Tensor]> = [
          ['cache[]', () => lib.flashAttention(q, k, v, {causal: true, keyLengths: [len], queryOffsets: [len - seqQ]}) as tf.Tensor],
          ['cache[]up', () => {
            setDecodeVariantForTests({smallInputsInUniforms: false});
            try {
              return lib.flashAttention(q, k, v, {causal: true, keyLengths: [len], queryOffsets: [len - seqQ]}) as tf.Tensor;
            } finally {
              setDecodeVariantForTests({});
            }
          }],
          ['cacheT', () => lib.flashAttention(q, k, v, {causal: true, keyLengths: lenTensor, queryOffsets: len - seqQ}) as tf.Tensor],
        ];
        for (const [impl, call] of cases) {
          const ms = await timeOnQueue(() => [call()], timing);
          const cpuUs = await cpuMicros(call);
          rows.push({shape, impl, ms, gbps: gbps(ms) * len / seqK, naiveMs, cpuUs, err: null,
                     note: `${len} of ${seqK} keys valid (GB/s of valid keys)`});
          log(rows[rows.length - 1]);
        }
        tf.dispose([q, k, v, lenTensor]);
        reference?.dispose();
        mask?.dispose();
      }
    }
  }

  console.log(`\n# Decode sweep on ${deviceName}\n`);
  console.log(`fp32, batch 1, causal. copy ${copyGBps.toFixed(0)} GB/s, read ${readGBps.toFixed(0)} GB/s. ` +
              `Sweep took ${((performance.now() - started) / 1000).toFixed(0)} s.\n`);
  console.log('| shape | impl | ms | K/V GB/s | % copy | % read | × naive | cpu µs/call | err | note |');
  console.log('|---|---|---:|---:|---:|---:|---:|---:|---|---|');
  for (const r of rows) {
    console.log(`| ${r.shape} | ${r.impl} | ${r.ms.toFixed(3)} | ${gb(r.gbps)} | ${
        (100 * r.gbps / copyGBps).toFixed(0)}% | ${(100 * r.gbps / readGBps).toFixed(0)}% | ${
        r.naiveMs != null ? (r.naiveMs / r.ms).toFixed(2) : '—'} | ${r.cpuUs != null ? r.cpuUs.toFixed(0) : '—'} | ${
        r.err != null ? r.err.toExponential(1) : '—'} | ${r.note ?? ''} |`);
  }
  return 0;
}

function log(r: Row | undefined) {
  if (r == null) return;
  console.log(`${r.shape.padEnd(26)} ${r.impl.padEnd(8)} ${r.ms.toFixed(3).padStart(8)} ms ${
      gb(r.gbps).padStart(5)} GB/s${r.cpuUs != null ? ` cpu ${r.cpuUs.toFixed(0)} us` : ''}${
      r.err != null ? ` err ${r.err.toExponential(1)}` : ''}${r.note ? ` ${r.note}` : ''}`);
}

main().then((code) => process.exit(code), (e) => {
  console.error(e);
  process.exit(1);
});
