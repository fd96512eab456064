/**
 * Keeps the benchmark suite from rotting: runs `bench/suite.ts --quick` (cpu + wasm, tiny sweep) programmatically
 * into a temporary folder and checks that it produced sane results — positive times, FLOP rates and memory for every
 * run of ours, ratios vs naive where naive ran, ours matching naive, a markdown table and charts. Timings themselves
 * are not asserted (performance goals live in the benchmarks, not in tests).
 */
import {expect} from 'chai';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {plotResults} from '../bench/plot.js';
import {defaultOptions, runSuite} from '../bench/suite.js';
import type {SuiteResults} from '../bench/suite/report.js';

describe('bench suite --quick', function() {
  this.timeout(600_000);  // ~40 s on 2 idle cores; minutes when other processes share them
  let outDir: string;
  let results: SuiteResults;

  before(async () => {
    outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-quick-'));
    await runSuite({...defaultOptions(true), outDir, log: false});
    results = JSON.parse(fs.readFileSync(path.join(outDir, 'results.json'), 'utf8'));
  });

  after(() => fs.rmSync(outDir, {recursive: true, force: true}));

  it('ran cpu and wasm', () => {
    for (const name of ['cpu', 'wasm']) {
      const b = results.backends.find((x) => x.backend === name);
      expect(b?.available, `${name}: ${b?.reason}`).to.equal(true);
    }
    expect(results.machine.id).to.be.a('string').and.not.empty;
  });

  it('timed every run of ours, forward and forward+backward, with positive figures', () => {
    const ours = results.rows.filter((r) => r.impl === 'ours');
    expect(ours.length).to.be.greaterThan(10);
    expect(new Set(ours.map((r) => r.mode))).to.deep.equal(new Set(['forward', 'backward']));
    for (const r of ours) {
      const what = `${r.backend} ${r.case.id} ${r.mode}`;
      expect(r.error, what).to.equal(undefined);
      expect(r.timing!.medianMs, what).to.be.greaterThan(0);
      expect(r.timing!.samplesMs.every((s) => s > 0), what).to.equal(true);
      expect(r.tflopsDense!, what).to.be.greaterThan(0);
      expect(r.tflopsVisited!, what).to.be.greaterThan(0);
      expect(r.flops.visited, what).to.be.at.most(r.flops.dense);
      expect(r.flops.visible, what).to.be.at.most(r.flops.visited);
      expect(r.memory!.tensorPeakBytes!, what).to.be.greaterThan(0);
      expect(r.memory!.rssBytes!, what).to.be.greaterThan(0);
    }
  });

  it('compared against naive: ratios present, outputs equal, no leaks', () => {
    const withRatio = results.rows.filter((r) => r.impl === 'ours' && r.speedupVsNaive != null);
    expect(withRatio.length).to.be.greaterThan(10);
    for (const r of withRatio) {
      expect(r.speedupVsNaive!).to.be.greaterThan(0);
      expect(r.tensorMemoryRatioVsNaive!).to.be.greaterThan(0);
    }
    for (const r of results.rows.filter((x) => x.impl === 'ours' && x.mode === 'forward')) {
      expect(r.maxRelDiffVsNaive, `${r.backend} ${r.case.id}`).to.be.lessThan(1e-4);
    }
    for (const r of results.rows.filter((x) => x.impl === 'ours' && !x.error)) {
      const jobFailed = results.rows.some((x) => x.backend === r.backend && x.case.id === r.case.id && x.error);
      if (!jobFailed) expect(r.leakedTensors, `${r.backend} ${r.case.id}`).to.equal(0);
    }
  });

  it('wrote the markdown table and the charts', () => {
    const md = fs.readFileSync(path.join(outDir, 'results.md'), 'utf8');
    expect(md).to.match(/\| case \| shape \| ours \| naive \| speedup/);
    const charts = plotResults(path.join(outDir, 'results.json'));
    expect(charts.some((f) => path.basename(f).startsWith('time_'))).to.equal(true);
    expect(charts.some((f) => path.basename(f).startsWith('memory_'))).to.equal(true);
    expect(charts.some((f) => path.basename(f).startsWith('sparse_'))).to.equal(true);
    for (const f of charts) expect(fs.readFileSync(f, 'utf8')).to.match(/^<svg[\s\S]*<\/svg>\s*$/);
  });
});

describe('bench suite --section webgpu-options --quick --backend cpu', function() {
  this.timeout(300_000);  // ~10 s on 2 idle cores

  it('times every row or reports why not, and writes the ratios', async () => {
    const outDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-options-'));
    const tf = await import('@tensorflow/tfjs-core');
    const backendBefore = tf.getBackend();
    try {
      const {main} = await import('../bench/suite/sections/webgpu_options.js');
      const ratios = await main(['--quick', '--backend', 'cpu', '--out', outDir]);
      const written = JSON.parse(fs.readFileSync(path.join(outDir, fs.readdirSync(outDir).find((f) =>
          f.endsWith('.json'))!), 'utf8')) as {rows: Array<{name: string, impl: string, ms: number | null, error?: string}>};
      expect(written.rows.length).to.equal(22);
      for (const r of written.rows) {
        expect(r.ms != null || (r.error ?? '').length > 0, `${r.name} ${r.impl}`).to.equal(true);
        if (r.ms != null) expect(r.ms, `${r.name} ${r.impl}`).to.be.greaterThan(0);
        // naive is plain tfjs: it always runs
        if (r.impl === 'naive') expect(r.error, r.name).to.equal(undefined);
      }
      expect(ratios.length).to.equal(16);
      expect(ratios.filter((r) => r.ratio != null).length).to.be.greaterThan(0);
    } finally {
      fs.rmSync(outDir, {recursive: true, force: true});
      if (backendBefore) await tf.setBackend(backendBefore);
    }
  });
});
