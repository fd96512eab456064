/**
 * Forward timings of the webgl decode path against the tiled path in headless Chromium on SwiftShader (the numbers
 * behind kernels/webgl/attention_decode.ts's size rule): `npx mocha test/_decode_bench.test.ts` (not part of npm test).
 */
import type {AttentionCase} from './cases.js';
import {openAttentionPageWithBundle} from './browser/attention_page.js';
describe('decode bench', function() {
  this.timeout(1_200_000);
  it('times', async () => {
    const page = await openAttentionPageWithBundle('webgl', {angle: 'swiftshader'},
        'test/browser/decode_page_entry.ts', 'decode-tests.js', 'decodeTests');
    const call = <T>(fn: string, ...args: unknown[]) => page.session.page.evaluate(
      ([f, a]) => (globalThis as any).decodeTests[f as string](...(a as unknown[])), [fn, args] as const) as Promise<T>;
    const shapes: Array<[number, number, number, number, number]> = [
      [1, 64, 8, 2, 64], [1, 128, 8, 2, 64], [1, 256, 8, 2, 64], [1, 1024, 8, 2, 64], [1, 4096, 8, 2, 64],
      [16, 128, 8, 2, 64], [16, 1024, 8, 2, 64], [4, 4096, 32, 8, 128], [1, 4096, 4, 4, 64], [16, 64, 4, 4, 32],
    ];
    for (const [seqQ, seqK, heads, kvHeads, headDim] of shapes) {
      const c: AttentionCase = {name: 'b', op: 'flash', batch: 1, seqQ, seqK, heads, kvHeads, headDim, causal: true};
      const tiled = await call<number>('timeForward', c, 0, 5);
      const decode = await call<number>('timeForward', c, 1, 5);
      console.log(`seqQ ${seqQ} seqK ${seqK} H ${heads}/${kvHeads} D ${headDim}: tiled ${tiled.toFixed(1)} ms, decode ${decode.toFixed(1)} ms`);
    }
    await page.close();
  });
});
