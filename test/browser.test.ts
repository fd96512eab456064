/**
 * The webgl kernels in headless Chromium (WebGL2 on SwiftShader, and on Mesa llvmpipe through ANGLE's GL backend):
 * the shared cases (test/cases.ts), selected by tag: on SwiftShader the 'quick' ones, the option cases and those
 * tagged 'chromium-webgl' (long sequences, the 65,535-iteration loop limit of llvmpipe); 'llvmpipe' on llvmpipe;
 * 'single-target' without multiple render targets; 'webgl1' on a WebGL1 context. Plus what the table cannot say:
 * the kernels the path runs (tf.profile), the dropout keep mask bit for bit, queryOffsets clamping on the device.
 *
 * Tolerance: max error relative to max |reference| (see test/check_case.ts): 2e-5 forward, 2e-4 gradients.
 * Measured on SwiftShader: forward 1e-7..1e-6 for the shared cases, 6e-6 for 70,000 keys (an average of 70,000
 * values is small, so fp32 summation error weighs more relative to it); gradients 1e-7..1e-6, except a row with a
 * single key, where dS = P∘(dP − D) is an exact cancellation (dP = D) that fp32 resolves to ~6e-5 of the 1e-3 floor.
 */
import {expect} from 'chai';
import {AttentionCase, CASES, hasTag} from './cases.js';
import {AttentionPage, openAttentionPage, runSharedCasesInBrowser} from './browser/attention_page.js';
import {skipWithoutChromium} from './browser/chromium.js';
import {assertCaseResult, caseSeed} from './shared_runner.js';
import {TOLERANCES} from './tolerances.js';
import {dropoutKeepRow, makeDropoutPlan} from '../src/plan/philox.js';

// test/tolerances.ts's webgl row (gradients 2e-4: the single-key rows' cancellation measured up to 1.1e-4 once).
const TOLERANCE = TOLERANCES.webgl;
/** Cases of the options of issues 16–18 (queryOffsets, mask, bias, ALiBi, segments, dropout): all run here. */
const usesOptions = (c: AttentionCase) =>
  (['queryOffsets', 'mask', 'bias', 'alibi', 'segments', 'dropout'] as const).some((o) => c[o] != null);
const onSwiftShader = (c: AttentionCase) => hasTag(c, 'quick') || hasTag(c, 'chromium-webgl') || usesOptions(c);

/** The dropout keep masks the kernels applied equal src/plan/philox.ts's, bit for bit (rate 0.7: thresholds >= 2^31). */
function dropoutBitIdentical(page: () => AttentionPage): void {
  it('dropout keep mask is bit-identical to src/plan/philox.ts', async () => {
    for (const probe of [{batch: 2, heads: 3, seqQ: 9, seqK: 64, rate: 0.3, seed: 2 ** 40 + 12345},
                         {batch: 1, heads: 2, seqQ: 33, seqK: 37, rate: 0.7, seed: 4294967295}]) {
      const kept = await page().dropoutKeptMask(probe);
      const d = makeDropoutPlan(probe.rate, probe.seed);
      const expected: number[] = [];
      for (let b = 0; b < probe.batch; b++) {
        for (let h = 0; h < probe.heads; h++) {
          for (let i = 0; i < probe.seqQ; i++) expected.push(...dropoutKeepRow(d, b, h, i, 0, probe.seqK));
        }
      }
      const wrong = kept.reduce((n, x, e) => n + (x !== expected[e] ? 1 : 0), 0);
      expect(wrong, `${JSON.stringify(probe)}: ${wrong} of ${expected.length} keep decisions differ`).to.equal(0);
    }
  });
}

runSharedCasesInBrowser('webgl', TOLERANCE, onSwiftShader, {angle: 'swiftshader'}, (page) => {
  dropoutBitIdentical(page);
  it('clamps queryOffsets tensor values to [-seqQ, seqK] on the device', async () => {
    expect(await page().queryOffsetsClampDifference()).to.equal(0);
  });
  it('a NaN mask entry masks (as the reference), forward and backward', async () => {
    expect(await page().maskNaNDifference()).to.equal(0);
  });
  it('runs no BatchMatMul or Softmax kernel (tf.profile), forward and backward', async () => {
    const long = CASES.filter((c) => hasTag(c, 'browser') && c.forwardOnly);
    for (const c of long) {
      const kernels = await page().kernelsOfCase({...c, seqQ: Math.min(c.seqQ, 300), seqK: Math.min(c.seqK, 300)});
      expect(kernels, c.name).to.include.members([c.op === 'flash' ? 'FlashAttention' : 'SlidingWindowAttention']);
      expect(kernels.filter((k) => /BatchMatMul|Softmax/.test(k)), c.name).to.deep.equal([]);
    }
  });
});

runSharedCasesInBrowser('webgl', TOLERANCE, (c) => hasTag(c, 'llvmpipe'), {angle: 'gl-egl'}, (page) => {
  it('renders with Mesa llvmpipe (else this suite would test SwiftShader again)', () => {
    expect(page().info.renderer).to.match(/llvmpipe/i);
  });
  dropoutBitIdentical(page);
});

// Contexts without eight float render targets draw one output per program: keep that path covered.
runSharedCasesInBrowser('webgl', TOLERANCE, (c) => hasTag(c, 'single-target'),
                        {angle: 'swiftshader', flags: {ATTENTION_WEBGL_MULTI_TARGET: false}}, dropoutBitIdentical);

// Skipping hidden tiles in every pass (kernels/webgl/attention_options.ts, hiddenTileSkip). The test hook
// ATTENTION_WEBGL_POISON_HIDDEN_TILES makes the score programs write NaN into the tiles tileHidden rules out, instead
// of masked entries: a pass that still read them would turn O, lse, dQ, dK or dV into NaN (the lse / P·V passes read
// the poisoned scores, the dQ and dK passes the dS that the poisoned P makes NaN, the dV pass P itself). So these runs
// pass the float64 reference (same tolerance) only if every pass skips exactly the hidden tiles, and a visible tile
// wrongly taken for hidden would be missing from the sums. The control run (skipping only in the score programs, as
// before) shows that the poison is seen when a later pass walks the hidden tiles.
const POISON = {ATTENTION_WEBGL_POISON_HIDDEN_TILES: true};
/** Cases whose data can hide tiles: a mask, segment ids or per-batch query offsets (tileHidden's inputs). */
const hidesTiles = (c: AttentionCase) => c.mask != null || c.segments != null || Array.isArray(c.queryOffsets);
runSharedCasesInBrowser('webgl', TOLERANCE, hidesTiles, {angle: 'swiftshader', flags: POISON}, (page) => {
  it('control: with the later passes walking hidden tiles (ATTENTION_WEBGL_SKIP_HIDDEN_TILES false) the poison shows',
     async () => {
       // Not this page's flags: a page of its own.
       const control = await openAttentionPage(
           'webgl', {angle: 'swiftshader', flags: {...POISON, ATTENTION_WEBGL_SKIP_HIDDEN_TILES: false}});
       try {
         const index = CASES.findIndex((c) => c.name === 'mask [1, H, Sq, Sk] causal pattern (as a mask)');
         const r = await control.runCase(CASES[index], caseSeed(index));
         expect(r.problems.length > 0 || !(r.errors.output <= TOLERANCE.forward), JSON.stringify(r)).to.equal(true);
       } finally {
         await control.close();
       }
       expect(page().info.backend).to.equal('webgl');
     });
});
runSharedCasesInBrowser('webgl', TOLERANCE, hidesTiles,
                        {angle: 'swiftshader', flags: {...POISON, ATTENTION_WEBGL_MULTI_TARGET: false}});

describe('webgl in Chromium on a WebGL1 context', function() {
  this.timeout(600_000);
  let page: AttentionPage | null = null;
  before(async function() {
    skipWithoutChromium(this);
    page = await openAttentionPage('webgl', {webglVersion: 1});
  });
  after(async () => {
    await page?.close();
  });
  it('falls back to the composite kernels with one console warning', async () => {
    expect(page!.info.webglVersion).to.equal(1);
    for (const [index, c] of CASES.entries()) {
      if (hasTag(c, 'webgl1')) assertCaseResult(await page!.runCase(c, caseSeed(index)), TOLERANCE, c);
    }
    const warnings = page!.session.consoleMessages.filter((m) => m.includes('need WebGL2'));
    expect(warnings, page!.session.consoleMessages.join('\n')).to.have.length(1);
  });
});
