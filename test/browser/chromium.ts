/**
 * Launches Debian's headless Chromium through playwright-core (never a Playwright-downloaded browser) with a fresh
 * profile, software rendering, and no background network traffic.
 *
 *   angle 'swiftshader': WebGL2 (and WebGPU) on SwiftShader, Chromium's bundled CPU renderer — the default.
 *   angle 'gl-egl':      WebGL2 through ANGLE's GL backend on Mesa's llvmpipe (needs libgl1-mesa-dri): the renderer
 *                        that silently stops loops after 65,535 iterations, so kernels are tested on it too.
 */
import {existsSync, mkdtempSync, rmSync} from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {chromium, type BrowserContext, type Page} from 'playwright-core';

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

export type AngleBackend = 'swiftshader' | 'gl-egl';

export interface BrowserSession {
  readonly context: BrowserContext;
  readonly page: Page;
  /** Console messages the page printed so far (type: text). */
  readonly consoleMessages: string[];
  close(): Promise<void>;
}

export function chromiumAvailable(): boolean {
  return existsSync(CHROMIUM_PATH);
}

/** A missing browser fails under CI=true and skips elsewhere (the reason is printed). */
export function browserMissingReason(): string | null {
  if (chromiumAvailable()) return null;
  const reason = `${CHROMIUM_PATH} not found: run scripts/setup-chromium.sh`;
  if (process.env.CI === 'true') throw new Error(reason);
  return reason;
}

/** In a mocha hook: skips the suite, saying why, when Chromium is missing (in CI, browserMissingReason throws). */
export function skipWithoutChromium(hook: {skip(): void}): void {
  const missing = browserMissingReason();
  if (missing == null) return;
  console.log(`    skipped: ${missing}`);
  hook.skip();
}

export function chromiumArgs(angle: AngleBackend): string[] {
  const args = [
    '--no-sandbox',
    `--use-angle=${angle}`,
    '--enable-unsafe-webgpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-quic',
    '--no-first-run',
    '--disable-gpu-watchdog',
  ];
  if (angle === 'swiftshader') args.push('--enable-unsafe-swiftshader');
  else args.push('--ignore-gpu-blocklist');
  return args;
}

export async function launchChromium(angle: AngleBackend = 'swiftshader'): Promise<BrowserSession> {
  const userDataDir = mkdtempSync(path.join(os.tmpdir(), 'tfjs-attention-chromium-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM_PATH,
      headless: true,
      args: chromiumArgs(angle),
      timeout: 60_000,
    });
  } catch (e) {
    rmSync(userDataDir, {recursive: true, force: true});
    throw e;
  }
  const page = context.pages()[0] ?? await context.newPage();
  page.setDefaultTimeout(0);
  const consoleMessages: string[] = [];
  page.on('console', (m) => consoleMessages.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => consoleMessages.push(`pageerror: ${e.message}`));
  return {
    context, page, consoleMessages,
    close: async () => {
      await context.close().catch(() => undefined);
      rmSync(userDataDir, {recursive: true, force: true});
    },
  };
}
