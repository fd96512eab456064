/**
 * Long fuzz run (`npm run fuzz`): random cases over the full ranges of the spec (every op and option, test/fuzz.ts), on
 * one or more backends, against the float64 reference; the mocha runners of `npm test` are test/fuzz_runner.ts's. Prints the seed first so any run can be replayed; on failure prints the shrunk minimal case as
 * JSON for test/cases.ts and exits 1.
 *
 *   npm run fuzz -- --runs 500 --backend cpu,wasm --seed 1234 [--quick] [--ops flash,sparse] [--head-dims 8,16,5]
 *                   [--verbose]
 *
 * Backends: cpu, wasm, webgpu (node: Dawn, lavapipe without a GPU) and, in headless Chromium (scripts/setup-chromium.sh),
 * webgl (WebGL2 on SwiftShader; webgl-llvmpipe: ANGLE on Mesa llvmpipe) and webgpu-chromium (WebGPU on SwiftShader).
 * GPU backends draw from GPU_LONG_FUZZ (GPU_QUICK_FUZZ with --quick): less work per case, since software renderers run
 * on the CPU. Every new head size and option set compiles new GPU programs (seconds to minutes each on a software
 * renderer); --head-dims restricts the head sizes drawn.
 */
import * as tf from '@tensorflow/tfjs-core';
import {parseArgs} from 'node:util';
import * as lib from '../src/index.js';
import type {CaseResult} from '../test/check_case.js';
import {checkCase} from '../test/check_case.js';
import {
  formatFailure, formatMaxErrors, FUZZ_TOLERANCES, FuzzConfig, FuzzReport, FuzzTolerance, GPU_LONG_FUZZ, GPU_QUICK_FUZZ, LONG_FUZZ,
  QUICK_FUZZ, runFuzz,
} from '../test/fuzz.js';
import {NODE_BACKENDS} from '../test/reliability_backends.js';

/** Backends that run in headless Chromium: the tfjs backend and the page options. */
const BROWSER_BACKENDS: Record<string, {tfBackend: string; angle: 'swiftshader' | 'gl-egl'}> = {
  'webgl': {tfBackend: 'webgl', angle: 'swiftshader'},
  'webgl-llvmpipe': {tfBackend: 'webgl', angle: 'gl-egl'},
  'webgpu-chromium': {tfBackend: 'webgpu', angle: 'swiftshader'},
};
const GPU_BACKENDS = new Set(['webgpu', ...Object.keys(BROWSER_BACKENDS)]);
const KNOWN = [...NODE_BACKENDS.map((b) => b.name), ...Object.keys(BROWSER_BACKENDS)];

const {values: args} = parseArgs({
  options: {
    'seed': {type: 'string'},
    'runs': {type: 'string', default: '300'},
    'backend': {type: 'string', default: 'cpu'},
    'ops': {type: 'string'},
    'head-dims': {type: 'string'},
    'quick': {type: 'boolean', default: false},
    'verbose': {type: 'boolean', default: false},
    'help': {type: 'boolean', default: false},
  },
});

if (args.help) {
  console.log(`usage: npm run fuzz -- [--seed N] [--runs N] [--backend ${KNOWN.join(',')}] ` +
              '[--ops flash,sliding,sparse] [--head-dims 8,16,5] [--quick] [--verbose]');
  process.exit(0);
}

function positiveInt(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer, got ${text}`);
  return n;
}

const seed = args.seed != null ? positiveInt('seed', args.seed) : Math.floor(Math.random() * 0x7fffffff);
const runs = positiveInt('runs', args.runs!);
const backends = args.backend!.split(',');
for (const name of backends) {
  if (!KNOWN.includes(name)) throw new Error(`--backend: unknown backend ${name} (known: ${KNOWN.join(', ')})`);
}

function configFor(backend: string): FuzzConfig {
  const gpu = GPU_BACKENDS.has(backend);
  const config: FuzzConfig = {...(args.quick ? (gpu ? GPU_QUICK_FUZZ : QUICK_FUZZ) : (gpu ? GPU_LONG_FUZZ : LONG_FUZZ))};
  if (args.ops) {
    const ops = args.ops.split(',');
    for (const op of ops) {
      if (!['flash', 'sliding', 'sparse'].includes(op)) throw new Error(`--ops: unknown op ${op}`);
    }
    config.ops = ops as FuzzConfig['ops'];
  }
  if (args['head-dims']) {
    config.headDims = args['head-dims'].split(',').map((d) => positiveInt('head-dims', d));
    if (config.headDims.some((d) => d < 1)) throw new Error('--head-dims: head sizes must be >= 1');
  }
  return config;
}

console.log(`fuzz seed ${seed} (replay: npm run fuzz -- --seed ${seed} --runs ${runs} --backend ${args.backend}` +
            `${args.quick ? ' --quick' : ''}${args.ops ? ` --ops ${args.ops}` : ''}${
                args['head-dims'] ? ` --head-dims ${args['head-dims']}` : ''})`);

/** Progress output shared by node and browser runs. */
function progress(backend: string) {
  const start = Date.now();
  let executed = 0;
  return {
    start,
    executed: () => executed,
    onCase: (name: string, errors: CaseResult['errors'] | null, failures: string[]) => {
      executed++;
      if (args.verbose) {
        console.log(`  ${failures.length ? 'FAIL' : 'ok  '} ${((Date.now() - start) / 1000).toFixed(1)} s ${name}${
            errors ? ` ${JSON.stringify(errors)}` : ''}${failures.length ? `: ${failures.join('; ')}` : ''}`);
      } else if (executed % (GPU_BACKENDS.has(backend) ? 10 : 50) === 0) {
        console.log(`  ${backend}: ${executed} cases, ${((Date.now() - start) / 1000).toFixed(0)} s`);
      }
    },
  };
}

async function runNode(name: string, config: FuzzConfig, p: ReturnType<typeof progress>) {
  const backend = NODE_BACKENDS.find((b) => b.name === name)!;
  await backend.setUp();
  const guard = backend.guard;
  const report = await runFuzz(tf, lib, {
    seed, numRuns: runs, config, tolerance: backend.tolerance,
    check: guard && ((c, s) => guard(() => checkCase(tf, lib, c, s))),
    onCase: (c, r, failures) => p.onCase(c.case.name, r?.errors ?? null, failures),
  });
  return {report, tolerance: backend.tolerance};
}

async function runBrowser(name: string, config: FuzzConfig, p: ReturnType<typeof progress>) {
  const {tfBackend, angle} = BROWSER_BACKENDS[name];
  const {browserMissingReason} = await import('../test/browser/chromium.js');
  const missing = browserMissingReason();
  if (missing != null) throw new Error(missing);
  const {openFuzzPage} = await import('../test/browser/fuzz_page.js');
  const page = await openFuzzPage(tfBackend, {angle});
  console.log(`  ${name}: renderer ${page.page.info.renderer}`);
  const tolerance: FuzzTolerance = FUZZ_TOLERANCES[tfBackend];
  try {
    const report = await page.run({
      seed, numRuns: runs, config, tolerance,
      onCase: (c) => p.onCase(c.name, c.errors, c.failures),
    });
    return {report, tolerance};
  } finally {
    await page.close();
  }
}

async function main(): Promise<boolean> {
  let failed = false;
  for (const name of backends) {
    const config = configFor(name);
    const p = progress(name);
    const {report, tolerance}: {report: FuzzReport; tolerance: FuzzTolerance} =
        name in BROWSER_BACKENDS ? await runBrowser(name, config, p) : await runNode(name, config, p);
    const seconds = ((Date.now() - p.start) / 1000).toFixed(1);
    const maxErrors = formatMaxErrors(report);
    if (report.failed) {
      failed = true;
      console.log(formatFailure(report, name));
      console.log(`  (${p.executed()} cases executed including shrinking, ${seconds} s; max errors ${maxErrors})`);
    } else {
      console.log(`${name}: ${report.numRuns} cases passed in ${seconds} s (tolerance fwd ${tolerance.forward}, grad ${
          tolerance.gradients}; max errors ${maxErrors})`);
    }
  }
  return failed;
}

main().then((failed) => process.exit(failed ? 1 : 0), (e) => {
  console.error(e);
  process.exit(2);
});
