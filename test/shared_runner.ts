/**
 * Mocha glue for the shared case table: one `describe` per backend, each case asserted against the reference.
 * Inputs are random and fresh every run; the seed is printed so a failure can be replayed with TEST_SEED=<seed>.
 */
import {expect} from 'chai';
import {AttentionCase, CASES, hasTag} from './cases.js';
import type {CaseResult} from './check_case.js';
import {caseFailures, roundingFloor} from './rounding_floor.js';
import {BackendName, Tolerances, TOLERANCES} from './tolerances.js';

export const BASE_SEED = Number(process.env.TEST_SEED ?? Math.floor(Math.random() * 1e9));
let printed = false;

export function caseSeed(index: number): number {
  if (!printed) {
    console.log(`    shared cases: TEST_SEED=${BASE_SEED}`);
    printed = true;
  }
  return BASE_SEED + 1000 * index;
}

export type {Tolerances} from './tolerances.js';

/**
 * The case's errors within the backend's tolerance. With the case `c`, lse, dq, dk and dBias over their relative
 * tolerance also pass when their absolute error is within the case's fp32 rounding floor (test/rounding_floor.ts, the
 * fuzzers' rule): where the exact value is ~0 (a one-key row's dS = dP − D, say), the relative error measures only
 * rounding. Output and dv are always strictly relative.
 */
export function assertCaseResult(r: CaseResult, tol: Tolerances, c?: AttentionCase): void {
  // caseFailures lists the problems, every error over its tolerance (and floor) and leaked tensors.
  const rounding = c != null ? {floor: roundingFloor(c), maxRef: r.maxReference} : undefined;
  expect(caseFailures(r, tol, rounding), `${r.name} (seed ${r.seed}): errors ${JSON.stringify(r.errors)}`)
      .to.deep.equal([]);
}

/**
 * Registers one mocha test per case that `filter` selects; `run` executes a case on the backend under test. Node
 * runners: the cases tagged 'browser' (sized for the Chromium runners' GPU traps) are left out.
 */
export function describeSharedCases(
    title: string, tol: Tolerances, run: (c: AttentionCase, seed: number) => Promise<CaseResult>,
    filter: (c: AttentionCase) => boolean = () => true): void {
  describe(`${title}: shared cases (tolerance fwd ${tol.forward}, grad ${tol.gradients})`, () => {
    CASES.forEach((c, index) => {
      if (hasTag(c, 'browser') || !filter(c)) return;
      it(c.name, async () => assertCaseResult(await run(c, caseSeed(index)), tol, c));
    });
  });
}

/**
 * tfjs's describeWithFlags for the shared table: the cases on one backend at that backend's row of the tolerance
 * table (test/tolerances.ts). `title` tells runners of the same backend apart (e.g. 'webgl (Chromium)').
 */
export function describeBackendCases(
    backend: BackendName, run: (c: AttentionCase, seed: number) => Promise<CaseResult>,
    filter: (c: AttentionCase) => boolean = () => true, title: string = backend): void {
  describeSharedCases(title, TOLERANCES[backend], run, filter);
}
