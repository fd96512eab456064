/**
 * Page-side helpers of test/browser_decode.test.ts (bundled into the global `decodeTests`, beside page_entry.ts's
 * `attentionTests`): whether the webgl decode programs ran (tfjs's compiled-program cache holds programs by source,
 * and every decode program declares rowKeyRanges or the combine's marker), and forward timings of one case.
 */
import type {AttentionCase} from '../cases.js';
import {randomArray, Lib, Tf} from '../check_case.js';

declare const tf: Tf;
declare const tfEfficientAttention: Lib;

const MARKER = 'webgl attention decode: combine';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function binaryCache(): Record<string, any> {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  return (tf.backend() as any).binaryCache;
}

/** Drops the compiled decode combine programs, so that decodeProgramsCompiled() tells whether a later call ran one. */
export function forgetDecodePrograms(): void {
  const cache = binaryCache();
  for (const key of Object.keys(cache)) {
    if (!key.includes(MARKER)) continue;
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    (tf.backend() as any).gpgpu.deleteProgram(cache[key].webGLProgram);
    delete cache[key];
  }
}

/** Compiled decode combine programs (two per shape: output and lse). */
export function decodeProgramsCompiled(): number {
  return Object.keys(binaryCache()).filter((key) => key.includes(MARKER)).length;
}

/** Sets the tfjs flag choosing the decode path: 1 always, 0 never, -1 the size rule. */
export function setDecodeFlag(value: number): void {
  tf.env().set('ATTENTION_WEBGL_DECODE', value);
}

/** Median milliseconds of `reps` forwards of `c` (after one warm-up), with the decode flag set to `flag`. */
export async function timeForward(c: AttentionCase, flag: number, reps: number): Promise<number> {
  const lib = tfEfficientAttention;
  setDecodeFlag(flag);
  const qShape = [c.batch, c.seqQ, c.heads, c.headDim], kShape = [c.batch, c.seqK, c.kvHeads, c.headDim];
  const size = (s: number[]) => s.reduce((a, b) => a * b, 1);
  const q = tf.tensor(randomArray(size(qShape), 1), qShape), k = tf.tensor(randomArray(size(kShape), 2), kShape);
  const v = tf.tensor(randomArray(size(kShape), 3), kShape);
  const run = async () => {
    const out = c.op === 'sliding' ?
        lib.slidingWindowAttention(q, k, v, {windowSize: c.windowSize!}) :
        lib.flashAttention(q, k, v, {causal: c.causal});
    await out.data();
    out.dispose();
  };
  const times: number[] = [];
  try {
    await run();
    for (let r = 0; r < reps; r++) {
      const start = performance.now();
      await run();
      times.push(performance.now() - start);
    }
  } finally {
    [q, k, v].forEach((t) => t.dispose());
    setDecodeFlag(-1);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)];
}
