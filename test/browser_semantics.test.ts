/**
 * The NaN / Inf semantics of RELIABILITY.md on the webgl kernels, in headless Chromium (WebGL2 on SwiftShader): the
 * same checks and cases as test/semantics.test.ts (cpu, wasm, webgpu in node), from test/semantics_checks.ts, run
 * inside the page against the library bundle users load (test/browser/semantics_page.ts) and compared there with the
 * float64 reference. Without /usr/bin/chromium the suite is skipped, or fails under CI=true (as test/browser.test.ts).
 * About a minute on SwiftShader. SEMANTICS_ANGLE=gl-egl runs it on Mesa llvmpipe instead.
 */
import * as tf from '@tensorflow/tfjs-core';
import * as lib from '../src/index.js';
import {AngleBackend, skipWithoutChromium} from './browser/chromium.js';
import {openSemanticsPage, SemanticsPage} from './browser/semantics_page.js';
import {FUZZ_TOLERANCES} from './fuzz.js';
import {itOn, ReliabilityBackend} from './reliability_backends.js';
import {defineSemanticsChecks} from './semantics_checks.js';

/**
 * Checks known to fail on webgl, by exact title, with the reason (as semantics.test.ts's KNOWN_FAILURES): registered
 * as pending; RELIABILITY_RUN_PENDING=1 runs them. Remove an entry once the webgl kernels are fixed.
 */
const KNOWN_FAILURES: Record<string, string> = {};

const WEBGL: ReliabilityBackend = {
  name: 'webgl', setUp: async () => undefined, tolerance: FUZZ_TOLERANCES.webgl, default: false, fused: true,
  pending: KNOWN_FAILURES,
};

const ANGLE = (process.env.SEMANTICS_ANGLE ?? 'swiftshader') as AngleBackend;

describe(`semantics on webgl in Chromium (${ANGLE})`, function() {
  this.timeout(600_000);
  let page: SemanticsPage | null = null;
  before(async function() {
    skipWithoutChromium(this);
    page = await openSemanticsPage('webgl', {angle: ANGLE});
    console.log(`    renderer: ${page.page.info.renderer}`);
  });
  after(async () => {
    await page?.close();
  });

  // The same declarations as in the page: each test runs the page's check of the same path.
  const path: string[] = [];
  const inPage = (title: string) => {
    const key = [...path, title].join(' > ');
    return async () => {
      const failure = await page!.run(key);
      if (failure != null) throw new Error(failure);
    };
  };
  defineSemanticsChecks(tf, lib, {
    backend: WEBGL.name,
    describe: (title, body) => describe(title, () => {
      path.push(title);
      try {
        body();
      } finally {
        path.pop();
      }
    }),
    it: (title) => it(title, inPage(title)),
    itOn: (title) => itOn(WEBGL, title, inPage(title)),
  });
});
