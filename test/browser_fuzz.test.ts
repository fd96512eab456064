/**
 * Quick fixed-seed fuzz in headless Chromium, through the bundles users load: webgl (WebGL2 on SwiftShader) and
 * webgpu (WebGPU on SwiftShader). Random cases of every op, mask, layout builder, GQA grouping, scale, softcap,
 * keyLengths and dLse against the float64 reference (test/fuzz.ts runs inside the page, test/browser/fuzz_page.ts),
 * shrunk to a minimal case on failure; webgpu cases run inside validation / out-of-memory error scopes.
 * Few head sizes (GPU_QUICK_FUZZ): every head-size class and option set is a new GPU program to compile.
 *
 * Tolerances FUZZ_TOLERANCES.webgl (2e-5 forward, 1e-4 gradients) and .webgpu (1e-5, 2e-4), see RELIABILITY.md.
 * FUZZ_SEED, BROWSER_FUZZ_RUNS (webgl) and BROWSER_WEBGPU_FUZZ_RUNS override seed and runs; FUZZ_VERBOSE=1 prints every
 * case. The long run is `npm run fuzz -- --backend webgl` (or webgpu-chromium, webgl-llvmpipe).
 */
import {expect} from 'chai';
import {skipWithoutChromium} from './browser/chromium.js';
import {FuzzPage, openFuzzPage} from './browser/fuzz_page.js';
import {formatFailure, FUZZ_TOLERANCES, GPU_QUICK_FUZZ} from './fuzz.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20240601);
const RUNS: Record<string, number> = {
  webgl: Number(process.env.BROWSER_FUZZ_RUNS ?? 16),
  // SwiftShader's WebGPU compiles each new pipeline for one to two minutes on a loaded machine (8 runs: 520 s).
  webgpu: Number(process.env.BROWSER_WEBGPU_FUZZ_RUNS ?? 4),
};

for (const backend of ['webgl', 'webgpu']) {
  const tol = FUZZ_TOLERANCES[backend];
  describe(`fuzz on ${backend} in Chromium (SwiftShader; seed ${SEED}, ${RUNS[backend]} runs, tolerance fwd ${
               tol.forward}, grad ${tol.gradients})`, function() {
    this.timeout(1_800_000);
    let page: FuzzPage | null = null;
    before(async function() {
      skipWithoutChromium(this);
      page = await openFuzzPage(backend, {angle: 'swiftshader'});
      console.log(`    renderer: ${page.page.info.renderer}`);
    });
    after(async () => {
      await page?.close();
    });

    it('output, lse, dq, dk, dv match the float64 reference', async () => {
      const start = Date.now();
      let executed = 0;
      const report = await page!.run({
        seed: SEED, numRuns: RUNS[backend], config: GPU_QUICK_FUZZ, tolerance: tol,
        onCase: (c) => {
          executed++;
          if (process.env.FUZZ_VERBOSE) {
            console.log(`      ${c.ok ? 'ok  ' : 'FAIL'} ${((Date.now() - start) / 1000).toFixed(1)} s ${c.name}${
                c.ok ? '' : `: ${c.failures.join('; ')}`}`);
          }
        },
      });
      const maxErrors = Object.entries(report.maxErrors).map(([k, e]) => `${k} ${e.toExponential(1)}`).join(', ') +
          (report.passedByRoundingFloor ? `; ${report.passedByRoundingFloor} passed lse/dq/dk by the fp32 rounding floor` : '');
      console.log(`      ${report.numRuns} runs (${executed} cases reported) in ${
          ((Date.now() - start) / 1000).toFixed(0)} s; max errors ${maxErrors}`);
      expect(report.failed, formatFailure(report, `${backend} in Chromium`)).to.equal(false);
    });
  });
}
