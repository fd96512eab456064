/**
 * Runs jobs in headless Chromium (test/browser's harness: Debian's chromium through playwright-core, a static
 * server on the repository): the suite's measurement code is bundled with tfjs-core, the webgl and webgpu backends
 * and the library into one script (esbuild, into .cache/bench/), loaded by bench/suite/browser.html.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import {fileURLToPath} from 'node:url';
import type {Job, JobResult} from './measure.js';
import {BackendRunner, failed} from './node_runner.js';
import {BackendInfo, SOFTWARE_ADAPTER} from './node_worker.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const BUNDLE = path.join(ROOT, '.cache', 'bench', 'browser_bench.js');

interface Session {
  page: import('playwright-core').Page;
  close(): Promise<void>;
}

async function buildBundle(): Promise<void> {
  const esbuild = await import('esbuild');
  await esbuild.build({
    entryPoints: [path.join(ROOT, 'bench', 'suite', 'browser_entry.ts')],
    bundle: true, format: 'iife', target: 'es2020', outfile: BUNDLE, logLevel: 'warning',
    define: {'process.env.NODE_ENV': '"production"'},
  });
}

export class BrowserRunner implements BackendRunner {
  private session: Session | null = null;
  private server: {url: string; close(): Promise<void>} | null = null;

  /** backend: 'browser-webgl' | 'browser-webgpu'; tfBackend: the tfjs backend name in the page. */
  constructor(readonly backend: string, private readonly tfBackend: string) {}

  async start(): Promise<BackendInfo | {unavailable: string}> {
    const harness = path.join(ROOT, 'test', 'browser', 'chromium.ts');
    if (!fs.existsSync(harness)) return {unavailable: 'test/browser/chromium.ts (the browser harness) is missing'};
    const chromium = await import('../../test/browser/chromium.js');
    const {startStaticServer} = await import('../../test/browser/server.js');
    const missing = (() => {
      try {
        return chromium.browserMissingReason();
      } catch (e) {
        return (e as Error).message;
      }
    })();
    if (missing != null) return {unavailable: missing};
    await buildBundle();
    this.server = await startStaticServer(ROOT);
    try {
      this.session = await chromium.launchChromium('swiftshader');
      const page = this.session.page;
      await page.goto(`${this.server.url}/bench/suite/browser.html`);
      await page.waitForFunction(() => (globalThis as {benchReady?: boolean}).benchReady === true, null,
                                 {timeout: 60_000});
      const r = await page.evaluate(async (b) => (globalThis as unknown as BenchPage).benchInit(b), this.tfBackend);
      if (typeof r === 'string') {
        await this.close();
        return {unavailable: r};
      }
      return {...r, backend: this.backend, softwareAdapter: SOFTWARE_ADAPTER.test(r.adapter ?? r.description)};
    } catch (e) {
      await this.close();
      return {unavailable: `Chromium: ${(e as Error).message.split('\n')[0]}`};
    }
  }

  async run(job: Job): Promise<JobResult> {
    if (this.session == null) return failed(job, 'browser not started');
    try {
      return await this.session.page.evaluate(async (j) => (globalThis as unknown as BenchPage).benchRun(j), job);
    } catch (e) {
      const message = (e as Error).message.split('\n')[0];
      // A crashed page (GPU process lost, out of memory) is restarted for the next job.
      await this.close();
      const restarted = await this.start();
      if ('unavailable' in restarted) this.session = null;
      return failed(job, `browser: ${message}`);
    }
  }

  async close(): Promise<void> {
    await this.session?.close().catch(() => undefined);
    this.session = null;
    await this.server?.close().catch(() => undefined);
    this.server = null;
  }
}

/** What bench/suite/browser_entry.ts puts on the page's globalThis. */
export interface BenchPage {
  benchReady: boolean;
  benchInit(backend: string): Promise<BackendInfo | string>;
  benchRun(job: Job): Promise<JobResult>;
}
