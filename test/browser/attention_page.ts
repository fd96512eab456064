/**
 * Node-side driver of the browser test page: starts the static server and Chromium, loads tfjs, the library bundle
 * and the page test code, selects a backend, and runs cases in the page. Generic over the tfjs backend name, so the
 * same harness serves webgl and webgpu rows (and the benchmarks reuse the server and browser launcher).
 */
import {expect} from 'chai';
import type {AttentionCase} from '../cases.js';
import {CASES} from '../cases.js';
import type {CaseResult} from '../check_case.js';
import {caseSeed, assertCaseResult, Tolerances} from '../shared_runner.js';
import {bundleForPage, libraryBundle, REPO_ROOT, testBundle} from './bundle.js';
import {AngleBackend, BrowserSession, launchChromium, skipWithoutChromium} from './chromium.js';
import type {DropoutProbe, PageInfo} from './page_entry.js';
import {startStaticServer, StaticServer} from './server.js';

export interface PageOptions {
  /** ANGLE backend of Chromium's GL: 'swiftshader' (default) or 'gl-egl' (Mesa llvmpipe). */
  angle?: AngleBackend;
  /** Force a WebGL version before the webgl backend starts (1 tests the WebGL1 fallback). */
  webglVersion?: number;
  /** tfjs flags set in the page before the backend starts (e.g. ATTENTION_WEBGL_MULTI_TARGET: false). */
  flags?: Record<string, boolean | number>;
}

export interface AttentionPage {
  readonly info: PageInfo;
  readonly session: BrowserSession;
  runCase(c: AttentionCase, seed: number): Promise<CaseResult>;
  kernelsOfCase(c: AttentionCase): Promise<string[]>;
  /** page_entry.ts's dropoutKeptMask: the keep mask the kernels applied, 0/1 in (b, h, i, j) order. */
  dropoutKeptMask(p: DropoutProbe): Promise<number[]>;
  /** page_entry.ts's queryOffsetsClampDifference. */
  queryOffsetsClampDifference(): Promise<number>;
  /** page_entry.ts's maskNaNDifference. */
  maskNaNDifference(): Promise<number>;
  close(): Promise<void>;
}

const TF_SCRIPTS: Record<string, string[]> = {
  webgl: ['/node_modules/@tensorflow/tfjs/dist/tf.min.js'],
  webgpu: ['/node_modules/@tensorflow/tfjs/dist/tf.min.js',
           '/node_modules/@tensorflow/tfjs-backend-webgpu/dist/tf-backend-webgpu.min.js'],
};

/** openAttentionPage plus one more page bundle (bundleForPage's entry, file and global name) loaded into it. */
export async function openAttentionPageWithBundle(
    backend: string, options: PageOptions, entry: string, fileName: string, globalName: string): Promise<AttentionPage> {
  const bundle = await bundleForPage(entry, fileName, globalName);
  const page = await openAttentionPage(backend, options);
  try {
    await page.session.page.addScriptTag({url: `/${bundle}`});
  } catch (e) {
    await page.close();
    throw e;
  }
  return page;
}

/** Opens a page with tfjs on `backend`, the library and the page test code loaded. */
export async function openAttentionPage(backend: string, options: PageOptions = {}): Promise<AttentionPage> {
  const [library, tests] = await Promise.all([libraryBundle(), testBundle()]);
  const server: StaticServer = await startStaticServer(REPO_ROOT);
  let session: BrowserSession | null = null;
  try {
    session = await launchChromium(options.angle ?? 'swiftshader');
    const page = session.page;
    // tsx/esbuild's keepNames helper, in case a transpiled callback reaches the page.
    await page.addInitScript('globalThis.__name = (f) => f;');
    await page.goto(`${server.url}/test/browser/blank.html`);
    for (const script of [...(TF_SCRIPTS[backend] ?? TF_SCRIPTS.webgl), `/${library}`, `/${tests}`]) {
      await page.addScriptTag({url: script});
    }
    const info = await page.evaluate(
        ([name, version, flags]) => (globalThis as any).attentionTests.useBackend(  // eslint-disable-line
            name, version ?? undefined, flags),
        [backend, options.webglVersion ?? null, options.flags ?? {}] as const) as PageInfo;
    if (info.backend !== backend) throw new Error(`page runs tfjs backend ${info.backend}, not ${backend}`);
    const s = session;
    const call = <T>(fn: string, ...args: unknown[]) => s.page.evaluate(
        ([f, a]) => (globalThis as any).attentionTests[f as string](...(a as unknown[])),  // eslint-disable-line
        [fn, args] as const) as Promise<T>;
    return {
      info, session,
      runCase: (c, seed) => call<CaseResult>('runCase', c, seed),
      kernelsOfCase: (c) => call<string[]>('kernelsOfCase', c),
      dropoutKeptMask: (p) => call<number[]>('dropoutKeptMask', p),
      queryOffsetsClampDifference: () => call<number>('queryOffsetsClampDifference'),
      maskNaNDifference: () => call<number>('maskNaNDifference'),
      close: async () => {
        await s.close();
        await server.close();
      },
    };
  } catch (e) {
    await session?.close();
    await server.close();
    throw e;
  }
}

/**
 * One mocha `describe` that runs the shared cases (those `filter` keeps) in Chromium on `backend`, asserting each
 * CaseResult with the shared tolerances (as describeSharedCases does in node). Without /usr/bin/chromium the suite
 * is skipped, or fails under CI=true. Returns nothing; `extra(getPage)` may register more tests in the same page.
 */
export function runSharedCasesInBrowser(
    backend: string, tol: Tolerances, filter: (c: AttentionCase) => boolean, options: PageOptions = {},
    extra?: (page: () => AttentionPage) => void): void {
  const label = `${backend} in Chromium (${options.angle ?? 'swiftshader'})`;
  describe(`${label}: shared cases (tolerance fwd ${tol.forward}, grad ${tol.gradients})`, function() {
    this.timeout(600_000);
    let page: AttentionPage | null = null;
    before(async function() {
      skipWithoutChromium(this);
      page = await openAttentionPage(backend, options);
      console.log(`    renderer: ${page.info.renderer} (MAX_TEXTURE_SIZE ${page.info.maxTextureSize ?? '-'})`);
    });
    after(async () => {
      await page?.close();
    });
    const current = () => {
      expect(page, 'browser page').to.not.equal(null);
      return page!;
    };
    CASES.forEach((c, index) => {
      if (!filter(c)) return;
      it(c.name, async () => assertCaseResult(await current().runCase(c, caseSeed(index)), tol, c));
    });
    extra?.(current);
  });
}
