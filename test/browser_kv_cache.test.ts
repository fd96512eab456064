/**
 * updateKVCache (the dedicated webgl and webgpu kernels), rotaryEmbedding and decoding with a KV cache
 * (test/generation_checks.ts) in headless Chromium — WebGL2 and WebGPU on SwiftShader — against the library bundle
 * users load. Also WebGL1, where the UpdateKVCache program (a plain tfjs GPGPUProgram) runs as well. Without
 * /usr/bin/chromium the suites are skipped, or fail under CI=true (as test/browser.test.ts).
 */
import {expect} from 'chai';
import {AttentionPage, openAttentionPageWithBundle, PageOptions} from './browser/attention_page.js';
import {skipWithoutChromium} from './browser/chromium.js';
import {GENERATION_CHECKS} from './generation_checks.js';

function describeInChromium(backend: string, options: PageOptions, label: string): void {
  describe(`generation pieces on ${backend} in Chromium (${label})`, function() {
    this.timeout(600_000);
    let page: AttentionPage | null = null;
    const call = <T>(fn: string, ...args: unknown[]) => page!.session.page.evaluate(
        ([f, a]) => (globalThis as any).generationChecks[f as string](...(a as unknown[])),  // eslint-disable-line
        [fn, args] as const) as Promise<T>;
    before(async function() {
      skipWithoutChromium(this);
      page = await openAttentionPageWithBundle(backend, options, 'test/browser/generation_page_entry.ts',
                                               'generation-checks.js', 'generationChecks');
      console.log(`    renderer: ${page.info.renderer}`);
    });
    after(async () => {
      await page?.close();
    });
    it('runs the dedicated UpdateKVCache kernel (one kernel, no composite ops)', async () => {
      expect(await call<string[]>('updateKernels')).to.deep.equal(['UpdateKVCache']);
    });
    for (const name of Object.keys(GENERATION_CHECKS)) {
      it(name, async () => {
        const failure = await call<string | null>('runCheck', name);
        if (failure != null) throw new Error(failure);
      });
    }
  });
}

describeInChromium('webgl', {angle: 'swiftshader'}, 'WebGL2, SwiftShader');
describeInChromium('webgl', {angle: 'swiftshader', webglVersion: 1}, 'WebGL1, SwiftShader');
describeInChromium('webgpu', {angle: 'swiftshader'}, 'WebGPU, SwiftShader');
