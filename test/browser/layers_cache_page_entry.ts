/**
 * Page-side runner of test/layers_cache_checks.ts (bundled into the global `layersCacheChecks`, loaded next to
 * page_entry.ts in a page opened by attention_page.ts): runs one check by name on the page's `tf` and
 * `tfEfficientAttention` (the bundle users load).
 */
import type {Lib, Tf} from '../check_case.js';
import {LAYER_CACHE_CHECKS} from '../layers_cache_checks.js';

declare const tf: Tf;
declare const tfEfficientAttention: Lib;

/** null when the check passes, else its error message. */
export async function runCheck(name: string): Promise<string | null> {
  const check = LAYER_CACHE_CHECKS[name];
  if (check == null) throw new Error(`no layer cache check ${name}`);
  try {
    await check(tf, tfEfficientAttention);
    return null;
  } catch (e) {
    return (e as Error).message ?? String(e);
  }
}
