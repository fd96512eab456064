/**
 * The backends the node reliability tests (fuzz, semantics, leaks, validation) run on: one row per backend.
 * A backend joins by adding a row here (its set-up and fuzz tolerance); the tests loop over the rows.
 * RELIABILITY_BACKENDS=cpu,wasm (comma list) picks rows; the default is every row marked `default`.
 */
import './setup_node.js';
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import {FUZZ_TOLERANCES, FuzzTolerance} from './fuzz.js';


export interface ReliabilityBackend {
  /** Row name, also the FUZZ_TOLERANCES key. */
  name: string;
  /** Makes the backend current (imports it on first use, so rows that are not selected cost nothing). */
  setUp: () => Promise<void>;
  tolerance: FuzzTolerance;
  /** Runs when RELIABILITY_BACKENDS is not set. */
  default: boolean;
  /**
   * Dedicated (fused) attention kernels: O(seq) memory, and masked keys are skipped, never multiplied by 0, so a
   * NaN/Inf in a key or value that a row cannot see never reaches that row. False for the composite fallback, whose
   * score tiles are matrix products (see RELIABILITY.md).
   */
  fused: boolean;
  /**
   * Tests (by exact title) known to fail on this backend because of a reported bug, with the reason: registered as
   * pending. RELIABILITY_RUN_PENDING=1 runs them anyway (to verify a fix); remove the entry once fixed.
   */
  pending?: Record<string, string>;
  /**
   * Runs one check (a fuzz case) with the backend's own error reporting around it, after setUp. webgpu: inside
   * validation / out-of-memory error scopes, since Dawn reports a bad dispatch asynchronously and never throws.
   */
  guard?: <T>(fn: () => Promise<T>) => Promise<T>;
}

let webgpuDevice: GPUDevice | null = null;

async function use(name: string): Promise<void> {
  if (!(await tf.setBackend(name))) throw new Error(`tfjs backend ${name} failed to initialize`);
  await tf.ready();
}

export const NODE_BACKENDS: ReliabilityBackend[] = [
  {
    name: 'cpu',
    setUp: () => use('cpu'),
    tolerance: FUZZ_TOLERANCES.cpu,
    default: true,
    fused: true,
  },
  {
    name: 'wasm',
    setUp: async () => {
      await import('@tensorflow/tfjs-backend-wasm');
      await use('wasm');
    },
    tolerance: FUZZ_TOLERANCES.wasm,
    default: true,
    fused: false,
  },
  {
    // Dawn in node (test/webgpu_env.ts; software Vulkan when there is no GPU). Not in the default set: slow on
    // lavapipe. RELIABILITY_BACKENDS=webgpu runs it.
    name: 'webgpu',
    setUp: async () => {
      const {setupWebGPU} = await import('./webgpu_env.js');
      const env = await setupWebGPU();
      if (env == null) throw new Error('WebGPU is not available on this machine');
      webgpuDevice = env.device;
      await use('webgpu');
    },
    guard: async (fn) => {
      const {withGPUErrorCheck} = await import('./webgpu_env.js');
      return withGPUErrorCheck(webgpuDevice!, fn);
    },
    tolerance: FUZZ_TOLERANCES.webgpu,
    default: false,
    fused: true,
  },
];

export function selectedBackends(): ReliabilityBackend[] {
  const wanted = process.env.RELIABILITY_BACKENDS?.split(',').map((s) => s.trim()).filter(Boolean);
  if (wanted == null) return NODE_BACKENDS.filter((b) => b.default);
  return wanted.map((name) => {
    const row = NODE_BACKENDS.find((b) => b.name === name);
    if (row == null) throw new Error(`RELIABILITY_BACKENDS: unknown backend ${name} (rows: ${NODE_BACKENDS.map((b) => b.name)})`);
    return row;
  });
}

/** mocha `it`, or a pending test when the backend lists the title as a known failure. */
export function itOn(backend: ReliabilityBackend, title: string, fn: () => Promise<void> | void): void {
  const reason = backend.pending?.[title];
  if (reason != null && !process.env.RELIABILITY_RUN_PENDING) {
    it(`${title} [pending on ${backend.name}: ${reason}]`);
  } else {
    it(title, fn);
  }
}
