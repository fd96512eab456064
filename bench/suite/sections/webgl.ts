/**
 * Section `webgl` of bench/suite.ts: our webgl kernels vs tfjs's naive composition (matMul → additive mask → softmax → matMul) on the
 * same WebGL2 context in headless Chromium (test/browser's harness), for dense / causal / sliding-window (256) /
 * block-sparse (BigBird, blocks of 64) attention, forward and forward+backward, seq 256 … 16384; on request
 * (--masks) the causal pattern as a bool mask tensor ('causal-mask') and 8 packed documents as segment ids
 * ('documents'), whose hidden tiles only the device knows; and the option rows 'bias', 'alibi', 'dropout' (dense
 * attention plus that option: the .md adds their cost next to the 'dense' row of the same run, issues 16/17's
 * "report webgl ratios too"). --flags sets tfjs flags in the page before the backend starts (A/B runs of one build).
 *
 *   npx tsx bench/suite.ts --section webgl [--seqs 256,1024,4096,16384] [--angle swiftshader|gl-egl] [--heads 2]
 *       [--dim 64] [--paired 1] [--name suffix] [--masks dense,causal] [--modes forward] [--reps 5] [--out DIR]
 *       [--flags ATTENTION_WEBGL_SKIP_HIDDEN_TILES=false,…]
 *   npx tsx bench/suite.ts --section webgl --probe mrt [--seqs 1024] [--reps 9]
 *
 * --probe mrt times webgl_page.ts's multiple-render-target probe (one score matmul, 1 vs 8 outputs per fragment)
 * instead of the attention benchmark: is an 8-output fragment program worth building on this renderer?
 *
 * --paired 1 warms both sides up, then alternates single ours / naive runs (reps pairs): on a machine whose load
 * drifts (shared cores), both sides see the same conditions, so the ratio is far more stable than two separate
 * series. Use it for the target comparisons (seq <= 1024); the plain mode is cheaper for long sequences. Paired runs
 * also record the CPU time Chromium's GPU process spent per run (/proc, all threads: on a CPU renderer such as
 * SwiftShader that is the rendering work itself), which other processes' load disturbs far less than wall time.
 * Writes webgl-<renderer>[-name].json and .md into bench/results/<date>-<machine>-webgl-<renderer>/ (or --out DIR) (medians, every run, ratios naive / ours). Shapes whose ours-side
 * cost would take minutes on a CPU renderer are skipped and listed as such; naive at 16384 runs once, in a fresh page,
 * to show whether it works at all.
 */
import {mkdirSync, readdirSync, readFileSync, writeFileSync} from 'node:fs';
import {loadavg} from 'node:os';
import path from 'node:path';
import {bundleForPage, libraryBundle, REPO_ROOT} from '../../../test/browser/bundle.js';
import {AngleBackend, browserMissingReason, BrowserSession, launchChromium} from '../../../test/browser/chromium.js';
import {startStaticServer, StaticServer} from '../../../test/browser/server.js';
import {runFolder} from '../machine.js';
import {DOCUMENTS, DROPOUT_RATE, OPTION_ROWS} from './webgl_page.js';
import type {BenchJob, BenchResult, MaskKind, Mode} from './webgl_page.js';

const args = new Map<string, string>();
let SEQS: number[] = [], ANGLE: AngleBackend = 'swiftshader', HEADS = 2, DIM = 64, JOB_TIMEOUT_MS = 300_000;
let PAIRED = false, NAME_SUFFIX = '', REPS: number | null = null;
let MASKS: MaskKind[] = [], MODES: Mode[] = [];
let FLAGS: Record<string, boolean | number> = {};

function parse(argv: string[]): void {
  for (let i = 0; i < argv.length; i += 2) args.set(argv[i].replace(/^--/, ''), argv[i + 1]);
  SEQS = (args.get('seqs') ?? '256,1024,4096,16384').split(',').map(Number);
  ANGLE = (args.get('angle') ?? 'swiftshader') as AngleBackend;
  HEADS = Number(args.get('heads') ?? 2);
  DIM = Number(args.get('dim') ?? 64);
  JOB_TIMEOUT_MS = Number(args.get('timeout') ?? 300_000);
  PAIRED = args.get('paired') === '1';
  NAME_SUFFIX = args.get('name') ? `-${args.get('name')}` : '';
  MASKS = (args.get('masks') ?? 'dense,causal,window,sparse').split(',') as MaskKind[];
  MODES = (args.get('modes') ?? 'forward,forward+backward').split(',') as Mode[];
  REPS = args.has('reps') ? Number(args.get('reps')) : null;
  FLAGS = Object.fromEntries((args.get('flags') ?? '').split(',').filter((f) => f !== '').map((f) => {
    const [name, value] = f.split('=');
    return [name, value === 'true' ? true : value === 'false' ? false : Number(value)];
  }));
}

/** --out DIR, else bench/results/<date>-<machine>-webgl-<renderer>. */
function outFolder(renderer: string): string {
  const dir = args.get('out') ?? runFolder(REPO_ROOT, `webgl-${rendererName(renderer)}`);
  mkdirSync(dir, {recursive: true});
  return dir;
}

function rendererName(renderer: string): string {
  return /SwiftShader/i.test(renderer) ? 'swiftshader' : /llvmpipe/i.test(renderer) ? 'llvmpipe' :
      renderer.toLowerCase().replace(/[^a-z0-9]+/g, '-').slice(0, 40);
}

/** Skipped on a CPU renderer: minutes per run (the visited key tiles grow as seq² for dense and causal). */
function skipOurs(seq: number, mask: MaskKind, mode: Mode): string | null {
  if (seq >= 16384 && mask === 'dense') return 'too slow on a CPU renderer (seq² work)';
  if (seq >= 16384 && mask === 'causal' && mode === 'forward+backward') return 'too slow on a CPU renderer';
  return null;
}
function repsFor(seq: number): number {
  if (REPS != null) return REPS;
  return seq <= 1024 ? 5 : seq <= 4096 ? 2 : 1;
}

interface Page {
  session: BrowserSession;
  renderer: string;
}

async function openPage(server: StaticServer, scripts: string[]): Promise<Page> {
  const session = await launchChromium(ANGLE);
  await session.page.addInitScript('globalThis.__name = (f) => f;');
  await session.page.goto(`${server.url}/test/browser/blank.html`);
  for (const s of ['/node_modules/@tensorflow/tfjs/dist/tf.min.js', ...scripts]) await session.page.addScriptTag({url: s});
  const renderer = await session.page.evaluate((f) => (globalThis as any).webglBench.setup(f), FLAGS) as string;  // eslint-disable-line
  return {session, renderer};
}

async function runJob(page: Page, job: BenchJob): Promise<BenchResult> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<BenchResult>((resolve) => {
    timer = setTimeout(() => resolve({medianMs: null, runsMs: [], error: `timeout: warm-up + timed runs took over ${JOB_TIMEOUT_MS} ms`}),
                       JOB_TIMEOUT_MS);
  });
  const run = page.session.page.evaluate((j) => (globalThis as any).webglBench.runJob(j), job) as Promise<BenchResult>;  // eslint-disable-line
  const result = await Promise.race([run, timeout]);
  clearTimeout(timer);
  return result;
}

/**
 * CPU time (user + system, ms, all threads) of Chromium's GPU process among this process's descendants, from /proc.
 * On a CPU renderer that is the rendering work itself; the renderer process is left out, since tfjs polls for
 * results while it waits (CPU time that grows with the wall time, i.e. with the load).
 */
function gpuProcessCpuMs(): number {
  const stats = new Map<number, string[]>();
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const text = readFileSync(`/proc/${name}/stat`, 'utf8');
      stats.set(Number(name), text.slice(text.lastIndexOf(')') + 2).split(' '));  // fields from 3 (state) on
    } catch {
      // the process ended meanwhile
    }
  }
  const children = new Map<number, number[]>();
  for (const [pid, f] of stats) children.set(Number(f[1]), [...(children.get(Number(f[1])) ?? []), pid]);
  let ticks = 0;
  const walk = (pid: number) => {
    for (const child of children.get(pid) ?? []) {
      let isGpu = false;
      try {
        isGpu = readFileSync(`/proc/${child}/cmdline`, 'utf8').includes('--type=gpu-process');
      } catch {
        // ended
      }
      if (isGpu) ticks += Number(stats.get(child)![11]) + Number(stats.get(child)![12]);  // utime, stime
      walk(child);
    }
  };
  walk(process.pid);
  return ticks * 10;  // USER_HZ = 100
}

function median(values: number[]): number | null {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted.length === 0 ? null : sorted[Math.floor(sorted.length / 2)];
}

/** A benchmark result with the GPU process's CPU time of each timed run (paired mode). */
type PairedResult = BenchResult & {cpuMs: number[], medianCpuMs: number | null};

/** Warm-up of each side, then `reps` alternating single runs: ours, naive, ours, naive, … */
async function pairedRuns(page: Page, ours: BenchJob, naive: BenchJob): Promise<[PairedResult, PairedResult]> {
  const results: PairedResult[] = [0, 1].map(() => ({medianMs: null, runsMs: [], cpuMs: [], medianCpuMs: null}));
  const jobs = [ours, naive];
  for (let rep = -1; rep < ours.reps; rep++) {
    for (let side = 0; side < 2; side++) {
      if (results[side].error) continue;
      const cpuBefore = gpuProcessCpuMs();
      const r = await runJob(page, {...jobs[side], reps: rep < 0 ? 0 : 1, noWarmup: rep >= 0});
      if (r.error) results[side].error = r.error;
      results[side].runsMs.push(...r.runsMs);
      if (rep >= 0) results[side].cpuMs.push(gpuProcessCpuMs() - cpuBefore);
    }
  }
  for (const r of results) {
    r.medianMs = r.error ? null : median(r.runsMs);
    r.medianCpuMs = r.error ? null : median(r.cpuMs);
  }
  return [results[0], results[1]];
}

interface Row {
  seq: number;
  mask: MaskKind;
  mode: Mode;
  ours: BenchResult | {skipped: string};
  naive: BenchResult | {skipped: string};
}

/** The --probe mrt mode: alternating single / mrt draws, wall and GPU-process CPU time, into a results file. */
async function mrtProbe(page: Page): Promise<void> {
  const lines: string[] = [];
  const loadBefore = loadavg().map((x) => x.toFixed(1)).join(' ');
  for (const seq of SEQS) {
    const maxDrawBuffers = await page.session.page.evaluate((n) => (globalThis as any).webglBench.mrtProbeSetup(n), seq);  // eslint-disable-line
    const difference = await page.session.page.evaluate('webglBench.mrtProbeCheck()') as number;
    const runs: Record<string, {wall: number[], cpu: number[]}> = {single: {wall: [], cpu: []}, mrt: {wall: [], cpu: []}};
    const reps = REPS ?? 9;
    for (let rep = -1; rep < reps; rep++) {
      for (const kind of ['single', 'mrt']) {
        const cpuBefore = gpuProcessCpuMs();
        const ms = await page.session.page.evaluate((k) => (globalThis as any).webglBench.mrtProbeRun(k), kind) as number;  // eslint-disable-line
        if (rep >= 0) {
          runs[kind].wall.push(ms);
          runs[kind].cpu.push(gpuProcessCpuMs() - cpuBefore);
        }
      }
    }
    const row = (kind: string) => `| ${seq} | ${kind} | ${median(runs[kind].wall)!.toFixed(0)} | ` +
        `${median(runs[kind].cpu)} | ${runs[kind].wall.map((t) => t.toFixed(0)).join(' ')} | ${runs[kind].cpu.join(' ')} |`;
    lines.push(row('single'), row('mrt'));
    console.log(`seq ${seq}: MAX_DRAW_BUFFERS ${maxDrawBuffers}, max |single − mrt| ${difference}`);
    console.log(lines.slice(-2).join('\n'));
  }
  const file = path.join(outFolder(page.renderer), `webgl-${rendererName(page.renderer)}${NAME_SUFFIX}-mrt-probe.md`);
  writeFileSync(file, [
    `# WebGL multiple-render-target probe — ${page.renderer}`, '',
    `${new Date().toISOString()}; Debian 12, 2 CPU cores; load average ${loadBefore} at the start, ` +
    `${loadavg().map((x) => x.toFixed(1)).join(' ')} at the end. One head's score matmul S = Q·Kᵀ (seq × 64), ` +
    'raw WebGL2 (bench/suite/sections/webgl_page.ts, mrtProbeSetup): single = one RGBA32F output per fragment (2 × 2 scores), ' +
    'mrt = 8 outputs per fragment (4 × 8 scores); same multiply-adds. Median of alternating draws (each + a 1-texel ' +
    'readback), wall ms and CPU ms of Chromium\'s GPU process.', '',
    '| seq | kind | wall (ms) | gpu cpu (ms) | wall runs | cpu runs |', '|---|---|---|---|---|---|', ...lines, '',
  ].join('\n'));
  console.log(`wrote ${file}`);
}

export async function main(argv: string[]): Promise<void> {
  parse(argv);
  const missing = browserMissingReason();
  if (missing != null) throw new Error(missing);
  const scripts = [`/${await libraryBundle()}`, `/${await bundleForPage('bench/suite/sections/webgl_page.ts', 'webgl-bench.js', 'webglBench')}`];
  const server = await startStaticServer(REPO_ROOT);
  let page = await openPage(server, scripts);
  if (args.get('probe') === 'mrt') {
    try {
      await mrtProbe(page);
    } finally {
      await page.session.close();
      await server.close();
    }
    return;
  }
  const renderer = page.renderer;
  const loadBefore = loadavg().map((x) => x.toFixed(1)).join(' ');
  console.log(`renderer: ${renderer}; batch 1, heads ${HEADS}, headDim ${DIM}; load average ${loadBefore}`);
  const rows: Row[] = [];
  const fresh = async () => {
    await page.session.close();
    page = await openPage(server, scripts);
  };
  try {
    for (const seq of SEQS) {
      for (const mask of MASKS) {
        for (const mode of MODES) {
          const job = (impl: 'ours' | 'naive'): BenchJob =>
              ({impl, mask, mode, batch: 1, seq, heads: HEADS, headDim: DIM, reps: repsFor(seq)});
          const skip = skipOurs(seq, mask, mode);
          if (PAIRED && skip == null && seq < 16384) {
            const [ours, naive] = await pairedRuns(page, job('ours'), job('naive'));
            rows.push({seq, mask, mode, ours, naive});
            console.log(JSON.stringify(rows[rows.length - 1]));
            if (ours.error || naive.error) await fresh();
            continue;
          }
          const ours = skip != null ? {skipped: skip} : await runJob(page, job('ours'));
          let naive: BenchResult | {skipped: string};
          if (seq >= 16384) {
            // One attempt, in its own page: it is expected to fail, and a lost context must not poison later runs.
            naive = mode === 'forward' && mask === 'dense' ?
                await (async () => {
                  await fresh();
                  const r = await runJob(page, {...job('naive'), reps: 1});
                  await fresh();
                  return r;
                })() :
                {skipped: 'not attempted (see the dense forward row; its additive mask alone would be 1 GiB)'};
          } else {
            naive = await runJob(page, job('naive'));
          }
          // A failed or timed-out job may leave the page busy or its context lost: continue in a fresh page.
          if (('error' in ours && ours.error) || ('error' in naive && naive.error)) await fresh();
          rows.push({seq, mask, mode, ours, naive});
          console.log(JSON.stringify(rows[rows.length - 1]));
        }
      }
    }
  } finally {
    await page.session.close();
    await server.close();
  }
  const base = path.join(outFolder(renderer), `webgl-${rendererName(renderer)}${NAME_SUFFIX}`);
  const meta = {renderer, date: new Date().toISOString(), batch: 1, heads: HEADS, headDim: DIM, window: 256,
                method: PAIRED ? 'paired: alternating single ours / naive runs after one warm-up each' :
                                 'series: warm-up, then all ours runs, then warm-up and all naive runs',
                sparse: 'bigBird blocks of 64 (window 3, global 1, random 2)', machine: 'Debian 12, 2 CPU cores',
                chromium: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium', flags: FLAGS,
                loadAverage: `${loadBefore} at the start, ${loadavg().map((x) => x.toFixed(1)).join(' ')} at the end ` +
                             '(1, 5, 15 minutes)'};
  writeFileSync(`${base}.json`, JSON.stringify({meta, rows}, null, 1) + '\n');
  writeFileSync(`${base}.md`, markdown(meta, rows));
  console.log(`wrote ${base}.json and .md`);
}

function cell(r: BenchResult | {skipped: string}): string {
  if ('skipped' in r) return `skipped: ${r.skipped}`;
  if (r.medianMs == null) return `fails: ${r.error}`;
  return r.medianMs.toFixed(0);
}

function markdown(meta: Record<string, unknown>, rows: Row[]): string {
  const cpu = rows.some((r) => 'cpuMs' in r.ours);
  const lines = [
    `# WebGL benchmark — ${meta.renderer}`, '',
    `${meta.date}; ${meta.machine}; load average ${meta.loadAverage}; batch ${meta.batch}, heads ${meta.heads}, ` +
    `headDim ${meta.headDim}; window ${meta.window}; sparse: ${meta.sparse}; documents: ${DOCUMENTS} packed (segmentIds); ` +
    `tfjs flags: ${JSON.stringify(meta.flags ?? {})}. Method: ${meta.method}. Median ms of ` +
    'the timed runs (warm-up runs compile the shaders and are not timed); ratio = naive / ours (> 1: ours is ' +
    `faster).${cpu ? ' cpu: median CPU time of Chromium\'s GPU process per run (all threads; the rendering work ' +
    'on a CPU renderer), less disturbed by the load of other processes than wall time.' : ''}`, '',
    `| seq | mask | mode | ours (ms) | naive (ms) | naive / ours |${cpu ? ' ours cpu (ms) | naive cpu (ms) | ' +
    'cpu naive / ours | runs ours / naive (ms) |' : ''}`,
    `|---|---|---|---|---|---|${cpu ? '---|---|---|---|' : ''}`,
  ];
  for (const r of rows) {
    const o = 'medianMs' in r.ours ? r.ours.medianMs : null, n = 'medianMs' in r.naive ? r.naive.medianMs : null;
    const ratio = o != null && n != null ? `${(n / o).toFixed(2)}×` : '';
    let line = `| ${r.seq} | ${r.mask} | ${r.mode} | ${cell(r.ours)} | ${cell(r.naive)} | ${ratio} |`;
    if (cpu) {
      const oc = 'medianCpuMs' in r.ours ? r.ours.medianCpuMs as number | null : null;
      const nc = 'medianCpuMs' in r.naive ? r.naive.medianCpuMs as number | null : null;
      const runs = (x: BenchResult | {skipped: string}) =>
          'runsMs' in x ? x.runsMs.map((t) => t.toFixed(0)).join(' ') : '';
      line += ` ${oc ?? ''} | ${nc ?? ''} | ${oc != null && nc != null ? `${(nc / oc).toFixed(2)}×` : ''} | ` +
              `${runs(r.ours)} / ${runs(r.naive)} |`;
    }
    lines.push(line);
  }
  lines.push(...optionCosts(rows));
  return lines.join('\n') + '\n';
}

/** What each option row costs next to the 'dense' row (ours / ours) of the same seq and mode, wall and GPU-process CPU. */
function optionCosts(rows: Row[]): string[] {
  const ms = (r: Row | undefined, key: 'medianMs' | 'medianCpuMs') =>
      r != null && key in r.ours ? (r.ours as unknown as Record<string, number | null>)[key] : null;
  const ratio = (a: number | null, b: number | null) => a != null && b != null ? `${(a / b).toFixed(2)}×` : '—';
  const lines: string[] = [];
  for (const r of rows) {
    if (!OPTION_ROWS.includes(r.mask)) continue;
    const dense = rows.find((d) => d.mask === 'dense' && d.seq === r.seq && d.mode === r.mode);
    if (dense == null) continue;
    lines.push(`| ${r.seq} | ${r.mask}${r.mask === 'dropout' ? ` ${DROPOUT_RATE}` : ''} | ${r.mode} | ${
        ratio(ms(r, 'medianMs'), ms(dense, 'medianMs'))} | ${ratio(ms(r, 'medianCpuMs'), ms(dense, 'medianCpuMs'))} |`);
  }
  return lines.length === 0 ? [] : ['', 'Option cost: ours with the option / ours dense (same seq and mode, same page).', '',
    '| seq | option | mode | wall | gpu cpu |', '|---|---|---|---|---|', ...lines];
}

