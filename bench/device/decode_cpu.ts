/**
 * Host-side cost of one attention call on webgpu (issue 18): how long it takes the CPU to RECORD a call — op
 * validation, plan, tfjs's runKernel, our kernel function, the program dispatches (uniform buffers, bind groups),
 * output tensors, disposal — with no wait for the GPU. On an H100 the decode at seqK 8192 takes 0.135–0.22 ms per
 * call, of which ~130 µs is this recording: the call is CPU-bound.
 *
 * Per case (after a warm-up pass over every case): µs per call over `--reps` batches of `--calls` calls back to back
 * (outputs disposed as they come), each batch followed by an untimed queue sync: "call" = median of the batch means
 * (garbage collection included), "callMedian" = the median single call. tfjs submits every
 * WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE dispatches as always, but queue.submit drops the command buffers unless
 * --execute (see `execute` below): the host work is the same code as on a GPU machine, lavapipe's execution is not
 * in the numbers.
 *
 * --breakdown also times pieces of one call alone (median single call): `plan` = makePlan, `emptyOp` = making and
 * disposing a [batch] int32 tensor (the op's per-call keyLengths), `runKernel` = engine.runKernel with a fixed plan
 * (kernel function, both dispatches, outputs). --gpu-calls adds the µs per call spent inside each Dawn method.
 *
 *   VK_DRIVER_FILES=… LD_LIBRARY_PATH=… npx tsx bench/device/decode_cpu.ts [--calls 40] [--reps 15] [--breakdown]
 *       [--cases decode128,decode64,...] [--json out.json] [--gpu-calls] [--execute] [--submit-every N]
 */
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import * as lib from '../../src/index.js';
import {decodeRunsForTests} from '../../kernels/webgpu/attention_decode.js';
import {syncQueue} from '../suite/webgpu_timing.js';
import {adapterName, dawnAdapter} from './dawn_device.js';

const argv = process.argv.slice(2);
const arg = (name: string) => {
  const i = argv.indexOf(`--${name}`);
  return i < 0 ? undefined : argv[i + 1];
};
const calls = Number(arg('calls') ?? 40);
const reps = Number(arg('reps') ?? 15);
const breakdown = argv.includes('--breakdown');
// On lavapipe the GPU is this same 2-core CPU (and takes ~0.2 s per seqK-8192 decode): work submitted mid-batch would
// race the recording. So by default, once each case's first call has run for real, queue.submit drops the command
// buffers (the commands are recorded, finished and submitted by tfjs as always — every
// WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE dispatches — but never executed): what is timed is our code, tfjs's and Dawn's
// encoding, not the software GPU. --execute runs them (then the numbers include lavapipe's contention).
const execute = argv.includes('--execute');
const submitEvery = arg('submit-every') == null ? null : Number(arg('submit-every'));
// --gpu-calls: also wrap the WebGPU (Dawn) API methods and report the µs per call spent inside each (wrapping adds a
// little to every call: compare 'call' numbers only from runs without it).
const gpuCalls = argv.includes('--gpu-calls');
const gpuTime = new Map<string, number>();

function wrapGPUMethods(): void {
  const classes = {GPUDevice, GPUQueue, GPUComputePassEncoder, GPUCommandEncoder, GPUComputePipeline, GPUBuffer};
  for (const [className, cls] of Object.entries(classes)) {
    const proto = cls.prototype as unknown as Record<string, unknown>;
    for (const name of Object.getOwnPropertyNames(proto)) {
      const d = Object.getOwnPropertyDescriptor(proto, name);
      if (d == null || typeof d.value !== 'function' || name === 'constructor') continue;
      const original = d.value as (...a: unknown[]) => unknown;
      const key = `${className}.${name}`;
      proto[name] = function(this: unknown, ...a: unknown[]) {
        const t0 = performance.now();
        try {
          return original.apply(this, a);
        } finally {
          gpuTime.set(key, (gpuTime.get(key) ?? 0) + performance.now() - t0);
        }
      };
    }
  }
}

interface Case {
  name: string;
  heads: number;
  kvHeads: number;
  headDim: number;
  seqQ: number;
  seqK: number;
  decode: boolean;
  options: () => lib.FlashAttentionOptions;
}

const CASES: Case[] = [
  {name: 'decode128', heads: 32, kvHeads: 8, headDim: 128, seqQ: 1, seqK: 8192, decode: true,
   options: () => ({causal: true})},
  {name: 'decode64', heads: 16, kvHeads: 16, headDim: 64, seqQ: 1, seqK: 8192, decode: true,
   options: () => ({causal: true})},
  // A generation loop over a preallocated cache: keyLengths / queryOffsets as numbers (uniforms on the decode path).
  {name: 'decode128-cache', heads: 32, kvHeads: 8, headDim: 128, seqQ: 1, seqK: 8192, decode: true,
   options: () => ({causal: true, keyLengths: [4915], queryOffsets: [4914]})},
  // The ordinary (tiled) forward: a short prefill chunk; its host work does not depend on the sizes.
  {name: 'forward128', heads: 32, kvHeads: 8, headDim: 128, seqQ: 64, seqK: 128, decode: false,
   options: () => ({causal: true})},
];

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};

/**
 * µs per call of fn: `reps` unsynced batches of `n` calls, each followed by an untimed sync. Returns the median over
 * batches of the batch's mean (what a loop pays, garbage collection included) and the median single call.
 */
async function microsPerCall(fn: () => void, n = calls): Promise<{mean: number; median: number}> {
  const means: number[] = [];
  const each: number[] = [];
  for (let r = 0; r < reps; r++) {
    await syncQueue();
    const t0 = performance.now();
    let t = t0;
    for (let i = 0; i < n; i++) {
      fn();
      const now = performance.now();
      each.push(now - t);
      t = now;
    }
    means.push((t - t0) / n * 1000);
  }
  await syncQueue();
  return {mean: median(means), median: median(each) * 1000};
}

function makeInputs(c: Case): tf.Tensor4D[] {
  return [
    tf.randomUniform([1, c.seqQ, c.heads, c.headDim], -1, 1) as tf.Tensor4D,
    tf.randomUniform([1, c.seqK, c.kvHeads, c.headDim], -1, 1) as tf.Tensor4D,
    tf.randomUniform([1, c.seqK, c.kvHeads, c.headDim], -1, 1) as tf.Tensor4D,
  ];
}

/** The calls of case c, 300 times, untimed (submits dropped as in the timed pass). */
async function warmUp(c: Case): Promise<void> {
  const [q, k, v] = makeInputs(c);
  await Promise.all([q.data(), k.data(), v.data()]);
  for (let i = 0; i < 300; i++) (lib.flashAttention(q, k, v, c.options()) as tf.Tensor).dispose();
  await syncQueue();
  tf.dispose([q, k, v]);
}

async function main(): Promise<void> {
  const {gpu, adapter} = await dawnAdapter();
  if (adapter == null) throw new Error('no WebGPU adapter');
  // After dawnAdapter: it installs the GPU classes this wraps.
  if (gpuCalls) wrapGPUMethods();
  console.log(`device: ${adapterName(adapter)}`);
  await lib.setupWebGPU({gpu});
  if (submitEvery != null) tf.env().set('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE', submitEvery);
  const queue = (tf.backend() as unknown as {queue: GPUQueue}).queue;
  const realSubmit = queue.submit.bind(queue);
  const dropSubmits = (drop: boolean) => {
    queue.submit = drop && !execute ? () => undefined : realSubmit;
  };
  console.log(`node ${process.version}, tfjs ${tf.version_core}, ${calls} calls × ${reps} batches, median; submit every ${
      tf.env().get('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE')} dispatches, ${execute ? 'executed' : 'dropped (not executed)'}`);
  const wanted = arg('cases')?.split(',');
  const results: Record<string, Record<string, number>> = {};
  // Every case twice, the first pass untimed: the first case measured must not pay for the JIT's first compiles.
  const selected = CASES.filter((c) => wanted == null || wanted.includes(c.name));
  for (const [pass, c] of [...selected.map((c) => [0, c] as const), ...selected.map((c) => [1, c] as const)]) {
    if (pass === 0) {
      dropSubmits(true);
      await warmUp(c);
      dropSubmits(false);
      continue;
    }
    const [q, k, v] = makeInputs(c);
    await Promise.all([q.data(), k.data(), v.data()]);
    const call = () => (lib.flashAttention(q, k, v, c.options()) as tf.Tensor).dispose();
    const before = decodeRunsForTests();
    dropSubmits(false);
    call();
    await syncQueue();
    dropSubmits(true);
    if ((decodeRunsForTests() > before) !== c.decode) throw new Error(`${c.name}: decode path taken? ${!c.decode}`);
    const tensors = tf.memory().numTensors;
    for (let i = 0; i < 300; i++) call();  // warm-up: the JIT, tfjs's buffer pool
    gpuTime.clear();
    const whole = await microsPerCall(call);
    const row: Record<string, number> = {call: whole.mean, callMedian: whole.median};
    if (gpuCalls) {
      for (const [key, ms] of [...gpuTime].sort((a, b) => b[1] - a[1])) {
        if (!/onSubmittedWorkDone|submit$|finish$/.test(key)) row[key] = ms * 1000 / (calls * reps);
      }
    }
    if (tf.memory().numTensors !== tensors) throw new Error(`${c.name}: tensors leaked`);
    if (breakdown) {
      // The pieces, each repeated alone: what one call would spend there.
      const shapes = {batch: 1, seqQ: c.seqQ, seqK: c.seqK, heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim};
      row.emptyOp = (await microsPerCall(() => tf.tensor1d([c.seqK], 'int32').dispose())).median;
      row.plan = (await microsPerCall(() => lib.makePlan({
        ...shapes, kind: 'flash', scale: 1 / Math.sqrt(c.headDim), softcap: 0, windowLeft: -1, windowRight: 0,
        layout: null, hasKeyLengths: false}))).median;
      const keyLengths = tf.tensor1d([c.seqK], 'int32');
      const plan = lib.makePlan({...shapes, kind: 'flash', scale: 1 / Math.sqrt(c.headDim), softcap: 0,
                                 windowLeft: -1, windowRight: 0, layout: null, hasKeyLengths: false});
      const inputs = {q, k, v, keyLengths, queryOffsets: keyLengths, mask: keyLengths, bias: keyLengths,
                      alibiSlopes: keyLengths, queryIds: keyLengths, keyIds: keyLengths};
      row.runKernel = (await microsPerCall(() => tf.dispose(
          tf.engine().runKernel(lib.FlashAttention, inputs, {plan} as unknown as tf.NamedAttrMap) as tf.Tensor[]))).median;
      keyLengths.dispose();
    }
    dropSubmits(false);
    results[c.name] = row;
    console.log(`${c.name.padEnd(16)} ${c.heads}/${c.kvHeads} D${c.headDim} Sq${c.seqQ} Sk${c.seqK}: ${
        Object.entries(row).map(([k, us]) => `${k} ${us.toFixed(1)} µs`).join(', ')}`);
    tf.dispose([q, k, v]);
  }
  const out = arg('json');
  if (out != null) (await import('node:fs')).writeFileSync(out, JSON.stringify(results, null, 1));
}

main().then(() => process.exit(0), (e) => {
  console.error(e);
  process.exit(1);
});
