/**
 * The suite's results: one row per (backend, case, impl, mode) with derived figures (TFLOP/s, ratios vs naive),
 * written as JSON (the input of bench/plot.ts) and as a markdown table.
 */
import {BenchCase, describeShape, Impl, Mode} from './cases.js';
import {FlopCounts} from './flops.js';
import {MemoryStats} from './measure.js';
import type {BackendInfo} from './node_worker.js';
import {Timing} from './timing.js';

export interface ResultRow {
  backend: string;
  case: BenchCase;
  impl: Impl;
  mode: Mode;
  /** Forward FLOPs of the case (forward+backward rows: multiply by 1 + BACKWARD_FACTOR). */
  flops: FlopCounts;
  timing?: Timing;
  memory?: MemoryStats;
  /** dense-equivalent TFLOP/s (dense FLOPs / median time) and the visited-tile figure (for naive = dense). */
  tflopsDense?: number;
  tflopsVisited?: number;
  /** On 'ours' and 'ort' rows: naive median / this median, naive memory / this memory. */
  speedupVsNaive?: number;
  tensorMemoryRatioVsNaive?: number;
  gpuMemoryRatioVsNaive?: number;
  /** On 'ours' forward rows: max |ours − naive| / max |naive|. */
  maxRelDiffVsNaive?: number;
  /** On 'ort' rows: max |ort − ours| / max |ours|. */
  maxRelDiffVsOurs?: number;
  leakedTensors?: number;
  error?: string;
  /** Why it was not run (too slow / too large at a smaller size, unsupported). */
  skipped?: string;
}

export interface BackendStatus {
  backend: string;
  available: boolean;
  reason?: string;
  info?: BackendInfo;
}

export interface SuiteResults {
  schema: 1;
  /** ISO time the run started. */
  date: string;
  machine: {id: string; hostname: string; cpu: string; cores: number; memoryBytes: number; node: string;
            platform: string; gpu?: string};
  config: Record<string, unknown>;
  backends: BackendStatus[];
  rows: ResultRow[];
  durationS: number;
}

/** Fills TFLOP/s and the ratios vs naive (rows of the same backend, case and mode). */
export function deriveFigures(rows: ResultRow[]): void {
  const key = (r: ResultRow) => `${r.backend}|${r.case.id}|${r.mode}`;
  const naive = new Map<string, ResultRow>();
  for (const r of rows) if (r.impl === 'naive' && r.timing) naive.set(key(r), r);
  for (const r of rows) {
    if (r.timing == null) continue;
    const factor = r.mode === 'backward' ? 3.5 : 1;
    const seconds = r.timing.medianMs / 1e3;
    r.tflopsDense = r.flops.dense * factor / seconds / 1e12;
    r.tflopsVisited = (r.impl === 'naive' ? r.flops.dense : r.flops.visited) * factor / seconds / 1e12;
    const n = naive.get(key(r));
    if (r.impl === 'naive' || n == null) continue;
    r.speedupVsNaive = n.timing!.medianMs / r.timing.medianMs;
    const ratio = (a?: number, b?: number) => a != null && b != null && b > 0 ? a / b : undefined;
    r.tensorMemoryRatioVsNaive = ratio(n.memory?.tensorPeakBytes, r.memory?.tensorPeakBytes);
    r.gpuMemoryRatioVsNaive = ratio(n.memory?.gpuPeakBytes, r.memory?.gpuPeakBytes);
  }
}

export function formatMs(ms?: number): string {
  if (ms == null) return '';
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 100) return `${ms.toFixed(0)} ms`;
  if (ms >= 10) return `${ms.toFixed(1)} ms`;
  return `${ms.toFixed(2)} ms`;
}

export function formatBytes(b?: number): string {
  if (b == null) return '';
  if (b >= 2 ** 30) return `${(b / 2 ** 30).toFixed(2)} GiB`;
  if (b >= 2 ** 20) return `${(b / 2 ** 20).toFixed(1)} MiB`;
  if (b >= 2 ** 10) return `${(b / 2 ** 10).toFixed(0)} KiB`;
  return `${b} B`;
}

function formatTflops(t?: number): string {
  if (t == null) return '';
  if (t >= 1) return t.toFixed(2);
  if (t >= 0.01) return t.toFixed(3);
  return `${(t * 1e3).toFixed(2)}G`;
}

const ratio = (x?: number) => x == null ? '' : `${x >= 10 ? x.toFixed(0) : x.toFixed(2)}×`;

function cell(r: ResultRow | undefined, f: (r: ResultRow) => string): string {
  if (r == null) return '—';
  if (r.skipped) return 'skip';
  if (r.error) return 'error';
  return f(r);
}

/** One markdown table per (backend, mode): ours vs naive (and ort) side by side. */
export function markdownReport(res: SuiteResults): string {
  const out: string[] = [];
  out.push(`# Attention benchmarks — ${res.machine.id}`, '');
  out.push(`${res.date} · ${res.machine.cpu} (${res.machine.cores} cores) · node ${res.machine.node} · ` +
           `${res.durationS.toFixed(0)} s`, '');
  out.push('Median wall time per call (one sync per sample); TFLOP/s dense-equivalent (4·B·H·S²·D forward, ×3.5 ' +
           'forward+backward) / visited 64×64 tiles; memory = peak engine tensor bytes above the inputs (naive ' +
           'includes its [S, S] mask), GPU = peak bytes of the backend\'s buffers/textures. speedup and mem ratio = ' +
           'naive / ours.', '');
  for (const b of res.backends) {
    if (!b.available) {
      out.push(`## ${b.backend}: not run — ${b.reason}`, '');
      continue;
    }
    for (const mode of ['forward', 'backward'] as Mode[]) {
      const rows = res.rows.filter((r) => r.backend === b.backend && r.mode === mode);
      if (rows.length === 0) continue;
      const hasGpu = rows.some((r) => r.memory?.gpuPeakBytes != null);
      const hasOrt = rows.some((r) => r.impl === 'ort');
      out.push(`## ${b.info?.description ?? b.backend} — ${mode === 'forward' ? 'forward' : 'forward + backward'}`,
               '');
      if (b.info?.kernels) out.push(`Attention kernels: ${b.info.kernels}.`, '');
      const head = ['case', 'shape', 'ours', 'naive', 'speedup', 'TFLOP/s ours (dense / visited)', 'TFLOP/s naive',
                    'mem ours', 'mem naive', 'mem ratio'];
      if (hasGpu) head.push('GPU ours', 'GPU naive');
      if (hasOrt) head.push('ort', 'ort / ours', 'ort rel diff');
      if (mode === 'forward') head.push('max rel diff');
      out.push(`| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`);
      const ids = [...new Set(rows.map((r) => r.case.id))];
      for (const id of ids) {
        const get = (impl: Impl) => rows.find((r) => r.case.id === id && r.impl === impl);
        const o = get('ours'), n = get('naive'), x = get('ort');
        const c = (o ?? n ?? x)!.case;
        const line = [
          id.split('/').slice(0, -1).join('/') + (c.op === 'sparse' ? ` d=${c.density}` : ''), describeShape(c),
          cell(o, (r) => formatMs(r.timing?.medianMs)), cell(n, (r) => formatMs(r.timing?.medianMs)),
          ratio(o?.speedupVsNaive),
          cell(o, (r) => `${formatTflops(r.tflopsDense)} / ${formatTflops(r.tflopsVisited)}`),
          cell(n, (r) => formatTflops(r.tflopsDense)),
          cell(o, (r) => formatBytes(r.memory?.tensorPeakBytes)), cell(n, (r) => formatBytes(r.memory?.tensorPeakBytes)),
          ratio(o?.tensorMemoryRatioVsNaive),
        ];
        if (hasGpu) {
          line.push(cell(o, (r) => formatBytes(r.memory?.gpuPeakBytes)),
                    cell(n, (r) => formatBytes(r.memory?.gpuPeakBytes)));
        }
        if (hasOrt) {
          line.push(cell(x, (r) => formatMs(r.timing?.medianMs)),
                    x?.timing && o?.timing ? ratio(x.timing.medianMs / o.timing.medianMs) : '',
                    x?.maxRelDiffVsOurs != null ? x.maxRelDiffVsOurs.toExponential(1) : '');
        }
        if (mode === 'forward') line.push(o?.maxRelDiffVsNaive != null ? o.maxRelDiffVsNaive.toExponential(1) : '');
        out.push(`| ${line.join(' | ')} |`);
      }
      out.push('');
      const notes = rows.filter((r) => r.error || r.skipped);
      if (notes.length > 0) {
        out.push('<details><summary>errors and skips</summary>', '');
        for (const r of notes) out.push(`- ${r.case.id} ${r.impl}: ${r.error ? `error: ${r.error}` : r.skipped}`);
        out.push('', '</details>', '');
      }
    }
  }
  return out.join('\n');
}
