/**
 * The webgl split-K decode path (kernels/webgl/attention_decode.ts) in headless Chromium against the float64
 * reference: decode-shaped cases (1…16 query rows, GQA groups, causal / window / keyLengths / queryOffsets / softcap,
 * several splits, rows that see nothing) forced onto the path with the ATTENTION_WEBGL_DECODE flag, forward and
 * (through the tiled backward) gradients, at the webgl row of test/tolerances.ts; a case past llvmpipe's
 * 65,535-iteration loop limit on llvmpipe; and the size rule's choice in the page.
 */
import {expect} from 'chai';
import {type AttentionCase, SPLIT_K_DECODE_CASES} from './cases.js';
import {AttentionPage, openAttentionPageWithBundle} from './browser/attention_page.js';
import {skipWithoutChromium} from './browser/chromium.js';
import type {AngleBackend} from './browser/chromium.js';
import {assertCaseResult} from './shared_runner.js';
import {TOLERANCES} from './tolerances.js';

const TOLERANCE = TOLERANCES.webgl;

const DECODE_CASES: AttentionCase[] = [
  ...SPLIT_K_DECODE_CASES,
  {name: 'decode S1 K257 D6 (channels not a multiple of 4)', op: 'flash', batch: 1, seqQ: 1, seqK: 257, heads: 3,
   kvHeads: 1, headDim: 6},
  {name: 'decode S3 K500 queryOffsets tensor + keyLengths, causal GQA 4/2', op: 'flash', batch: 2, seqQ: 3, seqK: 500,
   heads: 4, kvHeads: 2, headDim: 16, causal: true, queryOffsets: [100, 497], queryOffsetsTensor: true,
   keyLengths: [103, 500]},
  {name: 'decode S5 K200 sliding [8, 8] scale 0.5 (rows see a window ahead)', op: 'sliding', batch: 1, seqQ: 5,
   seqK: 200, heads: 2, kvHeads: 1, headDim: 8, windowSize: [8, 8], scale: 0.5},
];

/** Keys past 65,535 in one row: the decode loops are bounded by the split length, not the key count. */
const LONG_KEYS: AttentionCase = {name: 'decode S2 K70000 GQA 4/2 causal (65,535-iteration trap)', op: 'flash',
                                  batch: 1, seqQ: 2, seqK: 70000, heads: 4, kvHeads: 2, headDim: 16, causal: true};

interface DecodePage {
  page: AttentionPage;
  call<T>(fn: string, ...args: unknown[]): Promise<T>;
}

async function openDecodePage(angle: AngleBackend): Promise<DecodePage> {
  const page = await openAttentionPageWithBundle('webgl', {angle, flags: {ATTENTION_WEBGL_DECODE: 1}},
                                                 'test/browser/decode_page_entry.ts', 'decode-tests.js', 'decodeTests');
  const call = <T>(fn: string, ...args: unknown[]) => page.session.page.evaluate(
      ([f, a]) => (globalThis as any).decodeTests[f as string](...(a as unknown[])),  // eslint-disable-line
      [fn, args] as const) as Promise<T>;
  return {page, call};
}

/** Runs `c` in the page and checks that the decode programs ran for it. */
async function runOnDecodePath(p: DecodePage, c: AttentionCase, seed: number, forwardOnly = false): Promise<void> {
  await p.call('forgetDecodePrograms');
  const r = await p.page.runCase(forwardOnly ? {...c, forwardOnly: true} : c, seed);
  expect(await p.call<number>('decodeProgramsCompiled'), 'the decode path ran').to.be.above(0);
  assertCaseResult(r, TOLERANCE);
}

for (const angle of ['swiftshader', 'gl-egl'] as const) {
  describe(`webgl decode path (split-K) in Chromium (${angle})`, function() {
    this.timeout(600_000);
    let p: DecodePage | null = null;
    before(async function() {
      skipWithoutChromium(this);
      p = await openDecodePage(angle);
      console.log(`    renderer: ${p.page.info.renderer}`);
    });
    after(async () => {
      await p?.page.close();
    });

    (angle === 'swiftshader' ? DECODE_CASES : DECODE_CASES.slice(0, 2)).forEach((c, index) => {
      it(c.name, () => runOnDecodePath(p!, c, 900 + index));
    });
    it(LONG_KEYS.name, () => runOnDecodePath(p!, LONG_KEYS, 31, true));

    if (angle === 'swiftshader') {
      it('the size rule takes decode for few rows over many keys, and the tiled path otherwise', async () => {
        await p!.call('setDecodeFlag', -1);
        try {
          const ran = async (c: AttentionCase) => {
            await p!.call('forgetDecodePrograms');
            await p!.page.runCase({...c, forwardOnly: true}, 3);
            return (await p!.call<number>('decodeProgramsCompiled')) > 0;
          };
          const base: AttentionCase = {name: 'rule', op: 'flash', batch: 1, seqQ: 1, seqK: 512, heads: 2, kvHeads: 1,
                                       headDim: 16, causal: true};
          expect(await ran(base), 'seqQ 1, seqK 512').to.equal(true);
          expect(await ran({...base, seqQ: 17}), 'seqQ 17').to.equal(false);
          expect(await ran({...base, seqK: 64}), 'seqK 64').to.equal(false);
        } finally {
          await p!.call('setDecodeFlag', 1);
        }
      });
    }
  });
}
