/**
 * A child process that benchmarks one tfjs backend in node (cpu, wasm, or webgpu through Dawn), so that each
 * backend gets its own process: its RSS is its own, and a crash (out of memory, a GPU device loss) costs one job.
 *
 * Protocol (child_process IPC): the parent sends {type: 'init', backend, ort}; the worker answers
 * {type: 'ready', info} or {type: 'unavailable', reason}; then each {type: 'job', job} is answered by
 * {type: 'result', result}.
 */
import {createRequire} from 'node:module';
import * as os from 'node:os';
import * as path from 'node:path';
import * as fs from 'node:fs';
import {fileURLToPath, pathToFileURL} from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import type {Hooks, Job, JobResult} from './measure.js';

export interface BackendInfo {
  backend: string;
  /** e.g. "cpu (AMD EPYC, 2 cores)", "wasm (simd)", "webgpu (Dawn): llvmpipe ..." */
  description: string;
  /** GPU adapter, when there is one. */
  adapter?: string;
  /** True for CPU renderers (lavapipe, SwiftShader, llvmpipe): timings say nothing about GPUs. */
  softwareAdapter?: boolean;
  /** Largest single buffer the backend can allocate, when it has such a limit. */
  maxBufferBytes?: number;
  tfjsVersion: string;
  /** Implementations other than ours/naive that this worker can run (e.g. ort). */
  externalImpls: string[];
  /** Which attention kernels run: dedicated ones for this backend or the composite fallback (measure.ts). */
  kernels?: string;
}

export type WorkerRequest = {type: 'init'; backend: string; ort: boolean} | {type: 'job'; job: Job};
export type WorkerReply = {type: 'ready'; info: BackendInfo} | {type: 'unavailable'; reason: string} |
    {type: 'result'; result: JobResult} | {type: 'error'; message: string};

export const SOFTWARE_ADAPTER = /llvmpipe|lavapipe|swiftshader|software/i;

function send(msg: WorkerReply): void {
  process.send!(msg);
}

let runJob: (job: Job, hooks: Hooks) => Promise<JobResult>;
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const hooks: Hooks = {
  processMemory: () => ({rss: process.memoryUsage().rss, maxRss: process.resourceUsage().maxRSS * 1024}),
};

async function init(backend: string, ort: boolean): Promise<BackendInfo | string> {
  const cpuModel = os.cpus()[0]?.model.trim() ?? 'unknown CPU';
  const info: BackendInfo = {
    backend, description: backend, tfjsVersion: tf.version_core, externalImpls: [],
  };
  if (backend === 'cpu') {
    await import('@tensorflow/tfjs-backend-cpu');
    info.description = `cpu (${cpuModel}, ${os.cpus().length} cores)`;
  } else if (backend === 'wasm') {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    // In node the wasm module reads its binary with fs: a directory path with a trailing slash.
    const pkg = createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm/package.json');
    wasm.setWasmPaths(path.join(path.dirname(pkg), 'dist') + path.sep);
    info.description = `wasm in node (${cpuModel})`;
  } else if (backend === 'webgpu') {
    const {setupWebGPU} = await import('../../test/webgpu_env.js');
    let env;
    try {
      env = await setupWebGPU();
    } catch (e) {
      return `WebGPU could not be set up: ${(e as Error).message}`;
    }
    if (env == null) return 'WebGPU unavailable (no Vulkan driver could be set up for Dawn)';
    info.adapter = env.adapterDescription;
    info.softwareAdapter = SOFTWARE_ADAPTER.test(env.adapterDescription);
    info.description = `webgpu in node (Dawn): ${env.adapterDescription}`;
    info.maxBufferBytes = Math.min(env.device.limits.maxBufferSize, env.device.limits.maxStorageBufferBindingSize);
    if (ort) {
      try {
        const {createOrtHook} = await import('../ort/ort_hook.js');
        hooks.external = await createOrtHook();
        info.externalImpls.push('ort');
      } catch (e) {
        info.description += ` (ONNX Runtime Web unavailable: ${(e as Error).message.split('\n')[0]})`;
      }
    }
  } else {
    return `unknown node backend "${backend}"`;
  }
  if (backend !== 'webgpu' && !(await tf.setBackend(backend))) return `tf.setBackend('${backend}') failed`;
  await tf.ready();
  if (backend === 'wasm') {
    const features = [];
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const wasm = await import('@tensorflow/tfjs-backend-wasm') as any;
    if (wasm.getThreadsCount) features.push(`${wasm.getThreadsCount()} thread(s)`);
    if (tf.env().getBool('WASM_HAS_SIMD_SUPPORT')) features.push('simd');
    if (features.length) info.description += `, ${features.join(', ')}`;
  }
  // What @tensorflow/tfjs users have and the naive baseline needs: core op gradients (tf.grads) and chained op
  // methods. tfjs-core's node entry has neither; the union package's node bundle registers both, on the same
  // (global) engine and registries.
  await import('@tensorflow/tfjs');
  // The library registers its kernels on import; loaded after the backend (webgpu needs navigator.gpu first).
  const measure = await import('./measure.js');
  runJob = measure.runJob;
  // The backend's dedicated kernels, also while src/register.ts does not import them yet.
  const dedicated = path.join(ROOT, 'kernels', backend, `register_all_${backend}_kernels.ts`);
  if (fs.existsSync(dedicated)) await import(pathToFileURL(dedicated).href);
  info.kernels = measure.describeKernels();
  return info;
}

process.on('message', async (msg: WorkerRequest) => {
  try {
    if (msg.type === 'init') {
      const r = await init(msg.backend, msg.ort);
      send(typeof r === 'string' ? {type: 'unavailable', reason: r} : {type: 'ready', info: r});
    } else if (msg.type === 'job') {
      send({type: 'result', result: await runJob(msg.job, hooks)});
    }
  } catch (e) {
    send({type: 'error', message: (e as Error)?.stack ?? String(e)});
  }
});
process.on('disconnect', () => process.exit(0));
