/**
 * The fuzz (test/fuzz.ts) on the node backends of test/reliability_backends.ts (cpu and wasm; RELIABILITY_BACKENDS
 * picks rows): ~40 random small cases per backend, fixed seed, shrunk to a minimal case on failure
 * (test/fuzz_runner.ts). FUZZ_SEED / FUZZ_RUNS override the seed and the number of runs. The long, randomly seeded run
 * is `npm run fuzz` (scripts/fuzz.ts). Also the fuzz's own tolerance logic (the fp32 rounding floor).
 */
import * as tf from '@tensorflow/tfjs-core';
import {expect} from 'chai';
import * as lib from '../src/index.js';
import type {AttentionCase} from './cases.js';
import {CaseResult, checkCase} from './check_case.js';
import {caseFailures, QUICK_FUZZ, roundingFloor, runFuzz} from './fuzz.js';
import {describeFuzz} from './fuzz_runner.js';
import {selectedBackends} from './reliability_backends.js';
import {FUZZ_TOLERANCES} from './tolerances.js';

const RUNS = Number(process.env.FUZZ_RUNS ?? 40);

for (const backend of selectedBackends()) {
  const guard = backend.guard;
  describeFuzz({
    label: backend.name, runs: RUNS, config: QUICK_FUZZ, tolerance: backend.tolerance,
    setUp: () => backend.setUp(),
    run: (opts) => runFuzz(tf, lib, {
      ...opts,
      check: guard && ((c, seed) => guard(() => checkCase(tf, lib, c, seed))),
      onCase: (c, r, failures) => opts.onCase(c.case.name, r?.errors ?? null, failures),
    }),
  });
}

describe('fuzz tolerance: the fp32 rounding floor', () => {
  // The long wasm fuzz's failure (seed 827455934, run 1588): one key, q·k = 0.4026 − 0.4055, lse 1.185e-3 off by
  // 1.27e-8, i.e. 1.07e-5 relative; fp32 cannot write the score any closer.
  const c: AttentionCase =
      {name: 'one cancelling score', op: 'flash', batch: 1, seqQ: 57, seqK: 1, heads: 1, kvHeads: 1, headDim: 2,
       scale: -0.42, causal: true};
  const tolerance = FUZZ_TOLERANCES.wasm;
  const result = (errors: Partial<CaseResult['errors']>): CaseResult => ({
    name: c.name, seed: 1047126794, problems: [], leakedTensors: 0,
    errors: {output: 0, lse: 0, dq: 0, dk: 0, dv: 0, dBias: 0, ...errors},
    maxReference: {lse: 1e-3, dq: 1e-3, dk: 1e-3, dBias: 1e-3},
  });
  const maxRef = {lse: 1.185e-3, dq: 0, dk: 0, dBias: 0};

  it('passes an lse off by a rounding of its score (absolute 1.27e-8 <= 4·eps32·|scale|·headDim)', () => {
    expect(roundingFloor(c).lse).to.be.closeTo(4 * 2 ** -23 * 0.42 * 2, 1e-15);
    expect(caseFailures(result({lse: 1.07e-5}), tolerance)).to.have.length(1);  // strictly relative: fails
    expect(caseFailures(result({lse: 1.07e-5}), tolerance, {floor: roundingFloor(c), maxRef})).to.deep.equal([]);
  });

  it('passes a dBias off by the rounding of dP − D on a one-key row (the cpu fuzz, dropout 0.01)', () => {
    // Seed 1889173293 of `npm run fuzz -- --quick --backend cpu`: exact dBias 0, actual 1.41e-8.
    const one: AttentionCase = {name: 'one key, bias, dropout', op: 'flash', batch: 1, seqQ: 1, seqK: 1, heads: 1,
                                kvHeads: 1, headDim: 2, bias: {shape: 'q'}, dropout: {rate: 0.01, seed: 0}};
    const floored = {floor: roundingFloor(one), maxRef: {lse: 1, dq: 0, dk: 0, dBias: 0}};
    expect(caseFailures(result({dBias: 1.41e-5}), FUZZ_TOLERANCES.cpu, floored)).to.deep.equal([]);
    expect(caseFailures(result({dBias: 1e-3}), FUZZ_TOLERANCES.cpu, floored)[0]).to.match(/dBias error .* floor/);
  });

  it('still fails a real lse error, and never floors output or dv', () => {
    const floored = {floor: roundingFloor(c), maxRef};
    expect(caseFailures(result({lse: 1e-3}), tolerance, floored)[0]).to.match(/lse error .* rounding floor/);
    expect(caseFailures(result({output: 1.07e-5}), tolerance, floored)[0]).to.match(/^output error/);
    expect(caseFailures(result({dv: 2e-4}), tolerance, floored)[0]).to.match(/^dv error/);
  });
});
