/**
 * The cached layers and the demo's Generate panel in headless Chromium (SwiftShader):
 *  - the checks of test/layers_cache_checks.ts (cached decoding == one full causal pass, 1e-5) on webgl and webgpu,
 *    against the library bundle users load;
 *  - the Generate panel of examples/browser (a short run: a few training steps, a few tokens, on webgl): it finishes,
 *    the cached logits equal the full pass (< 1e-4), the four decoders report a tokens/s and sample the same tokens,
 *    and decoding leaks no tensor.
 * Without /usr/bin/chromium the suites are skipped, or fail under CI=true (as test/browser.test.ts).
 */
import {expect} from 'chai';
import type {GenerateResult} from '../examples/browser/generate.js';
import {buildDemo, DEMO_DIR} from '../scripts/demo-browser.js';
import {AttentionPage, openAttentionPageWithBundle} from './browser/attention_page.js';
import {BrowserSession, launchChromium, skipWithoutChromium} from './browser/chromium.js';
import {startStaticServer, StaticServer} from './browser/server.js';
import {LAYER_CACHE_CHECKS} from './layers_cache_checks.js';

for (const backend of ['webgl', 'webgpu']) {
  describe(`layers with a KV cache on ${backend} in Chromium (SwiftShader)`, function() {
    this.timeout(600_000);
    let page: AttentionPage | null = null;
    before(async function() {
      skipWithoutChromium(this);
      page = await openAttentionPageWithBundle(backend, {angle: 'swiftshader'},
                                               'test/browser/layers_cache_page_entry.ts', 'layers-cache-checks.js',
                                               'layersCacheChecks');
    });
    after(async () => {
      await page?.close();
    });
    for (const name of Object.keys(LAYER_CACHE_CHECKS)) {
      it(name, async () => {
        const failure = await page!.session.page.evaluate(
            (n) => (globalThis as any).layersCacheChecks.runCheck(n), name) as string | null;  // eslint-disable-line
        if (failure != null) throw new Error(failure);
      });
    }
  });
}

describe('browser demo: the Generate panel in headless Chromium', function() {
  this.timeout(600_000);
  let server: StaticServer | null = null;
  let session: BrowserSession | null = null;

  before(async function() {
    skipWithoutChromium(this);
    await buildDemo();
    server = await startStaticServer(DEMO_DIR);
    session = await launchChromium('swiftshader');
    await session.page.goto(`${server.url}/index.html?backend=webgl&generateSteps=3&generateTokens=4`);
    await session.page.waitForSelector('body[data-ready="true"]', {timeout: 60_000});
  });

  after(async () => {
    await session?.close();
    await server?.close();
  });

  it('trains, checks the cache and reports tokens/s for the four decoders', async () => {
    const page = session!.page;
    await page.click('#generate');
    await page.waitForSelector('body[data-generate="done"], body[data-generate="error"]', {timeout: 540_000});
    const result = await page.evaluate(() => window.__generateResult) as GenerateResult | {error: string};
    if ('error' in result) throw new Error(`the panel failed: ${result.error}`);
    expect(result.backend).to.equal('webgl');
    expect(result.agreement).to.be.below(1e-4);
    expect(result.rows.map((r) => r.name)).to.deep.equal(
        ['flash + KV cache', 'flash, recompute prefix', 'naive + KV cache', 'naive, recompute prefix']);
    for (const row of result.rows) {
      expect(row.tokensPerSecond, row.name).to.be.above(0);
      expect(row.sameTokens, row.name).to.equal(true);
    }
    expect(result.tensorsLeaked).to.equal(0);
    expect(await page.locator('#generate-results tbody tr').count()).to.equal(4);
  });
});
