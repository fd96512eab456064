/**
 * The webgl kernels in headless Chromium (WebGL2 on SwiftShader, and on Mesa llvmpipe through ANGLE's GL backend):
 * the shared cases (the 'quick' ones plus a few more — SwiftShader is a CPU), long sequences, the 65,535-iteration
 * loop limit of llvmpipe, the kernels the path runs (tf.profile) and the WebGL1 fallback.
 *
 * Tolerance: max error relative to max |reference| (see test/check_case.ts): 2e-5 forward, 2e-4 gradients.
 * Measured on SwiftShader: forward 1e-7..1e-6 for the shared cases, 6e-6 for 70,000 keys (an average of 70,000
 * values is small, so fp32 summation error weighs more relative to it); gradients 1e-7..1e-6, except a row with a
 * single key, where dS = P∘(dP − D) is an exact cancellation (dP = D) that fp32 resolves to ~6e-5 of the 1e-3 floor.
 */
import {expect} from 'chai';
import type {AttentionCase} from './cases.js';
import {AttentionPage, openAttentionPage, runSharedCasesInBrowser} from './browser/attention_page.js';
import {skipWithoutChromium} from './browser/chromium.js';
import {assertCaseResult} from './shared_runner.js';
import {TOLERANCES} from './tolerances.js';
import {dropoutKeepRow, makeDropoutPlan} from '../src/plan/philox.js';

// test/tolerances.ts's webgl row (gradients 2e-4: the single-key rows' cancellation measured up to 1.1e-4 once).
const TOLERANCE = TOLERANCES.webgl;
const EXTRA = new Set(['flash D256 S77', 'flash causal keyLengths tensor', 'sliding GQA keyLengths softcap',
                       'sparse bigBird per-head causal S300', 'sparse GQA keyLengths softcap causal']);
/** Cases of the options of issues 16–18 (queryOffsets, mask, bias, ALiBi, segments, dropout): all run here. */
const usesOptions = (c: AttentionCase) =>
  (['queryOffsets', 'mask', 'bias', 'alibi', 'segments', 'dropout'] as const).some((o) => c[o] != null);
const selected = (c: AttentionCase) => c.tags?.includes('quick') === true || EXTRA.has(c.name) || usesOptions(c);

/** Keys past 65,535 in one row: a kernel with one loop over the keys would stop early on llvmpipe. */
const LONG_KEYS: AttentionCase = {name: 'flash seqQ 4, seqK 70000 (65,535-iteration trap)', op: 'flash', batch: 1,
                                  seqQ: 4, seqK: 70000, heads: 1, kvHeads: 1, headDim: 16};
const LONG_FORWARD: AttentionCase[] = [
  {name: 'flash causal seq 4096 forward', op: 'flash', batch: 1, seqQ: 4096, seqK: 4096, heads: 1, kvHeads: 1,
   headDim: 64, causal: true},
  {name: 'sliding w256 seq 4096 GQA forward', op: 'sliding', batch: 1, seqQ: 4096, seqK: 4096, heads: 2, kvHeads: 1,
   headDim: 32, windowSize: 256},
];

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

runSharedCasesInBrowser('webgl', TOLERANCE, selected, {angle: 'swiftshader'}, (page) => {
  dropoutBitIdentical(page);
  it('clamps queryOffsets tensor values to [-seqQ, seqK] on the device', async () => {
    expect(await page().queryOffsetsClampDifference()).to.equal(0);
  });
  it('a NaN mask entry masks (as the reference), forward and backward', async () => {
    expect(await page().maskNaNDifference()).to.equal(0);
  });
  for (const c of LONG_FORWARD) {
    it(c.name, async () => assertCaseResult(await page().runForwardCase(c, 7), TOLERANCE));
  }
  it(LONG_KEYS.name, async () => assertCaseResult(await page().runCase(LONG_KEYS, 11), TOLERANCE));
  it('runs no BatchMatMul or Softmax kernel (tf.profile), forward and backward', async () => {
    for (const c of [LONG_FORWARD[0], {...LONG_FORWARD[1], seqQ: 300, seqK: 300}]) {
      const kernels = await page().kernelsOfCase({...c, seqQ: Math.min(c.seqQ, 300), seqK: Math.min(c.seqK, 300)});
      expect(kernels, c.name).to.include.members([c.op === 'flash' ? 'FlashAttention' : 'SlidingWindowAttention']);
      expect(kernels.filter((k) => /BatchMatMul|Softmax/.test(k)), c.name).to.deep.equal([]);
    }
  });
});

const LLVMPIPE = new Set(['flash causal S77 H3 D64', 'flash keyLengths [77, 0, 30] (empty batch)',
                          'sliding w16 S130 D64', 'sparse fromBlockMask with empty rows',
                          'mask float32 [B, H, Sq, Sk] with an empty row, GQA', 'dropout 0.3 dense GQA']);
runSharedCasesInBrowser('webgl', TOLERANCE, (c) => LLVMPIPE.has(c.name), {angle: 'gl-egl'}, (page) => {
  it('renders with Mesa llvmpipe (else this suite would test SwiftShader again)', () => {
    expect(page().info.renderer).to.match(/llvmpipe/i);
  });
  dropoutBitIdentical(page);
  it(LONG_KEYS.name, async () => assertCaseResult(await page().runCase(LONG_KEYS, 13), TOLERANCE));
});

// Contexts without eight float render targets draw one output per program: keep that path covered.
const SINGLE_TARGET = new Set([...LLVMPIPE, 'flash softcap 5, scale 1', 'sparse GQA keyLengths softcap causal',
                               'bias [B, Sq, Sk] + mask [B, H, Sq, Sk] seqQ7 seqK130', 'segments 3 docs + causal + GQA',
                               'queryOffsets tensor, sliding decode seqQ1', 'ALiBi [heads] dense S130',
                               'dropout 0.1 causal + mask + bias, seed > 2^32', 'dropout 0.5 sparse local']);
runSharedCasesInBrowser('webgl', TOLERANCE, (c) => SINGLE_TARGET.has(c.name),
                        {angle: 'swiftshader', flags: {ATTENTION_WEBGL_MULTI_TARGET: false}}, dropoutBitIdentical);

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
    const c: AttentionCase = {name: 'webgl1 causal S40', op: 'flash', batch: 1, seqQ: 40, seqK: 40, heads: 2,
                              kvHeads: 1, headDim: 16, causal: true};
    assertCaseResult(await page!.runCase(c, 5), TOLERANCE);
    assertCaseResult(await page!.runCase({...c, name: 'webgl1 sliding', op: 'sliding', windowSize: 8}, 6), TOLERANCE);
    const warnings = page!.session.consoleMessages.filter((m) => m.includes('need WebGL2'));
    expect(warnings, page!.session.consoleMessages.join('\n')).to.have.length(1);
  });
});
