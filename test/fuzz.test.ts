/**
 * Quick fixed-seed fuzz run in `npm test`: ~40 random small cases per backend against the float64 reference,
 * shrunk to a minimal case on failure. The long, randomly seeded run is `npm run fuzz` (scripts/fuzz.ts).
 * FUZZ_SEED / FUZZ_RUNS override the seed and the number of runs.
 */
import * as tf from '@tensorflow/tfjs-core';
import {expect} from 'chai';
import * as lib from '../src/index.js';
import {checkCase} from './check_case.js';
import {formatFailure, QUICK_FUZZ, runFuzz} from './fuzz.js';
import {selectedBackends} from './reliability_backends.js';

const SEED = Number(process.env.FUZZ_SEED ?? 20240601);
const RUNS = Number(process.env.FUZZ_RUNS ?? 40);

for (const backend of selectedBackends()) {
  describe(`fuzz on ${backend.name} (seed ${SEED}, ${RUNS} runs, tolerance fwd ${backend.tolerance.forward}, grad ${
               backend.tolerance.gradients})`, () => {
    before(() => backend.setUp());
    it('output, lse, dq, dk, dv match the float64 reference', async () => {
      const guard = backend.guard;
      const check = guard && ((c: Parameters<typeof checkCase>[2], seed: number) => guard(() => checkCase(tf, lib, c, seed)));
      const report = await runFuzz(tf, lib, {seed: SEED, numRuns: RUNS, config: QUICK_FUZZ, tolerance: backend.tolerance,
                                             check});
      expect(report.failed, formatFailure(report, backend.name)).to.equal(false);
    });
  });
}
