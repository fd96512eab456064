/**
 * The browser demo page (bundled by scripts/demo-browser.ts with esbuild): pick a tfjs backend and an op, run a
 * timing sweep of the library's kernel against tfjs's naive attention, drawn live, and train a tiny transformer with
 * a live loss curve.
 *
 * URL parameters preset the controls (the test uses them to keep runs short): backend, op, minSeq, maxSeq, heads,
 * headDim, reps, naiveMaxGiB, trainAttention, trainSteps, trainBatch, lr, seed.
 * Results are in the DOM (table#results rows carry data-* attributes; body data-ready / data-sweep / data-train give
 * the status) and in window.__demoState.
 */
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-webgpu';
// Importing the package registers its kernels for cpu, webgl and webgpu (in an app: 'tfjs-efficient-attention').
import '../../src/index.js';
import {LineChart, Series} from './chart.js';
import {mountGeneratePanel} from './generate.js';
import {MAX_ABS_DIFF, measure, OpName, OPS, sequenceLengths, SweepConfig, SweepRow} from './sweep.js';
import {TASK, train, TRAIN_ATTENTION, TrainAttention, TrainStep} from './train.js';

type BackendName = 'webgpu' | 'webgl' | 'cpu';
const BACKENDS: BackendName[] = ['webgpu', 'webgl', 'cpu'];
type Status = 'idle' | 'running' | 'done' | 'error';

export interface DemoState {
  /** Whether the browser offers each backend (probed at load; webgpu needs an adapter, webgl a context). */
  available: Record<BackendName, boolean>;
  /** The tfjs backend in use, and its renderer. */
  backend: string | null;
  renderer: string;
  sweep: {status: Status; backend: string | null; op: OpName; heads: number; headDim: number; rows: SweepRow[];
          /** tf.memory().numTensors after the sweep minus before it. */
          leakedTensors?: number; error?: string};
  training: {status: Status; backend: string | null; attention: TrainAttention; steps: TrainStep[]; error?: string};
  /** Uncaught errors and unhandled rejections. */
  errors: string[];
}

declare global {
  interface Window {
    __demoState: DemoState;
  }
}

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const params = new URLSearchParams(location.search);

const state: DemoState = {
  available: {webgpu: false, webgl: false, cpu: true},
  backend: null,
  renderer: '',
  sweep: {status: 'idle', backend: null, op: 'flash', heads: 0, headDim: 0, rows: []},
  training: {status: 'idle', backend: null, attention: 'flash', steps: []},
  errors: [],
};
window.__demoState = state;

const backendSelect = $<HTMLSelectElement>('backend');
const opSelect = $<HTMLSelectElement>('op');
const trainAttentionSelect = $<HTMLSelectElement>('train-attention');
const sweepChart = new LineChart($<HTMLCanvasElement>('sweep-chart'), {
  xLabel: 'sequence length', yLabel: 'ms per call', xLog: true, yLog: true, formatX: String,
});
const lossChart = new LineChart($<HTMLCanvasElement>('loss-chart'), {xLabel: 'step', yLabel: 'loss'});
const LOSS_COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];

function errorText(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

function reportError(e: unknown): void {
  state.errors.push(e instanceof Error ? `${e.name}: ${e.message}` : String(e));
  const el = $('errors');
  el.hidden = false;
  el.textContent = state.errors.join('\n');
}
window.addEventListener('error', (e) => reportError(e.error ?? e.message));
window.addEventListener('unhandledrejection', (e) => reportError(e.reason));

function setStatus(kind: 'sweep' | 'train', status: Status): void {
  if (kind === 'sweep') state.sweep.status = status;
  else state.training.status = status;
  document.body.dataset[kind] = status;
  const busy = state.sweep.status === 'running' || state.training.status === 'running';
  for (const id of ['run-sweep', 'train', 'backend']) ($(id) as HTMLButtonElement).disabled = busy;
  $<HTMLButtonElement>('stop-sweep').disabled = state.sweep.status !== 'running';
  $<HTMLButtonElement>('stop-train').disabled = state.training.status !== 'running';
}

/** Lets the browser paint between measurements. */
const nextFrame = () => new Promise<void>((resolve) => requestAnimationFrame(() => resolve()));

/** Sets the input from the URL parameter, if given. */
function presetInput(id: string, param: string): void {
  if (params.has(param)) $<HTMLInputElement>(id).value = params.get(param)!;
}

function readNumber(id: string, min: number): number {
  const value = Number($<HTMLInputElement>(id).value);
  if (!Number.isFinite(value) || value < min) throw new Error(`${id} must be a number ≥ ${min}`);
  return value;
}

// ---- backends ----

async function probeBackends(): Promise<void> {
  const gpu = (navigator as Navigator & {gpu?: GPU}).gpu;
  state.available.webgpu = gpu != null && await gpu.requestAdapter().then((a) => a != null, () => false);
  const canvas = document.createElement('canvas');
  state.available.webgl = (canvas.getContext('webgl2') ?? canvas.getContext('webgl')) != null;
  for (const option of Array.from(backendSelect.options)) {
    const name = option.value as BackendName;
    option.disabled = !state.available[name];
    option.textContent = state.available[name] ? name : `${name} (not supported by this browser)`;
  }
}

async function useBackend(name: string): Promise<void> {
  if (tf.getBackend() === name && state.backend === name) return;
  $('active-backend').textContent = `starting ${name}…`;
  if (!(await tf.setBackend(name))) throw new Error(`tfjs backend ${name} failed to initialize`);
  await tf.ready();
  state.backend = tf.getBackend();
  state.renderer = describeRenderer(state.backend);
  $('active-backend').textContent = state.backend;
  $('renderer').textContent = state.renderer ? `(${state.renderer})` : '';
}

function describeRenderer(backend: string): string {
  try {
    if (backend === 'webgl') {
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      const gl = (tf.backend() as any).gpgpu.gl as WebGLRenderingContext;
      const info = gl.getExtension('WEBGL_debug_renderer_info');
      return `WebGL${tf.env().getNumber('WEBGL_VERSION')}, ${gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL :
                                                                              gl.RENDERER)}`;
    }
    if (backend === 'webgpu') {
      // eslint-disable-next-line @typescript-eslint/no-explicit-any
      const a = (tf.backend() as any).adapterInfo;
      return a ? `${a.vendor ?? ''} ${a.architecture ?? ''}`.trim() : '';
    }
  } catch {
    // The renderer string is decoration only.
  }
  return '';
}

// ---- sweep ----

let stopSweep = false;

function fmtMs(ms: number | null): string {
  return ms == null ? '' : ms >= 100 ? ms.toFixed(0) : ms >= 10 ? ms.toFixed(1) : ms.toFixed(2);
}

function fmtMB(bytes: number | undefined): string {
  if (bytes == null) return '–';
  const mb = bytes / 2 ** 20;
  return mb >= 10 ? mb.toFixed(0) : mb >= 1 ? mb.toFixed(1) : mb.toFixed(2);
}

function renderRow(row: SweepRow): void {
  const tbody = $('results').querySelector('tbody')!;
  const tr = document.createElement('tr');
  tr.id = `row-${row.seq}`;
  tr.dataset.seq = String(row.seq);
  tr.dataset.oursMs = String(row.ours.ms ?? '');
  tr.dataset.naiveMs = String(row.naive.ms ?? '');
  tr.dataset.maxAbsDiff = String(row.maxAbsDiff ?? '');
  const cell = (text: string, className = '') => {
    const td = document.createElement('td');
    td.textContent = text;
    if (className) td.className = className;
    tr.appendChild(td);
    return td;
  };
  cell(String(row.seq));
  cell(row.ours.ms != null ? fmtMs(row.ours.ms) : 'failed', row.ours.ms == null ? 'failed' : 'ours');
  cell(row.naive.ms != null ? fmtMs(row.naive.ms) : row.naive.skipped ? 'skipped' : 'failed',
       row.naive.ms == null ? 'failed' : 'naive');
  cell(row.ours.ms != null && row.naive.ms != null ? `${(row.naive.ms / row.ours.ms).toFixed(2)}×` : '');
  cell(`${fmtMB(row.ours.peakBytes)} / ${fmtMB(row.naive.peakBytes)}`);
  const differ = row.maxAbsDiff != null && !(row.maxAbsDiff < MAX_ABS_DIFF);
  cell(row.maxAbsDiff == null ? '' : row.maxAbsDiff.toExponential(1), differ ? 'failed' : '');
  const notes = [row.ours.error && `ours: ${row.ours.error}`, row.naive.error && `naive: ${row.naive.error}`,
                 differ && `outputs differ by more than ${MAX_ABS_DIFF}`];
  cell(notes.filter(Boolean).join('; '), 'note');
  tbody.appendChild(tr);
}

function drawSweep(): void {
  const rows = state.sweep.rows;
  const series: Series[] = [
    {name: `ours: ${OPS[state.sweep.op]}`, color: '#1f77b4', points: rows.map((r) => [r.seq, r.ours.ms])},
    {name: 'naive: matMul → mask → softmax → matMul', color: '#d62728', dashed: true,
     points: rows.map((r) => [r.seq, r.naive.ms])},
  ];
  sweepChart.series = series;
  sweepChart.draw();
}

async function runSweep(): Promise<void> {
  stopSweep = false;
  let config: SweepConfig;
  try {
    const minSeq = readNumber('min-seq', 1), maxSeq = readNumber('max-seq', minSeq);
    config = {
      op: opSelect.value as OpName, seqs: sequenceLengths(minSeq, maxSeq), heads: readNumber('heads', 1),
      headDim: readNumber('head-dim', 1), reps: readNumber('reps', 1),
      naiveMaxBytes: Number(params.get('naiveMaxGiB') ?? 4) * 2 ** 30,
    };
  } catch (e) {
    $('sweep-status').textContent = errorText(e);
    return;
  }
  state.sweep = {status: 'running', backend: null, op: config.op, heads: config.heads, headDim: config.headDim,
                 rows: []};
  setStatus('sweep', 'running');
  $('results').querySelector('tbody')!.replaceChildren();
  drawSweep();
  try {
    await useBackend(backendSelect.value);
    state.sweep.backend = state.backend;
    const tensorsBefore = tf.memory().numTensors;
    for (const seq of config.seqs) {
      if (stopSweep) break;
      $('sweep-status').textContent = `${state.backend}: ${OPS[config.op]}, seq ${seq}, ${config.heads} heads × ` +
          `${config.headDim}: timing ours and naive…`;
      await nextFrame();
      const row = await measure(config, seq);
      state.sweep.rows.push(row);
      renderRow(row);
      drawSweep();
    }
    state.sweep.leakedTensors = tf.memory().numTensors - tensorsBefore;
    $('sweep-status').textContent = `${state.backend}: ${OPS[config.op]}, ` +
        `${config.heads} heads × ${config.headDim}, ` +
        `batch 1: ${stopSweep ? 'stopped' : 'done'} (${state.sweep.rows.length} lengths).`;
    setStatus('sweep', 'done');
  } catch (e) {
    state.sweep.error = errorText(e);
    $('sweep-status').textContent = `sweep failed: ${state.sweep.error}`;
    setStatus('sweep', 'error');
  }
}

// ---- training ----

let stopTraining = false;
const lossSeries: Series[] = [];

async function runTraining(): Promise<void> {
  stopTraining = false;
  const attention = trainAttentionSelect.value as TrainAttention;
  let steps: number, batch: number;
  try {
    [steps, batch] = [readNumber('train-steps', 1), readNumber('train-batch', 1)];
  } catch (e) {
    $('train-status').textContent = errorText(e);
    return;
  }
  state.training = {status: 'running', backend: null, attention, steps: []};
  setStatus('train', 'running');
  try {
    await useBackend(backendSelect.value);
    state.training.backend = state.backend;
    const series: Series = {name: `${attention} on ${state.backend}`,
                            color: LOSS_COLORS[lossSeries.length % LOSS_COLORS.length], points: []};
    lossSeries.push(series);
    const chance = Math.log(TASK.numValues);
    const longest = Math.max(steps, ...lossSeries.map((l) => l.points.length));
    lossChart.series = [{name: `chance: ln ${TASK.numValues}`, color: '#999', dashed: true, dots: false,
                         points: [[1, chance], [longest, chance]]}, ...lossSeries];
    const result = await train(
        {attention, steps, batch, learningRate: Number(params.get('lr') ?? 0.01),
         seed: Number(params.get('seed') ?? 1)},
        async (s) => {
          state.training.steps.push(s);
          series.points.push([s.step, s.loss]);
          lossChart.draw();
          $('train-status').textContent = `${TRAIN_ATTENTION[attention].label} on ${state.backend}: step ${s.step}/` +
              `${steps}, loss ${s.loss.toFixed(3)}, ${s.ms.toFixed(0)} ms/step`;
          await nextFrame();
        },
        () => stopTraining);
    const last = result[result.length - 1];
    $('train-status').textContent = `${TRAIN_ATTENTION[attention].label} on ${state.backend}: ` +
        `${stopTraining ? 'stopped' : 'done'} after ${result.length} steps, loss ${result[0]?.loss.toFixed(3)} → ` +
        `${last?.loss.toFixed(3)} (chance: ln ${TASK.numValues} ≈ ${Math.log(TASK.numValues).toFixed(3)}). ` +
        `Tensors alive: ${tf.memory().numTensors}.`;
    setStatus('train', 'done');
  } catch (e) {
    state.training.error = errorText(e);
    $('train-status').textContent = `training failed: ${state.training.error}`;
    setStatus('train', 'error');
  }
}

// ---- start ----

async function start(): Promise<void> {
  await probeBackends();
  const wanted = params.get('backend');
  const initial = wanted != null && BACKENDS.includes(wanted as BackendName) ? wanted :
      BACKENDS.find((b) => state.available[b])!;
  backendSelect.value = initial;
  if (params.has('op')) opSelect.value = params.get('op')!;
  if (params.has('trainAttention')) trainAttentionSelect.value = params.get('trainAttention')!;
  presetInput('min-seq', 'minSeq');
  presetInput('max-seq', 'maxSeq');
  presetInput('heads', 'heads');
  presetInput('head-dim', 'headDim');
  presetInput('reps', 'reps');
  presetInput('train-steps', 'trainSteps');
  presetInput('train-batch', 'trainBatch');
  $('run-sweep').addEventListener('click', () => void runSweep());
  $('stop-sweep').addEventListener('click', () => stopSweep = true);
  $('train').addEventListener('click', () => void runTraining());
  $('stop-train').addEventListener('click', () => stopTraining = true);
  window.addEventListener('resize', () => {
    sweepChart.draw();
    lossChart.draw();
  });
  drawSweep();
  lossChart.draw();
  mountGeneratePanel($('generate-panel'));
  // Start the backend now (a real GPU's first start takes a moment); if it fails, grey it out and try the next.
  for (const name of [initial, ...BACKENDS.filter((b) => b !== initial && state.available[b])]) {
    try {
      await useBackend(name);
      backendSelect.value = name;
      break;
    } catch (e) {
      state.available[name as BackendName] = false;
      const option = Array.from(backendSelect.options).find((o) => o.value === name);
      if (option != null) {
        option.disabled = true;
        option.textContent = `${name} (failed to start: ${errorText(e)})`;
      }
      $('active-backend').textContent = 'none';
    }
  }
  document.body.dataset.ready = 'true';
}

void start();
