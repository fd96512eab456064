/**
 * Long fuzz run (`npm run fuzz`): random cases over the full ranges of the spec, on one or more backends, against the
 * float64 reference. Prints the seed first so any run can be replayed; on failure prints the shrunk minimal case as
 * JSON for test/cases.ts and exits 1.
 *
 *   npm run fuzz -- --runs 500 --backend cpu,wasm --seed 1234 [--quick] [--ops flash,sparse] [--verbose]
 */
import * as tf from '@tensorflow/tfjs-core';
import {parseArgs} from 'node:util';
import * as lib from '../src/index.js';
import {formatFailure, FuzzConfig, LONG_FUZZ, QUICK_FUZZ, runFuzz} from '../test/fuzz.js';
import {NODE_BACKENDS} from '../test/reliability_backends.js';

const {values: args} = parseArgs({
  options: {
    seed: {type: 'string'},
    runs: {type: 'string', default: '300'},
    backend: {type: 'string', default: 'cpu'},
    ops: {type: 'string'},
    quick: {type: 'boolean', default: false},
    verbose: {type: 'boolean', default: false},
    help: {type: 'boolean', default: false},
  },
});

if (args.help) {
  console.log('usage: npm run fuzz -- [--seed N] [--runs N] [--backend cpu,wasm] [--ops flash,sliding,sparse] ' +
              '[--quick] [--verbose]');
  process.exit(0);
}

function positiveInt(name: string, text: string): number {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 0) throw new Error(`--${name} must be a non-negative integer, got ${text}`);
  return n;
}

const seed = args.seed != null ? positiveInt('seed', args.seed) : Math.floor(Math.random() * 0x7fffffff);
const runs = positiveInt('runs', args.runs!);
const config: FuzzConfig = {...(args.quick ? QUICK_FUZZ : LONG_FUZZ)};
if (args.ops) {
  const ops = args.ops.split(',');
  for (const op of ops) {
    if (!['flash', 'sliding', 'sparse'].includes(op)) throw new Error(`--ops: unknown op ${op}`);
  }
  config.ops = ops as FuzzConfig['ops'];
}

console.log(`fuzz seed ${seed} (replay: npm run fuzz -- --seed ${seed} --runs ${runs} --backend ${args.backend}` +
            `${args.quick ? ' --quick' : ''}${args.ops ? ` --ops ${args.ops}` : ''})`);

async function main(): Promise<boolean> {
let failed = false;
for (const name of args.backend!.split(',')) {
  const backend = NODE_BACKENDS.find((b) => b.name === name);
  if (backend == null) throw new Error(`--backend: unknown backend ${name} (known: ${NODE_BACKENDS.map((b) => b.name)})`);
  await backend.setUp();
  const start = Date.now();
  let executed = 0;
  const report = await runFuzz(tf, lib, {
    seed, numRuns: runs, config, tolerance: backend.tolerance,
    onCase: (c, r, failures) => {
      executed++;
      if (args.verbose) {
        console.log(`  ${failures.length ? 'FAIL' : 'ok  '} ${c.case.name}${r ? ` ${JSON.stringify(r.errors)}` : ''}`);
      } else if (executed % 50 === 0) {
        console.log(`  ${name}: ${executed} cases, ${((Date.now() - start) / 1000).toFixed(0)} s`);
      }
    },
  });
  const seconds = ((Date.now() - start) / 1000).toFixed(1);
  const maxErrors = Object.entries(report.maxErrors).map(([k, e]) => `${k} ${e.toExponential(1)}`).join(', ');
  if (report.failed) {
    failed = true;
    console.log(formatFailure(report, name));
    console.log(`  (${executed} cases executed including shrinking, ${seconds} s)`);
  } else {
    console.log(`${name}: ${report.numRuns} cases passed in ${seconds} s (tolerance fwd ${
        backend.tolerance.forward}, grad ${backend.tolerance.gradients}; max errors ${maxErrors})`);
  }
}
return failed;
}

main().then((failed) => process.exit(failed ? 1 : 0), (e) => {
  console.error(e);
  process.exit(2);
});
