/**
 * Page-side fuzz runner (bundled by fuzz_page.ts into the global `attentionFuzz`, loaded next to page_entry.ts's
 * `attentionTests` in a page opened by attention_page.ts). Runs test/fuzz.ts's property on the page's tfjs backend
 * against the library bundle users load, and prints one `[fuzz] {json}` console line per executed case, which the
 * node side reads for progress. On webgpu every case runs inside validation / out-of-memory error scopes, as
 * test/webgpu_env.ts does in node (both through test/gpu_error_scopes.ts).
 */
import type {AttentionCase} from '../cases.js';
import {CaseResult, checkCase, Lib, Tf} from '../check_case.js';
import {FuzzConfig, FuzzReport, FuzzTolerance, runFuzz} from '../fuzz.js';
import {withErrorScopes} from '../gpu_error_scopes.js';

declare const tf: Tf;
declare const tfEfficientAttention: Lib;

export const PROGRESS_PREFIX = '[fuzz] ';

export interface PageFuzzOptions {
  seed: number;
  numRuns: number;
  config: FuzzConfig;
  tolerance: FuzzTolerance;
}

/** One line per executed case (also while shrinking). */
export interface PageFuzzProgress {
  name: string;
  ok: boolean;
  errors: CaseResult['errors'] | null;
  failures: string[];
}

function withWebGPUErrorScopes<T>(fn: () => Promise<T>): Promise<T> {
  return withErrorScopes((tf.backend() as unknown as {device: GPUDevice}).device, fn);
}

export async function runPageFuzz(opts: PageFuzzOptions): Promise<FuzzReport> {
  const lib = tfEfficientAttention;
  const webgpu = tf.getBackend() === 'webgpu';
  const check = (c: AttentionCase, seed: number) =>
      webgpu ? withWebGPUErrorScopes(() => checkCase(tf, lib, c, seed)) : checkCase(tf, lib, c, seed);
  return runFuzz(tf, lib, {
    ...opts, check,
    onCase: (c, r, failures) => {
      const line: PageFuzzProgress = {name: c.case.name, ok: failures.length === 0, errors: r?.errors ?? null, failures};
      console.log(PROGRESS_PREFIX + JSON.stringify(line));
    },
  });
}
