/**
 * Turns the suite's results.json into SVG charts (bench/suite/svg_chart.ts), next to it:
 *   time_<series>_<mode>.svg    median time vs seq (log-log): ours solid, naive dashed, ort dotted; colour = backend
 *   memory_<series>.svg         peak tensor memory vs seq (log-log), ours vs naive, forward and forward+backward
 *   gpu_memory_<series>.svg     peak GPU buffer/texture bytes vs seq, per GPU backend (when measured)
 *   sliding_<series>_<mode>.svg sliding-window time vs seq on linear axes (ours linear, naive quadratic)
 *   sparse_<series>_<mode>.svg  sparse time vs block density (linear axes)
 * plus charts.md, an index that shows them all.
 *
 *   npx tsx bench/plot.ts                      # the newest bench/results/<date>-<machine>/
 *   npx tsx bench/plot.ts bench/results/2026-11-30-vm-amd-epyc [more dirs or results.json files]
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import {fileURLToPath} from 'node:url';
import {Impl, Mode} from './suite/cases.js';
import {ResultRow, SuiteResults} from './suite/report.js';
import {formatBytesTick, formatMsTick, formatSeq, lineChart, PALETTE, Series} from './suite/svg_chart.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const DASH: Record<Impl, string | undefined> = {ours: undefined, naive: '7 4', ort: '2 3'};
const ORT_COLOR = '#7F7F7F';
const MODE_LABEL: Record<Mode, string> = {forward: 'forward', backward: 'forward + backward'};
const MODE_SHORT: Record<Mode, string> = {forward: 'fwd', backward: 'fwd+bwd'};

const fileSlug = (s: string) => s.replace(/[^A-Za-z0-9.]+/g, '-').replace(/^-|-$/g, '');

interface Chart {
  file: string;
  title: string;
  svg: string;
}

function backendColors(res: SuiteResults): Map<string, string> {
  return new Map(res.backends.map((b, i) => [b.backend, PALETTE[i % PALETTE.length]]));
}

function shapeNote(rows: ResultRow[]): string {
  const c = rows[0].case;
  const heads = c.kvHeads === c.heads ? `H${c.heads}` : `H${c.heads}/KV${c.kvHeads}`;
  return `B${c.batch} ${heads} D${c.headDim}, fp32`;
}

/** Series of (x, y) per backend × impl from rows that have timings. */
function timeSeries(rows: ResultRow[], colors: Map<string, string>, x: (r: ResultRow) => number): Series[] {
  const out: Series[] = [];
  const backends = [...new Set(rows.map((r) => r.backend))];
  for (const backend of backends) {
    for (const impl of ['ours', 'naive', 'ort'] as Impl[]) {
      const pts = rows.filter((r) => r.backend === backend && r.impl === impl && r.timing)
          .map((r) => [x(r), r.timing!.medianMs] as [number, number]);
      if (pts.length === 0) continue;
      // ONNX Runtime Web is another library: its own colour, so it doesn't read as one of our backends.
      out.push(impl === 'ort' ? {name: `ONNX Runtime Web (${backend})`, color: ORT_COLOR, dash: DASH.ort, points: pts} :
                                {name: `${backend} ${impl}`, color: colors.get(backend)!, dash: DASH[impl], points: pts});
    }
  }
  return out;
}

export function makeCharts(res: SuiteResults): Chart[] {
  const colors = backendColors(res);
  const charts: Chart[] = [];
  const machine = res.machine.gpu ? `${res.machine.id} (${res.machine.gpu})` : `${res.machine.id} (${res.machine.cpu})`;
  const seriesNames = [...new Set(res.rows.map((r) => r.case.series))];

  for (const series of seriesNames) {
    const all = res.rows.filter((r) => r.case.series === series);
    const isSparse = all[0].case.op === 'sparse';
    const isSliding = all[0].case.op === 'sliding';
    for (const mode of ['forward', 'backward'] as Mode[]) {
      const rows = all.filter((r) => r.mode === mode);
      if (!rows.some((r) => r.timing)) continue;
      const subtitle = `${shapeNote(rows)} · ${machine}`;
      if (isSparse) {
        charts.push({
          file: `sparse_${fileSlug(series)}_${mode}.svg`, title: `${series} vs density, ${MODE_LABEL[mode]}`,
          svg: lineChart({
            title: `Block-sparse attention: time vs density (${MODE_LABEL[mode]})`,
            subtitle: `seq ${rows[0].case.seq}, block ${rows[0].case.blockSize}, random blocks · ${subtitle}`,
            xLabel: 'fraction of blocks on', yLabel: 'median time per call', xScale: 'linear', yScale: 'linear',
            series: timeSeries(rows, colors, (r) => r.case.density!), formatY: formatMsTick,
          }),
        });
        continue;
      }
      if (new Set(rows.map((r) => r.case.seq)).size < 2) continue;
      charts.push({
        file: `time_${fileSlug(series)}_${mode}.svg`, title: `${series} time vs seq, ${MODE_LABEL[mode]}`,
        svg: lineChart({
          title: `${series}: time vs sequence length (${MODE_LABEL[mode]})`, subtitle,
          xLabel: 'sequence length (seqQ = seqK)', yLabel: 'median time per call', xScale: 'log', yScale: 'log',
          series: timeSeries(rows, colors, (r) => r.case.seq), formatX: formatSeq, formatY: formatMsTick,
        }),
      });
      if (isSliding) {
        charts.push({
          file: `sliding_${fileSlug(series)}_${mode}.svg`, title: `${series} linear scaling, ${MODE_LABEL[mode]}`,
          svg: lineChart({
            title: `Sliding window (${rows[0].case.window} keys): linear in seq (${MODE_LABEL[mode]})`, subtitle,
            xLabel: 'sequence length', yLabel: 'median time per call', xScale: 'linear', yScale: 'linear',
            series: timeSeries(rows, colors, (r) => r.case.seq), formatX: formatSeq, formatY: formatMsTick,
          }),
        });
      }
    }

    if (isSparse || new Set(all.map((r) => r.case.seq)).size < 2) continue;
    // Tensor memory is the backend's engine bookkeeping: the same on every backend; drawn from the first that has it.
    const memBackend = res.backends.find((b) => all.some((r) => r.backend === b.backend && r.memory?.tensorPeakBytes))
        ?.backend;
    if (memBackend != null) {
      const mem: Series[] = [];
      for (const mode of ['forward', 'backward'] as Mode[]) {
        for (const impl of ['ours', 'naive'] as Impl[]) {
          const pts = all.filter((r) => r.backend === memBackend && r.mode === mode && r.impl === impl &&
                                        r.memory?.tensorPeakBytes)
              .map((r) => [r.case.seq, r.memory!.tensorPeakBytes!] as [number, number]);
          mem.push({name: `${impl} ${MODE_SHORT[mode]}`, color: PALETTE[mode === 'forward' ? 0 : 1],
                    dash: DASH[impl], points: pts});
        }
      }
      charts.push({
        file: `memory_${fileSlug(series)}.svg`, title: `${series} peak tensor memory vs seq`,
        svg: lineChart({
          title: `${series}: peak tensor memory vs sequence length`,
          subtitle: `${shapeNote(all)} · tfjs engine bytes above the inputs (${memBackend}) · ${machine}`,
          xLabel: 'sequence length', yLabel: 'peak memory', xScale: 'log', yScale: 'log', series: mem,
          formatX: formatSeq, formatY: formatBytesTick, yBinary: true,
        }),
      });
    }
    const gpuRows = all.filter((r) => r.memory?.gpuPeakBytes);
    if (gpuRows.length > 0) {
      const gpu: Series[] = [];
      for (const backend of [...new Set(gpuRows.map((r) => r.backend))]) {
        for (const impl of ['ours', 'naive'] as Impl[]) {
          const pts = gpuRows.filter((r) => r.backend === backend && r.impl === impl && r.mode === 'forward')
              .map((r) => [r.case.seq, r.memory!.gpuPeakBytes!] as [number, number]);
          gpu.push({name: `${backend} ${impl}`, color: colors.get(backend)!, dash: DASH[impl], points: pts});
        }
      }
      charts.push({
        file: `gpu_memory_${fileSlug(series)}.svg`, title: `${series} peak GPU memory vs seq (forward)`,
        svg: lineChart({
          title: `${series}: peak GPU memory vs sequence length (forward)`,
          subtitle: `${shapeNote(all)} · buffer/texture bytes in use above the start · ${machine}`,
          xLabel: 'sequence length', yLabel: 'peak GPU memory', xScale: 'log', yScale: 'log', series: gpu,
          formatX: formatSeq, formatY: formatBytesTick, yBinary: true,
        }),
      });
    }
  }
  return charts;
}

function newestResultsDir(): string {
  const base = path.join(ROOT, 'bench', 'results');
  const dirs = fs.existsSync(base) ? fs.readdirSync(base).filter((d) => fs.existsSync(path.join(base, d, 'results.json')))
      .map((d) => path.join(base, d)) : [];
  if (dirs.length === 0) throw new Error('no bench/results/*/results.json: run `npx tsx bench/suite.ts` first');
  return dirs.sort((a, b) => fs.statSync(path.join(b, 'results.json')).mtimeMs -
                             fs.statSync(path.join(a, 'results.json')).mtimeMs)[0];
}

export function plotResults(jsonPath: string): string[] {
  const res = JSON.parse(fs.readFileSync(jsonPath, 'utf8')) as SuiteResults;
  const dir = path.dirname(jsonPath);
  const charts = makeCharts(res);
  const index = [`# Charts — ${res.machine.id}`, '', `From results.json (${res.date}).`, ''];
  for (const c of charts) {
    fs.writeFileSync(path.join(dir, c.file), c.svg + '\n');
    index.push(`## ${c.title}`, '', `![${c.title}](${c.file})`, '');
  }
  fs.writeFileSync(path.join(dir, 'charts.md'), index.join('\n'));
  return charts.map((c) => path.join(dir, c.file));
}

const isMain = process.argv[1] != null && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  try {
    const args = process.argv.slice(2);
    const targets = args.length ? args : [newestResultsDir()];
    for (const t of targets) {
      const json = t.endsWith('.json') ? t : path.join(t, 'results.json');
      const files = plotResults(json);
      console.log(`${path.relative(process.cwd(), path.dirname(json))}: ${files.length} charts (charts.md lists them)`);
    }
  } catch (e) {
    console.error((e as Error).message);
    process.exitCode = 1;
  }
}
