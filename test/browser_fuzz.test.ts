/**
 * The fuzz (test/fuzz.ts) in headless Chromium, through the bundles users load: webgl (WebGL2 on SwiftShader) and
 * webgpu (WebGPU on SwiftShader). The property runs inside the page (test/browser/fuzz_page.ts), webgpu cases inside
 * validation / out-of-memory error scopes; fixed seed, shrunk to a minimal case on failure (test/fuzz_runner.ts).
 * Few head sizes (GPU_QUICK_FUZZ): every head-size class and option set is a new GPU program to compile.
 *
 * Tolerances FUZZ_TOLERANCES.webgl and .webgpu (test/tolerances.ts). FUZZ_SEED, BROWSER_FUZZ_RUNS (webgl) and
 * BROWSER_WEBGPU_FUZZ_RUNS override seed and runs; FUZZ_VERBOSE=1 prints every case. The long run is
 * `npm run fuzz -- --backend webgl` (or webgpu-chromium, webgl-llvmpipe).
 */
import {skipWithoutChromium} from './browser/chromium.js';
import {FuzzPage, openFuzzPage} from './browser/fuzz_page.js';
import {FUZZ_TOLERANCES, GPU_QUICK_FUZZ} from './fuzz.js';
import {describeFuzz} from './fuzz_runner.js';

const RUNS: Record<string, number> = {
  webgl: Number(process.env.BROWSER_FUZZ_RUNS ?? 16),
  // SwiftShader's WebGPU compiles each new pipeline for one to two minutes on a loaded machine (8 runs: 520 s).
  webgpu: Number(process.env.BROWSER_WEBGPU_FUZZ_RUNS ?? 4),
};

// Both draw every option (the bias backward that once took SwiftShader's compiler > 15 min is fixed: bench/NOTES.md).
const CONFIG = {webgl: GPU_QUICK_FUZZ, webgpu: GPU_QUICK_FUZZ};

for (const backend of ['webgl', 'webgpu'] as const) {
  let page: FuzzPage | null = null;
  describeFuzz({
    label: `${backend} in Chromium (SwiftShader)`, runs: RUNS[backend], config: CONFIG[backend],
    tolerance: FUZZ_TOLERANCES[backend], timeout: 1_800_000,
    setUp: async (ctx) => {
      skipWithoutChromium(ctx);
      page = await openFuzzPage(backend, {angle: 'swiftshader'});
      console.log(`    renderer: ${page.page.info.renderer}`);
    },
    tearDown: async () => {
      await page?.close();
    },
    run: ({onCase, ...opts}) => page!.run({...opts, onCase: (c) => onCase(c.name, c.errors, c.failures)}),
  });
}
