/**
 * Non-finite and extreme inputs (see RELIABILITY.md, "NaN / Inf semantics") on the node backends selected by
 * RELIABILITY_BACKENDS (test/reliability_backends.ts). The checks live in test/semantics_checks.ts, shared with
 * test/browser_semantics.test.ts (webgl in Chromium).
 */
import * as tf from '@tensorflow/tfjs-core';
import * as lib from '../src/index.js';
import {itOn, ReliabilityBackend, selectedBackends} from './reliability_backends.js';
import {defineSemanticsChecks} from './semantics_checks.js';

/**
 * Checks of test/semantics_checks.ts known to fail on a backend (a reported bug, RELIABILITY.md "Known limits"), by
 * backend row name and exact title, with the reason: added to the row's `pending` (test/reliability_backends.ts), so
 * itOn registers them as pending and RELIABILITY_RUN_PENDING=1 runs them. Remove an entry once its backend is fixed. (webgpu's eight NaN/Inf
 * gradient checks were listed here until its backward skipped masked elements, commit e8c47b0.)
 */
const KNOWN_FAILURES: Record<string, Record<string, string>> = {};

function withKnownFailures(backend: ReliabilityBackend): ReliabilityBackend {
  const known = KNOWN_FAILURES[backend.name];
  return known == null ? backend : {...backend, pending: {...backend.pending, ...known}};
}

for (const selected of selectedBackends()) {
  const backend = withKnownFailures(selected);
  describe(`semantics on ${backend.name}`, function () {
    // Software Vulkan (lavapipe) compiles each new GPU pipeline at its first dispatch, 10-20 s cold: a check that meets
    // several new shapes or option sets (softcap) can take minutes on a fresh shader cache.
    if (backend.name === 'webgpu') this.timeout(600_000);
    before(() => backend.setUp());
    defineSemanticsChecks(tf, lib, {
      backend: backend.name, describe, it: (title, fn) => it(title, fn), itOn: (title, fn) => itOn(backend, title, fn),
    });
  });
}

