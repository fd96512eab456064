/**
 * The backends the node reliability tests (fuzz, semantics, leaks, validation) run on: one row per backend.
 * A backend joins by adding a row here (its set-up and fuzz tolerance); the tests loop over the rows.
 * RELIABILITY_BACKENDS=cpu,wasm (comma list) picks rows; the default is every row marked `default`.
 */
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import {createRequire} from 'node:module';
import {FUZZ_TOLERANCES, FuzzTolerance} from './fuzz.js';

// Gradients of the core ops (sum, mul, where) that check_case's loss uses: tfjs-core alone does not register them.
// Required, not imported: the file's ESM build imports directories, which node's ESM loader rejects (tsx's require
// hook compiles it); the registry is global, so it serves the tfjs-core instance the library uses.
createRequire(import.meta.url)('@tensorflow/tfjs-core/dist/register_all_gradients');

export interface ReliabilityBackend {
  /** Row name, also the FUZZ_TOLERANCES key. */
  name: string;
  /** Makes the backend current (imports it on first use, so rows that are not selected cost nothing). */
  setUp: () => Promise<void>;
  tolerance: FuzzTolerance;
  /** Runs when RELIABILITY_BACKENDS is not set. */
  default: boolean;
  /** Attention kernels are fused (O(seq) memory); false for the composite fallback, which materializes scores. */
  fused: boolean;
}

async function use(name: string): Promise<void> {
  if (!(await tf.setBackend(name))) throw new Error(`tfjs backend ${name} failed to initialize`);
  await tf.ready();
}

export const NODE_BACKENDS: ReliabilityBackend[] = [
  {name: 'cpu', setUp: () => use('cpu'), tolerance: FUZZ_TOLERANCES.cpu, default: true, fused: true},
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
  // webgpu in node (Dawn): add a row here once kernels/webgpu lands, e.g.
  // {name: 'webgpu', setUp: async () => { /* install navigator.gpu from the `webgpu` package */ await use('webgpu'); },
  //  tolerance: FUZZ_TOLERANCES.webgpu, default: false, fused: true},
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
