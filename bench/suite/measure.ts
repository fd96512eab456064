/**
 * Runs one benchmark job (one case, on the current tfjs backend): this library's op and tfjs's naive composition,
 * forward and forward+backward, each timed (timing.ts) and measured for memory; plus a correctness check of ours
 * against naive. Env-agnostic: the node worker and the browser page run the same code.
 *
 * Memory figures of one call, all "above what was allocated before the call":
 *   tensorPeakBytes  tf.profile's peakBytes (engine-tracked tensors, sampled after every kernel) minus the bytes
 *                    live before. Backend-internal scratch buffers of a kernel are not engine tensors and not counted
 *                    here. For naive, the [Sq, Sk] additive mask the user must keep is added (maskBytes).
 *   gpuPeakBytes     webgpu: high-water of the buffer manager's bytes in use; webgl: of the backend's texture bytes
 *                    (both include kernel scratch). Absent on cpu/wasm.
 *   rssBytes         (node) process RSS right after the call; rssPeakBytes the process's high-water mark so far.
 */
// The environment must have loaded what @tensorflow/tfjs users have: tfjs's gradients (naive backward through
// tf.grads) and the chained op methods (x.reshape() in the naive composition): node_worker.ts, browser_entry.ts.
import * as tf from '@tensorflow/tfjs-core';
import {additiveMask, naiveAttentionWithBias as naiveAttention} from '../../src/layers/naive_attention.js';
import {BenchCase, Impl, Mode} from './cases.js';
import {compositeKernelConfigs} from '../../kernels/composite/register_all_composite_kernels.js';
import * as lib from '../../src/index.js';
import {casePlan, CasePlan, needsMask} from './problem.js';
import {Timed, timeIt, Timing, TimingOptions} from './timing.js';

export interface RunSpec {
  impl: Impl;
  mode: Mode;
}

export interface Job {
  backend: string;
  case: BenchCase;
  runs: RunSpec[];
  timing: TimingOptions;
}

export interface MemoryStats {
  tensorPeakBytes?: number;
  maskBytes?: number;
  gpuPeakBytes?: number;
  rssBytes?: number;
  rssPeakBytes?: number;
}

export interface RunResult extends RunSpec {
  timing?: Timing;
  memory?: MemoryStats;
  /** Why this run has no timing (an exception: out of memory, missing kernel...). */
  error?: string;
  /** External implementations: max |theirs − ours| / max |ours| on the forward output. */
  maxRelDiffVsOurs?: number;
}

export interface JobResult {
  caseId: string;
  backend: string;
  runs: RunResult[];
  /** Ours vs naive forward output: max |ours − naive| / max(max |naive|, 1e-3). */
  maxRelDiffVsNaive?: number;
  /** tf.memory().numTensors after the job minus before (should be 0). */
  leakedTensors: number;
}

/** What the environment adds: process memory (node), other implementations (ORT). */
export interface Hooks {
  processMemory?: () => {rss: number; maxRss: number};
  /** Implementations that are not tfjs ops (they time themselves); called for impls other than ours/naive. */
  external?: (spec: RunSpec, c: BenchCase, timing: TimingOptions, ctx: ExternalContext) => Promise<RunResult>;
}

/** The job's inputs for an external implementation, and our forward output to check it against. */
export interface ExternalContext {
  /** q, k, v in [B, S, H, D] / [B, S, Hkv, D] layout. */
  inputs: Float32Array[];
  oursOutput?: Float32Array;
}

/**
 * Which attention kernels the current backend runs: "dedicated" ones registered for it, or the composite ones
 * (registered by name, or on first use). E.g. "dedicated: FlashAttention, ...; composite: FlashAttentionGrad, ...".
 */
export function describeKernels(): string {
  const backend = tf.getBackend();
  const dedicated: string[] = [], composite: string[] = [];
  for (const name of lib.ALL_KERNELS) {
    const k = tf.getKernel(name, backend);
    const isComposite = k == null || compositeKernelConfigs.some((c) => c.kernelFunc === k.kernelFunc);
    (isComposite ? composite : dedicated).push(name);
  }
  return [dedicated.length ? `dedicated: ${dedicated.join(', ')}` : '',
          composite.length ? `composite: ${composite.join(', ')}` : ''].filter((x) => x).join('; ');
}

type Fn = () => tf.Tensor[];
type Attention = (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D) => tf.Tensor4D;

/** This library's op for the case. */
function oursFor(c: BenchCase, p: CasePlan): Attention {
  switch (c.op) {
    case 'causal': return (q, k, v) => lib.flashAttention(q, k, v, {causal: true});
    case 'sliding': return (q, k, v) => lib.slidingWindowAttention(q, k, v, {windowSize: c.window!});
    case 'sparse': return (q, k, v) => lib.sparseAttention(q, k, v, {layout: p.layout!});
    default: return (q, k, v) => lib.flashAttention(q, k, v);
  }
}

/** Reads one element derived from every result: the cheapest read that waits for all of them. */
async function syncAll(tensors: tf.Tensor[]): Promise<void> {
  const probe = tf.tidy(() => tf.addN(tensors.map((t) => tf.slice(tf.reshape(t, [-1]), 0, 1))));
  await probe.data();
  probe.dispose();
}

function timedTensors(fn: Fn): Timed<tf.Tensor[]> {
  return {call: fn, sync: syncAll, dispose: (ts) => tf.dispose(ts)};
}

/** Watches the backend's GPU allocations; the returned function stops watching and gives the peak above start. */
function watchGpuBytes(): (() => number) | null {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const backend = tf.backend() as any;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let owner: any, method: string, read: () => number;
  if (tf.getBackend() === 'webgpu' && backend.bufferManager?.acquireBuffer) {
    owner = backend.bufferManager;
    method = 'acquireBuffer';
    read = () => owner.numBytesUsed;
  } else if (tf.getBackend() === 'webgl' && typeof backend.acquireTexture === 'function') {
    owner = backend;
    method = 'acquireTexture';
    read = () => backend.numBytesInGPU;
  } else {
    return null;
  }
  const start = read();
  let peak = start;
  const own = Object.prototype.hasOwnProperty.call(owner, method);
  const original = owner[method];
  owner[method] = function(...args: unknown[]) {
    const r = original.apply(this, args);
    peak = Math.max(peak, read());
    return r;
  };
  return () => {
    if (own) owner[method] = original; else delete owner[method];
    return peak - start;
  };
}

async function measureMemory(fn: Fn, hooks: Hooks): Promise<MemoryStats> {
  const before = tf.memory().numBytes;
  const stopGpu = watchGpuBytes();
  let gpuPeakBytes: number | undefined;
  let info: tf.TensorContainer & {peakBytes: number};
  try {
    info = await tf.profile(async () => {
      const out = fn();
      await syncAll(out);
      tf.dispose(out);
      return [];
    }) as unknown as typeof info;
  } finally {
    gpuPeakBytes = stopGpu?.() ?? undefined;
  }
  const stats: MemoryStats = {tensorPeakBytes: Math.max(0, info.peakBytes - before), gpuPeakBytes};
  const pm = hooks.processMemory?.();
  if (pm != null) {
    stats.rssBytes = pm.rss;
    stats.rssPeakBytes = pm.maxRss;
  }
  return stats;
}

function errorText(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split('\n')[0].slice(0, 300);
}

function makeFn(impl: 'ours' | 'naive', mode: Mode, ours: Attention, c: BenchCase, inputs: tf.Tensor4D[],
                mask: tf.Tensor2D | null, dy: tf.Tensor4D | null): Fn {
  const scale = 1 / Math.sqrt(c.headDim);
  const f = impl === 'ours' ? ours :
      (q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D) => naiveAttention(q, k, v, scale, mask);
  if (mode === 'forward') return () => [f(inputs[0], inputs[1], inputs[2])];
  const grads = tf.grads((q, k, v) => f(q as tf.Tensor4D, k as tf.Tensor4D, v as tf.Tensor4D));
  return () => grads(inputs, dy!);
}

async function externalContext(inputs: tf.Tensor4D[], ours: Attention): Promise<ExternalContext> {
  const ctx: ExternalContext = {inputs: await Promise.all(inputs.map((t) => t.data() as Promise<Float32Array>))};
  try {
    const out = ours(inputs[0], inputs[1], inputs[2]);
    ctx.oursOutput = await out.data() as Float32Array;
    out.dispose();
  } catch {
    // ours failing is reported by its own run
  }
  return ctx;
}

export async function runJob(job: Job, hooks: Hooks = {}): Promise<JobResult> {
  const c = job.case;
  const tensorsBefore = tf.memory().numTensors;
  const problem = casePlan(c);
  const ours = oursFor(c, problem);
  const result: JobResult = {caseId: c.id, backend: job.backend, runs: [], leakedTensors: 0};
  const wantsNaive = job.runs.some((r) => r.impl === 'naive');
  const wantsBackward = job.runs.some((r) => r.mode === 'backward' && r.impl !== 'ort');
  const inputs = [
    tf.randomUniform([c.batch, c.seq, c.heads, c.headDim], -1, 1, 'float32', 1),
    tf.randomUniform([c.batch, c.seq, c.kvHeads, c.headDim], -1, 1, 'float32', 2),
    tf.randomUniform([c.batch, c.seq, c.kvHeads, c.headDim], -1, 1, 'float32', 3),
  ] as tf.Tensor4D[];
  const dy = wantsBackward ? tf.randomUniform(inputs[0].shape, -1, 1, 'float32', 4) as tf.Tensor4D : null;
  let mask: tf.Tensor2D | null = null;
  try {
    if (wantsNaive && needsMask(c)) mask = additiveMask(problem.plan);
    const maskBytes = mask == null ? 0 : mask.size * 4;

    // Correctness: ours vs naive forward (also the first warm-up of both).
    if (wantsNaive && job.runs.some((r) => r.impl === 'ours')) {
      try {
        const a = ours(inputs[0], inputs[1], inputs[2]);
        const b = naiveAttention(inputs[0], inputs[1], inputs[2], 1 / Math.sqrt(c.headDim), mask);
        const [diff, ref] = tf.tidy(() => [tf.max(tf.abs(tf.sub(a, b))), tf.max(tf.abs(b))]);
        result.maxRelDiffVsNaive = (await diff.data())[0] / Math.max((await ref.data())[0], 1e-3);
        tf.dispose([a, b, diff, ref]);
      } catch {
        // Reported by the runs themselves.
      }
    }

    let external: ExternalContext | null = null;
    for (const spec of job.runs) {
      if (spec.impl !== 'ours' && spec.impl !== 'naive') {
        if (hooks.external == null) {
          result.runs.push({...spec, error: 'not available in this environment'});
          continue;
        }
        external ??= await externalContext(inputs, ours);
        result.runs.push(await hooks.external(spec, c, job.timing, external));
        continue;
      }
      const run: RunResult = {...spec};
      try {
        const fn = makeFn(spec.impl, spec.mode, ours, c, inputs, mask, dy);
        const warm = fn();  // compile before memory is measured (programs, pipeline caches)
        await syncAll(warm);
        tf.dispose(warm);
        run.memory = await measureMemory(fn, hooks);
        if (spec.impl === 'naive' && maskBytes > 0) {
          run.memory.maskBytes = maskBytes;
          run.memory.tensorPeakBytes = (run.memory.tensorPeakBytes ?? 0) + maskBytes;
        }
        run.timing = await timeIt(timedTensors(fn), {...job.timing, warmup: Math.max(0, job.timing.warmup - 1)});
      } catch (e) {
        run.error = errorText(e);
      }
      result.runs.push(run);
    }
  } finally {
    tf.dispose([...inputs, ...(dy ? [dy] : []), ...(mask ? [mask] : [])]);
  }
  result.leakedTensors = tf.memory().numTensors - tensorsBefore;
  return result;
}
