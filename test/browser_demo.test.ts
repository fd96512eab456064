/**
 * The browser demo (examples/browser, `npm run demo:browser`) in headless Chromium (SwiftShader), driven like a user:
 * pick a backend and an op, click "Run sweep" over a short range, read the results table, click "Train", read the
 * loss curve, take a screenshot. So the demo cannot silently break.
 *
 * Asserted: every length has a numeric time for ours and for naive, ours' output matches naive's (max abs diff
 * < 1e-3; the page computes it from the two outputs on the same random inputs; measured 1e-7 on cpu, 1e-6 on webgl),
 * ours' peak tensor memory is under a quarter of naive's at 512, the page uses the backend picked, the loss falls
 * (mean of the last 5 of 40 steps < 0.8 × the first 5; measured 2.2 → 0.7 on webgl), no tensors leak across a sweep, and
 * the page logs no error (console errors included). Then, on a fresh load with a tiny ?naiveMaxGiB, that naive shows
 * as "skipped" with the reason.
 * The webgpu backend is only checked for being offered (SwiftShader's WebGPU compiles pipelines for minutes);
 * DEMO_TEST_WEBGPU=1 also runs a sweep on it.
 * Screenshot: .cache/browser-demo/demo.png (git-ignored).
 */
import {mkdirSync} from 'node:fs';
import path from 'node:path';
import {expect} from 'chai';
import type {Page} from 'playwright-core';
import type {DemoState} from '../examples/browser/main.js';
import {buildDemo, DEMO_DIR} from '../scripts/demo-browser.js';
import {REPO_ROOT} from './browser/bundle.js';
import {BrowserSession, launchChromium, skipWithoutChromium} from './browser/chromium.js';
import {startStaticServer, StaticServer} from './browser/server.js';

const MAX_DIFF = 1e-3;
const SEQS = [128, 256, 512];
const SCREENSHOT = path.join(REPO_ROOT, '.cache/browser-demo/demo.png');

const demoState = (page: Page) => page.evaluate(() => window.__demoState) as Promise<DemoState>;

describe('browser demo (examples/browser) in headless Chromium', function() {
  this.timeout(300_000);
  let server: StaticServer | null = null;
  let session: BrowserSession | null = null;
  const page = () => session!.page;

  before(async function() {
    skipWithoutChromium(this);
    await buildDemo();
    server = await startStaticServer(DEMO_DIR);
    session = await launchChromium('swiftshader');
    await page().setViewportSize({width: 1100, height: 1400});
    const query = `backend=cpu&maxSeq=${SEQS[SEQS.length - 1]}&heads=2&headDim=32&reps=2&trainSteps=40`;
    await page().goto(`${server.url}/index.html?${query}`);
    await page().waitForSelector('body[data-ready="true"]', {timeout: 60_000});
  });

  after(async () => {
    await session?.close();
    await server?.close();
  });

  afterEach(function() {
    const errors = session?.consoleMessages.filter((m) => m.startsWith('pageerror') || m.startsWith('error'));
    if (errors != null && errors.length > 0) console.log(`    page console:\n      ${errors.join('\n      ')}`);
  });

  it('offers cpu and webgl (and says whether webgpu is available)', async () => {
    const state = await demoState(page());
    console.log(`    available: ${JSON.stringify(state.available)}`);
    expect(state.available.cpu).to.equal(true);
    expect(state.available.webgl).to.equal(true);
    const disabled = await page().$$eval('#backend option', (os) =>
        os.map((o) => [(o as HTMLOptionElement).value, (o as HTMLOptionElement).disabled]));
    expect(Object.fromEntries(disabled)).to.deep.equal({webgpu: !state.available.webgpu, webgl: false, cpu: false});
    expect(await page().textContent('#active-backend')).to.equal('cpu');
  });

  const sweeps: Array<[string, string]> = [['cpu', 'sparse'], ['webgl', 'flash-causal']];
  if (process.env.DEMO_TEST_WEBGPU === '1') sweeps.push(['webgpu', 'sliding']);
  for (const [backend, op] of sweeps) {
    it(`${backend}: the ${op} sweep times ours and naive at ${SEQS.join(', ')} and they agree`, async () => {
      await page().selectOption('#backend', backend);
      await page().selectOption('#op', op);
      await page().click('#run-sweep');
      await page().waitForSelector('body[data-sweep="done"], body[data-sweep="error"]', {timeout: 240_000});
      const state = await demoState(page());
      expect(state.sweep.error, 'sweep error').to.equal(undefined);
      expect(state.sweep.backend).to.equal(backend);
      expect(await page().textContent('#active-backend')).to.equal(backend);
      expect(state.sweep.rows.map((r) => r.seq)).to.deep.equal(SEQS);
      for (const row of state.sweep.rows) {
        const label = `seq ${row.seq}: ${JSON.stringify(row)}`;
        expect(row.ours.ms, label).to.be.a('number').and.to.be.greaterThan(0);
        expect(row.naive.ms, label).to.be.a('number').and.to.be.greaterThan(0);
        expect(row.maxAbsDiff, label).to.be.a('number').and.to.be.lessThan(MAX_DIFF);
      }
      // Naive holds [heads, seq, seq] scores (2 MiB each at 512 × 2 heads); ours only the output and lse.
      const last = state.sweep.rows[state.sweep.rows.length - 1];
      expect(last.ours.peakBytes, JSON.stringify(last)).to.be.lessThan(last.naive.peakBytes! / 4);
      // The table shows the same numbers.
      const cells = await page().$$eval('#results tbody tr', (trs) => trs.map((tr) => ({
        seq: Number((tr as HTMLElement).dataset.seq), ours: Number((tr as HTMLElement).dataset.oursMs),
        naive: Number((tr as HTMLElement).dataset.naiveMs), diff: Number((tr as HTMLElement).dataset.maxAbsDiff),
      })));
      expect(cells.map((c) => c.seq)).to.deep.equal(SEQS);
      for (const c of cells) expect([c.ours, c.naive, c.diff].every(Number.isFinite), JSON.stringify(c)).to.equal(true);
      console.log(`    ${backend} ${op}: ` + state.sweep.rows.map((r) =>
          `seq ${r.seq} ours ${r.ours.ms!.toFixed(1)} ms ${(r.ours.peakBytes! / 2 ** 20).toFixed(2)} MB, ` +
          `naive ${r.naive.ms!.toFixed(1)} ms ${(r.naive.peakBytes! / 2 ** 20).toFixed(2)} MB, ` +
          `diff ${r.maxAbsDiff!.toExponential(1)}`).join('; '));
      expect(state.sweep.leakedTensors, 'tensors left by the sweep').to.equal(0);
      expect(await page().textContent('#sweep-status')).to.match(/done/);
    });
  }

  it('trains the tiny transformer with flash attention on webgl: the loss falls', async () => {
    await page().selectOption('#backend', 'webgl');
    await page().selectOption('#train-attention', 'flash');
    await page().click('#train');
    await page().waitForSelector('body[data-train="done"], body[data-train="error"]', {timeout: 240_000});
    const {training} = await demoState(page());
    expect(training.error, 'training error').to.equal(undefined);
    expect(training.backend).to.equal('webgl');
    const losses = training.steps.map((s) => s.loss);
    expect(losses).to.have.length(40);
    expect(losses.every(Number.isFinite), String(losses)).to.equal(true);
    const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
    const first = mean(losses.slice(0, 5)), last = mean(losses.slice(-5));
    console.log(`    loss ${first.toFixed(3)} → ${last.toFixed(3)} (first/last 5 steps), ` +
                `${mean(training.steps.slice(1).map((s) => s.ms)).toFixed(0)} ms/step`);
    expect(last, losses.map((l) => l.toFixed(2)).join(' ')).to.be.lessThan(0.8 * first);
  });

  it('takes a screenshot and the page logged no error', async () => {
    mkdirSync(path.dirname(SCREENSHOT), {recursive: true});
    await page().screenshot({path: SCREENSHOT, fullPage: true});
    console.log(`    screenshot: ${path.relative(REPO_ROOT, SCREENSHOT)}`);
    const state = await demoState(page());
    expect(state.errors).to.deep.equal([]);
    expect(session!.consoleMessages.filter((m) => /^(pageerror|error):/.test(m))).to.deep.equal([]);
  });

  it('shows naive as skipped when its scores would not fit the memory budget (?naiveMaxGiB)', async () => {
    await page().goto(`${server!.url}/index.html?backend=cpu&minSeq=64&maxSeq=64&heads=1&headDim=8&reps=1` +
                      '&naiveMaxGiB=0.000001');
    await page().waitForSelector('body[data-ready="true"]', {timeout: 60_000});
    await page().click('#run-sweep');
    await page().waitForSelector('body[data-sweep="done"], body[data-sweep="error"]', {timeout: 60_000});
    const [row] = (await demoState(page())).sweep.rows;
    expect(row.ours.ms, JSON.stringify(row)).to.be.a('number');
    expect(row.naive, JSON.stringify(row)).to.include({ms: null, skipped: true});
    const cells = await page().$$eval('#row-64 td', (tds) => tds.map((td) => td.textContent ?? ''));
    expect(cells[2]).to.equal('skipped');
    expect(cells[cells.length - 1]).to.match(/naive: skipped: would hold/);
  });
});
