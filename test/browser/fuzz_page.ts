/**
 * Node-side driver of the fuzz run in headless Chromium: opens an attention page (attention_page.ts) on `backend`,
 * adds the page-side fuzz runner (fuzz_page_entry.ts, bundled with fast-check and the float64 reference into
 * .cache/browser/attention-fuzz.js), runs it, and forwards its per-case progress lines to `onCase`.
 * Used by test/browser_fuzz.test.ts (quick, fixed seed) and scripts/fuzz.ts (--backend webgl / webgpu-chromium).
 */
import type {FuzzConfig, FuzzReport, FuzzTolerance} from '../fuzz.js';
import {AttentionPage, openAttentionPageWithBundle, PageOptions} from './attention_page.js';
import type {PageFuzzOptions, PageFuzzProgress} from './fuzz_page_entry.js';

const PROGRESS_PREFIX = '[fuzz] ';  // fuzz_page_entry.ts's (not imported: that module is written for the page)

export interface BrowserFuzzOptions {
  seed: number;
  numRuns: number;
  config: FuzzConfig;
  tolerance: FuzzTolerance;
  onCase?: (progress: PageFuzzProgress) => void;
}

/** A page with the fuzz runner loaded; runs any number of fuzz runs, then close(). */
export interface FuzzPage {
  readonly page: AttentionPage;
  run(opts: BrowserFuzzOptions): Promise<FuzzReport>;
  close(): Promise<void>;
}

export async function openFuzzPage(backend: string, options: PageOptions = {}): Promise<FuzzPage> {
  const page = await openAttentionPageWithBundle(backend, options, 'test/browser/fuzz_page_entry.ts', 'attention-fuzz.js',
                                                 'attentionFuzz');
  let listener: ((progress: PageFuzzProgress) => void) | undefined;
  page.session.page.on('console', (m) => {
    const text = m.text();
    if (listener != null && text.startsWith(PROGRESS_PREFIX)) listener(JSON.parse(text.slice(PROGRESS_PREFIX.length)));
  });
  return {
    page,
    run: async ({onCase, ...opts}) => {
      listener = onCase;
      try {
        return await page.session.page.evaluate(
            (o) => (globalThis as any).attentionFuzz.runPageFuzz(o),  // eslint-disable-line
            opts as PageFuzzOptions) as FuzzReport;
      } finally {
        listener = undefined;
      }
    },
    close: () => page.close(),
  };
}
