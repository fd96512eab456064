/**
 * Page-side runner of test/generation_checks.ts (bundled into the global `generationChecks`, loaded next to
 * page_entry.ts in a page opened by attention_page.ts): runs one check by name on the page's `tf` and
 * `tfEfficientAttention` (the bundle users load), and names the kernel UpdateKVCache runs on.
 */
import type {Lib, Tf} from '../check_case.js';
import {GENERATION_CHECKS} from '../generation_checks.js';

declare const tf: Tf;
declare const tfEfficientAttention: Lib;

export function checkNames(): string[] {
  return Object.keys(GENERATION_CHECKS);
}

/** null when the check passes, else its error message. */
export async function runCheck(name: string): Promise<string | null> {
  const check = GENERATION_CHECKS[name];
  if (check == null) throw new Error(`no generation check ${name}`);
  try {
    await check(tf, tfEfficientAttention);
    return null;
  } catch (e) {
    return (e as Error).message ?? String(e);
  }
}

/** The kernels one updateKVCache call runs (tf.profile). */
export async function updateKernels(): Promise<string[]> {
  const cache = tf.zeros([2, 8, 2, 4]), update = tf.ones([2, 1, 2, 4]);
  const info = await tf.profile(async () => {
    const out = tfEfficientAttention.updateKVCache(cache, update, [3, 7]);
    await out.data();
    out.dispose();
  });
  tf.dispose([cache, update]);
  return info.kernelNames;
}
