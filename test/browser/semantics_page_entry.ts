/**
 * Page-side semantics runner (bundled by semantics_page.ts into the global `attentionSemantics`, loaded next to
 * page_entry.ts's `attentionTests` in a page opened by attention_page.ts): declares test/semantics_checks.ts's checks
 * on the page's `tf` and `tfEfficientAttention` (the bundle users load) with a collecting Registrar, and runs one by
 * its path (describe titles and test title, joined by ' > ').
 */
import {Lib, Tf} from '../check_case.js';
import {defineSemanticsChecks} from '../semantics_checks.js';

declare const tf: Tf;
declare const tfEfficientAttention: Lib;

let checks: Map<string, () => Promise<void>> | null = null;

function collect(): Map<string, () => Promise<void>> {
  const found = new Map<string, () => Promise<void>>();
  const path: string[] = [];
  const add = (title: string, fn: () => Promise<void>) => found.set([...path, title].join(' > '), fn);
  defineSemanticsChecks(tf, tfEfficientAttention, {
    backend: tf.getBackend(),
    describe: (title, body) => {
      path.push(title);
      try {
        body();
      } finally {
        path.pop();
      }
    },
    it: add,
    itOn: add,
  });
  return found;
}

/** The paths of every check, in declaration order. */
export function semanticsChecks(): string[] {
  checks ??= collect();
  return [...checks.keys()];
}

/** Runs one check; null when it passes, else the failure's message (chai's, with the expected/actual diff). */
export async function runSemanticsCheck(pathKey: string): Promise<string | null> {
  checks ??= collect();
  const fn = checks.get(pathKey);
  if (fn == null) throw new Error(`no semantics check ${pathKey}`);
  try {
    await fn();
    return null;
  } catch (e) {
    const err = e as {message?: string; actual?: unknown; expected?: unknown};
    const diff = err.actual !== undefined || err.expected !== undefined ?
        `\nactual:   ${JSON.stringify(err.actual)}\nexpected: ${JSON.stringify(err.expected)}` : '';
    return `${err.message ?? String(e)}${diff}`;
  }
}
