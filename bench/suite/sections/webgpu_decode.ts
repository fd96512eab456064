/**
 * Section `webgpu-decode` of bench/suite.ts (issue 18): one or a few query rows against a long KV cache, fp32, batch 1,
 * causal, webgpu. Ours (split-K decode path) vs ours forced onto the tiled kernel vs tfjs naive (the g query heads
 * of a kv head as g·seqQ rows of matMul → softmax → matMul) vs ONNX Runtime Web's GroupQueryAttention on its WebGPU
 * EP, one process, one GPU. K/V GB/s = bytes of K and V (read once per kv head) / time, next to the device's copy
 * bandwidth measured in the same run. Default sweep: seqQ 1 and 16; seqK 1024 … 131072; 32 query heads over 8 kv
 * heads at D128 and 16/16 at D64. Shapes whose K or V (or naive's scores) exceed the device's
 * maxStorageBufferBindingSize / maxBufferSize are skipped with the reason.
 *
 * ORT runs on its own device, which it requests from the same adapter with the features its programs want (its
 * flash-attention decode needs subgroups; tfjs's device does not request them), so it cannot share tfjs's device;
 * both are timed the same way: calls back to back, one sync on the device's queue (webgpu_timing.ts).
 *
 *   npx tsx bench/suite.ts --section webgpu-decode [--quick] [--seqk LIST] [--seqq LIST] [--heads 32/8x128,16/16x64]
 *       [--no-ort] [--no-tiled] [--out DIR]                         (--out writes webgpu-decode.{md,json})
 */
// tfjs's op gradients and the cpu backend, as @tensorflow/tfjs users have them (see webgpu_kernel.ts).
import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import {mkdirSync, writeFileSync} from 'node:fs';
import * as os from 'node:os';
import * as lib from '../../../src/index.js';
import '../../../kernels/webgpu/register_all_webgpu_kernels.js';
import {setDecodePathForTests} from '../../../kernels/webgpu/attention_decode.js';
import {setupWebGPU} from '../../../test/webgpu_env.js';
import {maxRelDiff} from '../../ort/ort_hook.js';
import {OrtGroupQueryAttention} from '../../ort/ort_gqa.js';
import {loadOrtWebGPU, OrtModule} from '../../ort/ort_webgpu.js';
import {QueueTimingOptions, timeBackToBack, timeOnQueue} from '../webgpu_timing.js';
import {decodeMarkdown, DecodeReport, DecodeRow, formatGBps} from './webgpu_decode_report.js';
import {copyBandwidth, HeadConfig, naive, naiveCausalMask} from './webgpu_decode_naive.js';

const label = (c: HeadConfig) => `${c.heads}/${c.kvHeads} D${c.headDim}`;

const DEFAULT_SEQK = [1024, 4096, 8192, 16384, 32768, 65536, 131072];
const DEFAULT_HEADS: HeadConfig[] = [{heads: 32, kvHeads: 8, headDim: 128}, {heads: 16, kvHeads: 16, headDim: 64}];
/** --quick checks the machinery on a software GPU in a few minutes: small heads, one seqK over the decode path's
 *  threshold (256 keys) that is no multiple of its 256-key blocks. */
const QUICK_SEQK = [300];
const QUICK_HEADS: HeadConfig[] = [{heads: 8, kvHeads: 2, headDim: 64}, {heads: 4, kvHeads: 4, headDim: 32}];

function parse(argv: string[]) {
  const arg = (name: string) => {
    const i = argv.indexOf(`--${name}`);
    return i < 0 ? undefined : argv[i + 1];
  };
  const nums = (s: string) => s.split(',').map((x) => Number(x.trim()));
  const quick = argv.includes('--quick');
  const heads = arg('heads')?.split(',').map((s) => {
    const m = /^(\d+)\/(\d+)x(\d+)$/.exec(s.trim());
    if (m == null) throw new Error(`--heads: expected entries like 32/8x128 (query heads/kv heads x head dim), got "${s}"`);
    const c = {heads: Number(m[1]), kvHeads: Number(m[2]), headDim: Number(m[3])};
    if (c.heads % c.kvHeads !== 0) throw new Error(`--heads ${s}: query heads must be a multiple of kv heads`);
    return c;
  }) ?? (quick ? QUICK_HEADS : DEFAULT_HEADS);
  const seqKs = arg('seqk') != null ? nums(arg('seqk')!) : quick ? QUICK_SEQK : DEFAULT_SEQK;
  const seqQs = arg('seqq') != null ? nums(arg('seqq')!) : [1, 16];
  for (const [name, list] of [['--seqk', seqKs], ['--seqq', seqQs]] as const) {
    if (list.some((n) => !Number.isInteger(n) || n < 1)) throw new Error(`${name}: expected positive integers, got ${list}`);
  }
  return {quick, heads, seqKs, seqQs, ort: !argv.includes('--no-ort'), tiled: !argv.includes('--no-tiled'),
          out: arg('out') ?? process.env.OUT ?? null};
}

async function maxRelErr(a: tf.Tensor, b: tf.Tensor): Promise<number> {
  const [diff, ref] = await Promise.all([tf.max(tf.abs(tf.sub(a, b))).data(), tf.max(tf.abs(b)).data()]);
  return diff[0] / Math.max(ref[0], 1e-3);
}

const firstLine = (e: unknown) => ((e as Error).message ?? String(e)).split('\n')[0].slice(0, 240);

function log(r: DecodeRow) {
  const what = r.ms != null ? `${r.ms.toFixed(3).padStart(9)} ms ${formatGBps(r.kvGBps).padStart(6)} GB/s K/V` :
                              `not run: ${r.error}`;
  console.log(`${r.config.padEnd(11)} Sq=${String(r.seqQ).padStart(2)} Sk=${String(r.seqK).padStart(6)} ${
      r.impl.padEnd(10)} ${what}${r.maxRelErr != null ? `  err ${r.maxRelErr.toExponential(1)}` : ''}${
      r.note ? `  ${r.note}` : ''}`);
}

/** Why a shape cannot run on this device (K or V, or naive's scores, too large for one binding), or null. */
function tooLarge(limits: GPUSupportedLimits, bytes: number, what: string): string | null {
  const limit = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
  return bytes > limit ? `${what} is ${(bytes / 2 ** 20).toFixed(0)} MiB, over the device's ${
      (limit / 2 ** 20).toFixed(0)} MiB maxStorageBufferBindingSize/maxBufferSize` : null;
}

export async function main(argv: string[]): Promise<DecodeRow[]> {
  const o = parse(argv);
  const env = await setupWebGPU();
  if (env == null) throw new Error('no WebGPU');
  console.log(`adapter: ${env.adapterDescription}`);
  const limits = env.device.limits;
  console.log(`tfjs device: maxStorageBufferBindingSize ${limits.maxStorageBufferBindingSize / 2 ** 20} MiB, ` +
              `maxBufferSize ${limits.maxBufferSize / 2 ** 20} MiB`);
  const copyBytes = Math.min(o.quick ? 64 << 20 : 1 << 30, limits.maxBufferSize);
  const copyGBps = await copyBandwidth(env.device, copyBytes);
  console.log(`device copy bandwidth (buffer to buffer, read + write): ${copyGBps.toFixed(0)} GB/s`);
  const timing: QueueTimingOptions = o.quick ? {targetMs: 20, repeats: 3} : {};

  let ort: OrtModule | null = null;
  let ortStatus = 'not run (--no-ort)';
  if (o.ort) {
    try {
      ort = await loadOrtWebGPU();
      ortStatus = `onnxruntime-web ${ort.env.versions?.web ?? '?'}, com.microsoft GroupQueryAttention on its WebGPU EP ` +
          '(own device, same adapter), KV cache bound as past and present';
    } catch (e) {
      ortStatus = `unavailable: ${firstLine(e)}`;
    }
    console.log(`ORT-Web: ${ortStatus}`);
  }

  const rows: DecodeRow[] = [];
  const record = (r: DecodeRow) => {
    rows.push(r);
    log(r);
  };
  for (const c of o.heads) {
    for (const seqK of o.seqKs) {
      for (const seqQ of o.seqQs) {
        const base = {config: label(c), seqQ, seqK};
        const kvBytes = 2 * seqK * c.kvHeads * c.headDim * 4;
        const gbps = (ms: number) => kvBytes / (ms * 1e-3) / 1e9;
        const skip = tooLarge(limits, kvBytes / 2, 'K (and V)');
        if (skip != null) {
          record({...base, impl: 'ours', ms: null, error: skip});
          continue;
        }
        const q = tf.randomUniform([1, seqQ, c.heads, c.headDim], -1, 1) as tf.Tensor4D;
        const k = tf.randomUniform([1, seqK, c.kvHeads, c.headDim], -1, 1) as tf.Tensor4D;
        const v = tf.randomUniform([1, seqK, c.kvHeads, c.headDim], -1, 1) as tf.Tensor4D;
        const naiveTooLarge = tooLarge(limits, c.heads * seqQ * seqK * 4, 'naive\'s score matrix');
        const mask = naiveTooLarge == null ? naiveCausalMask(c, seqQ, seqK) : null;
        const reference = naiveTooLarge == null ? naive(q, k, v, mask) : null;
        let oursOut: Float32Array | null = null;

        for (const mode of o.tiled ? ['decode', 'tiled'] as const : ['decode'] as const) {
          const impl = mode === 'decode' ? 'ours' : 'ours-tiled';
          setDecodePathForTests(mode === 'decode' ? null : 'never');
          try {
            const out = lib.flashAttention(q, k, v, {causal: true});
            const err = reference ? await maxRelErr(out, reference) : undefined;
            if (mode === 'decode') oursOut = await out.data() as Float32Array;
            out.dispose();
            const ms = await timeOnQueue(() => [lib.flashAttention(q, k, v, {causal: true})], timing);
            record({...base, impl, ms, kvGBps: gbps(ms), maxRelErr: err});
          } catch (e) {
            record({...base, impl, ms: null, error: firstLine(e)});
          } finally {
            setDecodePathForTests(null);
          }
        }

        if (naiveTooLarge != null) {
          record({...base, impl: 'naive', ms: null, error: naiveTooLarge});
        } else {
          try {
            const ms = await timeOnQueue(() => [naive(q, k, v, mask)], timing);
            record({...base, impl: 'naive', ms, kvGBps: gbps(ms)});
          } catch (e) {
            record({...base, impl: 'naive', ms: null, error: firstLine(e)});
          }
        }
        reference?.dispose();
        mask?.dispose();

        if (o.ort) record(await ortRow(ort, ortStatus, c, base, q, k, v, oursOut, gbps, timing));

        // A preallocated cache: capacity seqK, `len` valid keys, the new query rows ending at position len - 1.
        const len = Math.floor(seqK * 0.6);
        try {
          const opts = {causal: true, keyLengths: [len], queryOffsets: [len - seqQ]};
          const ms = await timeOnQueue(() => [lib.flashAttention(q, k, v, opts)], timing);
          record({...base, impl: 'ours-cache', ms, kvGBps: gbps(ms) * len / seqK, note: `${len} of ${seqK} keys valid`});
        } catch (e) {
          record({...base, impl: 'ours-cache', ms: null, error: firstLine(e)});
        }
        tf.dispose([q, k, v]);
      }
    }
  }

  const report: DecodeReport = {
    date: new Date().toISOString(), adapter: env.adapterDescription,
    host: `${os.type()} ${os.release()}, node ${process.version}`, copyGBps, ort: ortStatus, rows,
  };
  const md = decodeMarkdown(report);
  console.log(`\n${md}`);
  if (o.out != null) {
    mkdirSync(o.out, {recursive: true});
    writeFileSync(`${o.out}/webgpu-decode.json`, JSON.stringify(report, null, 1));
    writeFileSync(`${o.out}/webgpu-decode.md`, md);
    console.log(`wrote ${o.out}/webgpu-decode.{json,md}`);
  }
  return rows;
}

/** ORT-Web's GroupQueryAttention on the same inputs: timed, and its output checked against ours. */
async function ortRow(ort: OrtModule | null, status: string, c: HeadConfig,
                      base: {config: string; seqQ: number; seqK: number}, q: tf.Tensor4D, k: tf.Tensor4D,
                      v: tf.Tensor4D, oursOut: Float32Array | null, gbps: (ms: number) => number,
                      timing: QueueTimingOptions): Promise<DecodeRow> {
  if (ort == null) return {...base, impl: 'ort', ms: null, error: `ORT-Web ${status}`};
  let gqa: OrtGroupQueryAttention | null = null;
  try {
    const [qd, kd, vd] = await Promise.all([q.data(), k.data(), v.data()]) as Float32Array[];
    gqa = await OrtGroupQueryAttention.create(ort, {batch: 1, seqQ: base.seqQ, seqK: base.seqK, ...c}, qd, kd, vd);
    const first = await gqa.call();
    const out = await first.getData();
    first.dispose();
    const g = gqa;
    const ms = await timeBackToBack(async () => (await g.call()).dispose(), () => g.sync(), timing);
    return {...base, impl: 'ort', ms, kvGBps: gbps(ms), maxRelErr: oursOut ? maxRelDiff(out, oursOut) : undefined};
  } catch (e) {
    return {...base, impl: 'ort', ms: null, error: `ORT-Web: ${firstLine(e)}`};
  } finally {
    await gqa?.release().catch(() => undefined);
  }
}
