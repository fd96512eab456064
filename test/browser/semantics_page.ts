/**
 * Node-side driver of the semantics checks in headless Chromium: opens an attention page (attention_page.ts) on
 * `backend`, adds the page-side runner (semantics_page_entry.ts, bundled with test/semantics_checks.ts, chai and the
 * float64 reference into .cache/browser/attention-semantics.js), and runs checks by path. Used by
 * test/browser_semantics.test.ts.
 */
import {AttentionPage, openAttentionPageWithBundle, PageOptions} from './attention_page.js';

export interface SemanticsPage {
  readonly page: AttentionPage;
  /** Runs the check at `path` (describe titles and test title joined by ' > '): null when it passes, else why not. */
  run(path: string): Promise<string | null>;
  close(): Promise<void>;
}

export async function openSemanticsPage(backend: string, options: PageOptions = {}): Promise<SemanticsPage> {
  const page = await openAttentionPageWithBundle(backend, options, 'test/browser/semantics_page_entry.ts',
                                                 'attention-semantics.js', 'attentionSemantics');
  return {
    page,
    run: (path) => page.session.page.evaluate(
        (p) => (globalThis as any).attentionSemantics.runSemanticsCheck(p),  // eslint-disable-line
        path) as Promise<string | null>,
    close: () => page.close(),
  };
}
