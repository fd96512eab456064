/**
 * Mocha glue for the fuzz property (test/fuzz.ts): one `describe` per backend with a fixed seed, a few runs, the
 * backend's row of FUZZ_TOLERANCES, progress lines with FUZZ_VERBOSE=1 and the shrunk case on failure. The thin
 * runners: test/fuzz.test.ts (node: cpu, wasm), test/webgpu_fuzz.test.ts (Dawn in node), test/browser_fuzz.test.ts
 * (Chromium); scripts/fuzz.ts is the long, randomly seeded run. FUZZ_SEED overrides the seed.
 */
import {expect} from 'chai';
import type {CaseResult} from './check_case.js';
import {formatFailure, formatMaxErrors, FuzzConfig, FuzzReport, FuzzTolerance} from './fuzz.js';

export const FUZZ_SEED = Number(process.env.FUZZ_SEED ?? 20240601);

/** One executed case, as any runner reports it (node's runFuzz and the page's progress lines alike). */
export type OnFuzzCase = (name: string, errors: CaseResult['errors'] | null, failures: string[]) => void;

export interface FuzzSuite {
  /** The describe title's backend, e.g. 'webgpu in node'. */
  label: string;
  runs: number;
  config: FuzzConfig;
  tolerance: FuzzTolerance;
  /** Mocha timeout of the suite (GPU runners compile pipelines on software drivers). */
  timeout?: number;
  /** Makes the backend ready (may skip the suite); `tearDown` closes what it opened. */
  setUp: (ctx: Mocha.Context) => Promise<void>;
  tearDown?: () => Promise<void>;
  /** Runs the property with these options on the backend (runFuzz in node, a page's run in Chromium). */
  run: (opts: {seed: number; numRuns: number; config: FuzzConfig; tolerance: FuzzTolerance; onCase: OnFuzzCase}) =>
      Promise<FuzzReport>;
}

export function describeFuzz(suite: FuzzSuite): void {
  const {tolerance: tol} = suite;
  describe(`fuzz on ${suite.label} (seed ${FUZZ_SEED}, ${suite.runs} runs, tolerance fwd ${tol.forward}, grad ${
               tol.gradients})`, function() {
    if (suite.timeout != null) this.timeout(suite.timeout);
    before(async function() {
      await suite.setUp(this);
    });
    after(async () => {
      await suite.tearDown?.();
    });

    it('output, lse, dq, dk, dv, dBias match the float64 reference', async () => {
      const start = Date.now();
      let executed = 0;
      const report = await suite.run({
        seed: FUZZ_SEED, numRuns: suite.runs, config: suite.config, tolerance: tol,
        onCase: (name, errors, failures) => {
          executed++;
          if (process.env.FUZZ_VERBOSE) {
            console.log(`      ${failures.length ? 'FAIL' : 'ok  '} ${((Date.now() - start) / 1000).toFixed(1)} s ${
                name}${failures.length ? `: ${failures.join('; ')}` : ''}`);
          }
        },
      });
      console.log(`      ${report.numRuns} runs (${executed} cases with shrinking) in ${
          ((Date.now() - start) / 1000).toFixed(0)} s; max errors ${formatMaxErrors(report)}`);
      expect(report.failed, formatFailure(report, suite.label)).to.equal(false);
    });
  });
}
