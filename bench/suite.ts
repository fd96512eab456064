/**
 * The benchmark suite: this library's attention ops vs tfjs's naive composition (src/layers/naive_attention.ts), on every
 * backend this machine has, forward and forward+backward, over a sequence-length sweep.
 *
 *   npx tsx bench/suite.ts                 # full sweep on cpu, wasm, webgpu (Dawn), Chromium webgl + webgpu
 *   npx tsx bench/suite.ts --quick         # < 1 min on 2 cores: tiny sweep, cpu + wasm (what CI runs)
 *   npx tsx bench/suite.ts --backends webgpu --ops flash --seqs 1024,4096 --heads 16 --dims 64 --ort
 *   npx tsx bench/suite.ts --help
 *
 * Writes results.json and results.md under bench/results/<date>-<machine>/ (bench/plot.ts draws the charts).
 *
 * Besides this sweep (section `sweep`, the default), `--section NAME` runs one of the focused measurements in
 * bench/suite/sections/ with its own flags (listed by --help): `webgpu-kernel` (kernel tuning, long sequences, GPU
 * timestamps), `webgpu-backward` (the backward kernel alone, its tilings), `webgpu-options` (what masks, bias, ALiBi,
 * packed documents and dropout cost), `webgl` (paired runs in Chromium, the MRT
 * probe), `cpu-paired` (alternating cpu runs). Where there is no npx (the lent GPU machines):
 *   node node_modules/tsx/dist/cli.mjs bench/suite.ts --section webgpu-kernel --out $OUT
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {fileURLToPath} from 'node:url';
import {parseArgs} from 'node:util';
import {BrowserRunner} from './suite/browser_runner.js';
import {ALL_OPS, BenchCase, buildCases, DEFAULT_SWEEP, Impl, Mode, OpName, QUICK_SWEEP, SweepConfig} from './suite/cases.js';
import {forwardFlops} from './suite/flops.js';
import {cpuModel, dateStamp, machineId} from './suite/machine.js';
import type {Job, RunSpec} from './suite/measure.js';
import {BackendRunner, NodeRunner} from './suite/node_runner.js';
import type {BackendInfo} from './suite/node_worker.js';
import {casePlan} from './suite/problem.js';
import {Progress} from './suite/progress.js';
import {BackendStatus, deriveFigures, formatMs, markdownReport, ResultRow, SuiteResults} from './suite/report.js';
import {TimingOptions} from './suite/timing.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const NODE_BACKENDS = ['cpu', 'wasm', 'webgpu'];
export const BROWSER_BACKENDS = ['browser-webgl', 'browser-webgpu'];

export interface SuiteOptions {
  quick: boolean;
  backends: string[];
  sweep: SweepConfig;
  modes: Mode[];
  impls: Impl[];
  /** Add ONNX Runtime Web's MultiHeadAttention (webgpu backends, dense forward). */
  ort: boolean;
  timing: TimingOptions;
  /** Once one call of a series takes longer than this, its larger sizes are skipped (per impl and mode). */
  capMs: number;
  /** One process per (case, implementation): exact peak RSS per implementation; slower, no ours-vs-naive check. */
  isolate: boolean;
  /** Output folder; default bench/results/<date>-<machine>. */
  outDir?: string;
  machine?: string;
  /** Print progress (a status line on terminals, a line per case otherwise). */
  log: boolean;
}

export function defaultOptions(quick: boolean): SuiteOptions {
  return {
    quick,
    backends: quick ? ['cpu', 'wasm'] : [...NODE_BACKENDS, ...BROWSER_BACKENDS],
    sweep: quick ? {...QUICK_SWEEP} : {...DEFAULT_SWEEP},
    modes: ['forward', 'backward'],
    impls: ['ours', 'naive'],
    ort: false,
    timing: quick ? {warmup: 1, budgetMs: 60, minSamples: 3, maxSamples: 5, targetSampleMs: 5} :
                    {warmup: 2, budgetMs: 1500, minSamples: 5, maxSamples: 25, targetSampleMs: 20},
    capMs: quick ? 2000 : 4000,
    isolate: false,
    log: true,
  };
}

/** The focused measurements, each a module with `main(argv)` (loaded on demand: each sets up its own world). */
export const SECTIONS: Record<string, {load: () => Promise<{main: (argv: string[]) => Promise<unknown>}>, help: string}> = {
  'webgpu-kernel': {
    load: () => import('./suite/sections/webgpu_kernel.js'),
    help: `forward kernels vs naive on WebGPU in node (B1 H16 fp32, seq 512 … 131072), fwd+bwd, sliding, sparse
      --quick  --sections LIST of tune, kernel (GPU timestamps), dense, dense128, bwd, sliding, sparse
                (default tune,dense,dense128,bwd,sliding,sparse)  --configs64 JSON  --configs128 JSON  --out DIR`,
  },
  'webgpu-backward': {
    load: () => import('./suite/sections/webgpu_backward.js'),
    help: `WebGPU forward, backward kernel alone (runKernel) and fwd+bwd (tf.grads), B1 H16 fp32; the backward
      under other tile configurations; run-to-run bit-identity          --quick  --out DIR
      --designs split-dq,two-pass (time both backward designs side by side)  --nsplits 4,8,16 (split-dq forced)`,
  },
  'webgpu-options': {
    load: () => import('./suite/sections/webgpu_options.js'),
    help: `what masks, padding, bias, ALiBi, packed documents (segmentIds) and dropout cost vs causal / dense / naive,
      fwd and fwd+bwd, ratios against the issue-16/17 targets (B1 H16 D64 S4096 fp32)
      --quick  --rounds N (ours: median of N rounds of every variant, default 3)  --seq N  --heads N  --dim N  --batch N  --backend webgpu|cpu  --out DIR`,
  },
  'webgpu-decode': {
    load: () => import('./suite/sections/webgpu_decode.js'),
    help: `decode: seqQ 1 and 16 over seqK 1024 … 131072 cached keys, 32/8 heads D128 and 16/16 D64, fp32; split-K
      decode path vs the tiled kernel vs naive vs ONNX Runtime Web's GroupQueryAttention, K/V GB/s next to the copy
      bandwidth, a preallocated cache (queryOffsets + keyLengths)
      --quick  --seqk LIST  --seqq LIST  --heads 32/8x128,16/16x64  --no-ort  --no-tiled  --out DIR (md + json)`,
  },
  'webgl': {
    load: () => import('./suite/sections/webgl.js'),
    help: `our webgl kernels vs naive in headless Chromium (B1, dense/causal/window/sparse, fwd and fwd+bwd)
      --seqs LIST  --masks LIST  --modes forward,forward+backward  --heads N  --dim N  --reps N
      --paired 1 (alternate ours/naive runs, GPU-process cpu time)  --angle swiftshader|gl-egl  --name SUFFIX
      --probe mrt (the multiple-render-target probe instead)  --timeout MS  --out DIR`,
  },
  'cpu-paired': {
    load: () => import('./suite/sections/cpu_paired.js'),
    help: `cpu kernels vs naive on the cpu backend (B1 H4 D64), alternating runs, wall and cpu time
      --seqs LIST (default 256,1024,2048)  --iters N  --out FILE.md`,
  },
};

const HELP = `Usage: npx tsx bench/suite.ts [--section sweep] [options]     the sweep: every backend, ours vs naive
  --quick                 tiny sweep on cpu + wasm (< 1 minute on 2 cores)
  --backends LIST         of ${[...NODE_BACKENDS, ...BROWSER_BACKENDS].join(', ')} (default: all)
  --ops LIST              of ${ALL_OPS.join(', ')}
  --seqs LIST             sequence lengths (seqQ = seqK)
  --dims LIST             head dims (flash and causal run each; other ops the first)
  --batch N  --heads N  --kv-heads N (gqa)  --window N (sliding)
  --densities LIST  --sparse-seq N  --block-size N       the sparse density sweep
  --modes LIST            forward, backward (forward+backward)
  --impls LIST            ours, naive
  --ort                   also ONNX Runtime Web's MultiHeadAttention on webgpu (dense forward)
  --budget-ms N  --min-samples N  --max-samples N  --warmup N    timing
  --cap-ms N              stop growing a series once one call takes longer than this
  --isolate               one process per case and implementation (exact peak RSS each; no ours-vs-naive check)
  --out DIR  --machine NAME  --quiet

       npx tsx bench/suite.ts --section NAME [section options]
${Object.entries(SECTIONS).map(([name, s]) => `  ${name.padEnd(16)} ${s.help}`).join('\n')}`;

/** Splits `--section NAME` off argv: [section, the rest]; section 'sweep' when absent. */
export function splitSection(argv: string[]): [string, string[]] {
  const i = argv.findIndex((a) => a === '--section' || a.startsWith('--section='));
  if (i < 0) return ['sweep', argv];
  const name = argv[i].includes('=') ? argv[i].split('=')[1] : argv[i + 1];
  const rest = [...argv.slice(0, i), ...argv.slice(i + (argv[i].includes('=') ? 1 : 2))];
  if (name !== 'sweep' && !(name in SECTIONS)) {
    throw new Error(`--section: unknown section "${name}" (sweep, ${Object.keys(SECTIONS).join(', ')})`);
  }
  return [name, rest];
}

const list = (s: string) => s.split(',').map((x) => x.trim()).filter((x) => x);
const nums = (s: string) => list(s).map(Number);

export function parseOptions(argv: string[]): SuiteOptions | null {
  const {values: v} = parseArgs({
    args: argv, strict: true,
    options: {
      'quick': {type: 'boolean'}, 'help': {type: 'boolean'}, 'backends': {type: 'string'}, 'ops': {type: 'string'},
      'seqs': {type: 'string'}, 'dims': {type: 'string'}, 'batch': {type: 'string'}, 'heads': {type: 'string'},
      'kv-heads': {type: 'string'}, 'window': {type: 'string'}, 'densities': {type: 'string'},
      'sparse-seq': {type: 'string'}, 'block-size': {type: 'string'}, 'modes': {type: 'string'},
      'impls': {type: 'string'}, 'ort': {type: 'boolean'}, 'budget-ms': {type: 'string'},
      'min-samples': {type: 'string'}, 'max-samples': {type: 'string'}, 'warmup': {type: 'string'},
      'cap-ms': {type: 'string'}, 'isolate': {type: 'boolean'}, 'out': {type: 'string'}, 'machine': {type: 'string'},
      'quiet': {type: 'boolean'},
    },
  });
  if (v.help) {
    console.log(HELP);
    return null;
  }
  const o = defaultOptions(!!v.quick);
  const s = o.sweep;
  if (v.backends) o.backends = list(v.backends);
  for (const b of o.backends) {
    if (![...NODE_BACKENDS, ...BROWSER_BACKENDS].includes(b)) throw new Error(`--backends: unknown backend "${b}"`);
  }
  if (v.ops) {
    s.ops = list(v.ops) as OpName[];
    for (const op of s.ops) if (!ALL_OPS.includes(op)) throw new Error(`--ops: unknown op "${op}"`);
  }
  if (v.seqs) s.seqs = nums(v.seqs);
  if (v.dims) s.headDims = nums(v.dims);
  if (v.batch) s.batch = Number(v.batch);
  if (v.heads) s.heads = Number(v.heads);
  if (v['kv-heads']) s.gqaKvHeads = Number(v['kv-heads']);
  if (v.window) s.window = Number(v.window);
  if (v.densities) s.densities = nums(v.densities);
  if (v['sparse-seq']) s.sparseSeq = Number(v['sparse-seq']);
  if (v['block-size']) s.sparseBlockSize = Number(v['block-size']);
  if (v.modes) o.modes = list(v.modes) as Mode[];
  if (v.impls) o.impls = list(v.impls) as Impl[];
  o.ort = !!v.ort;
  if (v['budget-ms']) o.timing.budgetMs = Number(v['budget-ms']);
  if (v['min-samples']) o.timing.minSamples = Number(v['min-samples']);
  if (v['max-samples']) o.timing.maxSamples = Number(v['max-samples']);
  if (v.warmup) o.timing.warmup = Number(v.warmup);
  if (v['cap-ms']) o.capMs = Number(v['cap-ms']);
  o.isolate = !!v.isolate;
  o.outDir = v.out;
  o.machine = v.machine;
  o.log = !v.quiet;
  const positive = [...s.seqs, ...s.headDims, s.batch, s.heads, s.gqaKvHeads, s.window, s.sparseBlockSize];
  if (positive.some((n) => !Number.isInteger(n) || n < 1)) throw new Error('sizes must be positive integers');
  if (s.ops.includes('gqa') && s.heads % s.gqaKvHeads !== 0) {
    throw new Error(`--heads (${s.heads}) must be divisible by --kv-heads (${s.gqaKvHeads}) for the gqa cases`);
  }
  return o;
}

function makeRunner(backend: string, o: SuiteOptions): BackendRunner {
  if (backend.startsWith('browser-')) return new BrowserRunner(backend, backend.slice('browser-'.length));
  return new NodeRunner(backend, o.ort && backend === 'webgpu', o.isolate);
}

/** Bytes of naive's [B, H, Sq, Sk] score tensor; it holds about 3 such (scores, softmax, grads) at its peak. */
function naiveScoreBytes(c: BenchCase): number {
  return c.batch * c.heads * c.seq * c.seq * 4;
}

/** Why a naive run would not fit on this backend, or null. */
function naiveTooLarge(c: BenchCase, mode: Mode, info: BackendInfo, backend: string): string | null {
  const scores = naiveScoreBytes(c);
  const live = scores * (mode === 'backward' ? 5 : 3);
  const gib = (b: number) => `${(b / 2 ** 30).toFixed(1)} GiB`;
  if (info.maxBufferBytes != null && scores > info.maxBufferBytes) {
    return `naive's score tensor (${gib(scores)}) exceeds the largest GPU buffer (${gib(info.maxBufferBytes)})`;
  }
  if (backend === 'wasm' && live > 3 * 2 ** 30) return `naive needs ~${gib(live)}, over wasm's 4 GiB memory`;
  if (backend === 'cpu' && live > os.totalmem() / 2) return `naive needs ~${gib(live)}, over half the RAM`;
  return null;
}

export async function runSuite(o: SuiteOptions): Promise<{results: SuiteResults; outDir: string}> {
  const started = new Date();
  const t0 = performance.now();
  const cases = buildCases(o.sweep);
  const flops = new Map(cases.map((c) => [c.id, forwardFlops(casePlan(c).plan)]));
  const rows: ResultRow[] = [];
  const statuses: BackendStatus[] = [];
  const progress = new Progress(o.log);
  const runsPerBackend = cases.length * o.modes.length * o.impls.length;
  progress.setTotal(runsPerBackend * o.backends.length);

  let gpu: string | undefined;
  const assemble = (): SuiteResults => {
    deriveFigures(rows);
    const id = o.machine ?? machineId(gpu);
    return {
      schema: 1,
      date: started.toISOString(),
      machine: {
        id, hostname: os.hostname(), cpu: cpuModel(), cores: os.cpus().length, memoryBytes: os.totalmem(),
        node: process.version, platform: `${os.platform()} ${os.release()}`, gpu,
      },
      config: {
        quick: o.quick, sweep: o.sweep, modes: o.modes, impls: o.impls, ort: o.ort, timing: o.timing, capMs: o.capMs,
        isolate: o.isolate, argv: process.argv.slice(2),
      },
      backends: statuses,
      rows,
      durationS: (performance.now() - t0) / 1e3,
    };
  };
  const save = (results: SuiteResults, dir: string) => {
    fs.mkdirSync(dir, {recursive: true});
    fs.writeFileSync(path.join(dir, 'results.json'), JSON.stringify(results, null, 1) + '\n');
    fs.writeFileSync(path.join(dir, 'results.md'), markdownReport(results) + '\n');
  };
  const saveProgress = o.outDir == null ? null : () => save(assemble(), o.outDir!);
  for (const backend of o.backends) {
    progress.status(`${backend}: starting`);
    const runner = makeRunner(backend, o);
    const started = await runner.start().catch((e: Error) => ({unavailable: e.message}));
    if ('unavailable' in started) {
      statuses.push({backend, available: false, reason: started.unavailable});
      progress.line(`${backend}: not run — ${started.unavailable}`);
      progress.advance(runsPerBackend);
      continue;
    }
    const info = started;
    statuses.push({backend, available: true, info});
    progress.line(`${backend}: ${info.description}${info.kernels ? ` — ${info.kernels}` : ''}`);
    if (info.adapter && !info.softwareAdapter && gpu == null) gpu = info.adapter;
    const cut = new Map<string, string>();  // series|impl|mode → why larger sizes are skipped
    try {
      for (const c of cases) {
        const specs: RunSpec[] = [];
        for (const mode of o.modes) {
          const impls: Impl[] = [...o.impls];
          if (info.externalImpls.includes('ort') && mode === 'forward' && c.op === 'flash') {
            impls.push('ort');
            progress.addTotal(1);
          }
          for (const impl of impls) {
            const skip = cut.get(`${c.series}|${impl}|${mode}`) ??
                (impl === 'naive' ? naiveTooLarge(c, mode, info, backend) : null);
            if (skip != null) {
              rows.push({backend, case: c, impl, mode, flops: flops.get(c.id)!, skipped: skip});
              progress.advance(1);
            } else {
              specs.push({impl, mode});
            }
          }
        }
        if (specs.length === 0) continue;
        progress.status(`${backend} ${c.id} (${specs.length} runs)`);
        // --isolate: one process per implementation, so each one's peak RSS is its own (no ours-vs-naive check).
        const groups = o.isolate ? [...new Set(specs.map((r) => r.impl))].map((impl) => specs.filter((r) => r.impl === impl)) :
                                   [specs];
        let done = 0;
        for (const runs of groups) {
          const job: Job = {backend: backend.replace(/^browser-/, ''), case: c, runs, timing: o.timing};
          const result = await runner.run(job);
          for (const run of result.runs) {
            const row: ResultRow = {
              backend, case: c, impl: run.impl, mode: run.mode, flops: flops.get(c.id)!, timing: run.timing,
              memory: run.memory, error: run.error, leakedTensors: result.leakedTensors,
            };
            if (run.impl === 'ours' && run.mode === 'forward') row.maxRelDiffVsNaive = result.maxRelDiffVsNaive;
            if (run.maxRelDiffVsOurs != null) row.maxRelDiffVsOurs = run.maxRelDiffVsOurs;
            rows.push(row);
            const k = `${c.series}|${run.impl}|${run.mode}`;
            if (run.error) cut.set(k, `skipped: failed at ${c.id}`);
            else if (run.timing && run.timing.medianMs > o.capMs) {
              cut.set(k, `skipped: ${c.id} took ${formatMs(run.timing.medianMs)} (> --cap-ms ${o.capMs})`);
            }
          }
          done += result.runs.length;
        }
        progress.advance(done);
        progress.line(summarize(backend, c, rows));
        saveProgress?.();  // with --out, a run cut short still leaves its results
      }
    } finally {
      await runner.close();
    }
  }

  const results = assemble();
  const outDir = o.outDir ?? path.join(ROOT, 'bench', 'results',
                                       `${dateStamp(started)}-${results.machine.id}${o.quick ? '-quick' : ''}`);
  save(results, outDir);
  progress.done(`wrote ${path.relative(process.cwd(), outDir) || outDir}/results.{json,md} in ${
      results.durationS.toFixed(1)} s`);
  return {results, outDir};
}

/** "cpu  causal/D64/S256  fwd ours 1.2 ms naive 3.4 ms (2.8×) | bwd ..." */
function summarize(backend: string, c: BenchCase, rows: ResultRow[]): string {
  const parts: string[] = [];
  for (const mode of ['forward', 'backward'] as Mode[]) {
    const mine = rows.filter((r) => r.backend === backend && r.case.id === c.id && r.mode === mode);
    if (mine.length === 0) continue;
    const show = (r: ResultRow) => `${r.impl} ${r.timing ? formatMs(r.timing.medianMs) : r.error ? 'error' : 'skip'}`;
    const o = mine.find((r) => r.impl === 'ours'), n = mine.find((r) => r.impl === 'naive');
    const speed = o?.timing && n?.timing ? ` (${(n.timing.medianMs / o.timing.medianMs).toFixed(2)}×)` : '';
    parts.push(`${mode === 'forward' ? 'fwd' : 'fwd+bwd'} ${mine.map(show).join(' ')}${speed}`);
  }
  return `${backend.padEnd(14)} ${c.id.padEnd(30)} ${parts.join(' | ')}`;
}

const isMain = process.argv[1] != null && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  (async () => {
    const [section, argv] = splitSection(process.argv.slice(2));
    if (section !== 'sweep') {
      if (argv.includes('--help')) {
        console.log(`npx tsx bench/suite.ts --section ${section}\n  ${SECTIONS[section].help}`);
        return;
      }
      await (await SECTIONS[section].load()).main(argv);
      process.exit(0);  // WebGPU (Dawn) keeps node alive after the work is done
    }
    const o = parseOptions(argv);
    if (o == null) return;
    const {results} = await runSuite(o);
    const errors = results.rows.filter((r) => r.error).length;
    if (errors > 0) console.log(`${errors} run(s) failed: see results.md`);
  })().catch((e) => {
    console.error((e as Error).message);
    process.exitCode = 1;
  });
}
