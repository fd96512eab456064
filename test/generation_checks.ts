/**
 * The checks of the generation pieces (updateKVCache, rotaryEmbedding, decoding with a KV cache), written once and
 * run by every runner: node (test/kv_cache.test.ts: cpu and the composite kernels; test/webgpu_kv_cache.test.ts: Dawn)
 * and Chromium (test/browser_kv_cache.test.ts: webgl and webgpu, against the bundle users load). Environment-agnostic
 * like check_case.ts: each check takes the tfjs module and the library module and throws an Error when it fails.
 *
 * Tolerances: updateKVCache is a copy, compared exactly. Decoding token by token vs one causal pass: 1e-5 relative
 * (max |difference| / max |full pass|). Rotary against the float64 formula: 1e-5 absolute for |x| ≤ 1.
 */
import type {Tensor} from '@tensorflow/tfjs-core';
import {Lib, randomArray, Tf} from './check_case.js';

export type GenerationCheck = (tf: Tf, lib: Lib) => Promise<void>;

function fail(message: string): never {
  throw new Error(message);
}

function expectThrows(fn: () => unknown, pattern: RegExp, what: string): void {
  try {
    fn();
  } catch (e) {
    const message = (e as Error).message;
    if (!pattern.test(message)) fail(`${what}: error "${message}" does not match ${pattern}`);
    return;
  }
  fail(`${what}: did not throw`);
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>, what: string): number {
  if (a.length !== b.length) fail(`${what}: ${a.length} values, expected ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= m)) m = Number.isNaN(d) ? Infinity : d;
  }
  return m;
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

function expectClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number, what: string): void {
  const err = maxAbsDiff(actual, expected, what);
  if (!(err <= tol)) fail(`${what}: max |difference| ${err} > ${tol}`);
}

function expectExact(actual: ArrayLike<number>, expected: ArrayLike<number>, what: string): void {
  const err = maxAbsDiff(actual, expected, what);
  if (err !== 0) {
    const i = Array.from(actual).findIndex((x, j) => x !== expected[j]);
    fail(`${what}: element ${i} is ${actual[i]}, expected ${expected[i]} (not an exact copy)`);
  }
}

const size = (shape: number[]) => shape.reduce((a, b) => a * b, 1);

/** cache with rows clamp(p_b, 0, C − n) … + n − 1 of batch b replaced by update[b]: the kernels' contract. */
export function referenceUpdate(
    cache: Float32Array, update: Float32Array, positions: number[], shape: number[], n: number): Float32Array {
  const [batch, capacity, kvHeads, headDim] = shape;
  const row = kvHeads * headDim;
  const out = cache.slice();
  for (let b = 0; b < batch; b++) {
    const start = Math.min(Math.max(positions[b], 0), capacity - n);
    for (let i = 0; i < n * row; i++) out[(b * capacity + start) * row + i] = update[b * n * row + i];
  }
  return out;
}

/** keras_hub's rotary formula in float64: x [.., seq, .., features] with seq/feature axes, positions [batch?][seq]. */
export function referenceRotary(
    x: ArrayLike<number>, shape: number[], positionOf: (batch: number, s: number) => number, opts: {
      seqAxis: number; featureAxis: number; maxWavelength: number; scalingFactor: number;
    }): Float64Array {
  const out = new Float64Array(x.length);
  const strides = shape.map((_, i) => size(shape.slice(i + 1)));
  const features = shape[opts.featureAxis], half = features / 2;
  for (let flat = 0; flat < x.length; flat++) {
    const coord = shape.map((d, i) => Math.floor(flat / strides[i]) % d);
    const f = coord[opts.featureAxis];
    const i = f % half;
    const theta = positionOf(coord[0], coord[opts.seqAxis]) / opts.scalingFactor /
        Math.pow(opts.maxWavelength, (2 * i) / features);
    const partner = flat + (f < half ? half : -half) * strides[opts.featureAxis];
    // first half: x1 cos − x2 sin; second half: x2 cos + x1 sin.
    out[flat] = x[flat] * Math.cos(theta) + (f < half ? -x[partner] : x[partner]) * Math.sin(theta);
  }
  return out;
}

async function values(t: Tensor): Promise<Float32Array> {
  return Float32Array.from(await t.data() as ArrayLike<number>);
}

/** values(t), then disposes t. */
async function take(t: Tensor): Promise<Float32Array> {
  try {
    return await values(t);
  } finally {
    t.dispose();
  }
}

async function checkUpdate(tf: Tf, lib: Lib, shape: number[], n: number, positions: number[], tensorPositions: boolean,
                           seed: number): Promise<void> {
  const cacheValues = randomArray(size(shape), seed);
  const updateValues = randomArray(shape[0] * n * shape[2] * shape[3], seed + 1);
  const cache = tf.tensor(cacheValues, shape), update = tf.tensor(updateValues, [shape[0], n, shape[2], shape[3]]);
  const pos = tensorPositions ? tf.tensor1d(positions, 'int32') : positions;
  const before = tf.memory().numTensors;
  const out = lib.updateKVCache(cache, update, pos as number[]);
  const what = `updateKVCache [${shape}] n=${n} positions ${tensorPositions ? 'tensor ' : ''}[${positions}]`;
  if (out.shape.join() !== shape.join()) fail(`${what}: output shape [${out.shape}]`);
  expectExact(await values(out), referenceUpdate(cacheValues, updateValues, positions, shape, n), what);
  expectExact(await values(cache), cacheValues, `${what}: cache input changed`);
  out.dispose();
  if (tf.memory().numTensors !== before) fail(`${what}: leaked ${tf.memory().numTensors - before} tensors`);
  tf.dispose([cache, update]);
  if (pos instanceof tf.Tensor) pos.dispose();
}

/** Random q, k, v [batch, seq, heads | kvHeads, headDim] and the one causal pass they are decoded against. */
function decodeProblem(tf: Tf, lib: Lib, seed: number) {
  const batch = 2, seq = 9, heads = 4, kvHeads = 2, headDim = 16, capacity = 12;
  const q = tf.tensor(randomArray(batch * seq * heads * headDim, seed), [batch, seq, heads, headDim]) as
      ReturnType<Tf['tensor4d']>;
  const k = tf.tensor(randomArray(batch * seq * kvHeads * headDim, seed + 1), [batch, seq, kvHeads, headDim]) as
      ReturnType<Tf['tensor4d']>;
  const v = tf.tensor(randomArray(batch * seq * kvHeads * headDim, seed + 2), [batch, seq, kvHeads, headDim]) as
      ReturnType<Tf['tensor4d']>;
  const full = lib.flashAttention(q, k, v, {causal: true});
  return {batch, seq, heads, kvHeads, headDim, capacity, q, k, v, full};
}

/**
 * Decodes `chunks` (token counts summing to seq) through a KV cache: each chunk's k and v are written with
 * updateKVCache, then its queries attend to the cache by `attend`; returns every chunk's output concatenated.
 */
async function decodeWithCache(
    tf: Tf, lib: Lib, p: ReturnType<typeof decodeProblem>, chunks: number[],
    attend: (q: Tensor, kCache: Tensor, vCache: Tensor, position: number, n: number) => Tensor): Promise<Float32Array> {
  let kCache: Tensor = tf.zeros([p.batch, p.capacity, p.kvHeads, p.headDim]);
  let vCache: Tensor = tf.zeros([p.batch, p.capacity, p.kvHeads, p.headDim]);
  const outputs: Tensor[] = [];
  let position = 0;
  for (const n of chunks) {
    const slice = (x: Tensor, heads: number) => tf.slice(x, [0, position, 0, 0], [p.batch, n, heads, p.headDim]);
    const [kNew, vNew, qNew] = [slice(p.k, p.kvHeads), slice(p.v, p.kvHeads), slice(p.q, p.heads)];
    const k2 = lib.updateKVCache(kCache, kNew, position), v2 = lib.updateKVCache(vCache, vNew, position);
    tf.dispose([kCache, vCache, kNew, vNew]);
    [kCache, vCache] = [k2, v2];
    outputs.push(attend(qNew, kCache, vCache, position, n));
    qNew.dispose();
    position += n;
  }
  const all = tf.concat(outputs, 1);
  const result = await values(all);
  tf.dispose([all, ...outputs, kCache, vCache]);
  return result;
}

async function expectDecodeMatches(tf: Tf, lib: Lib, chunks: number[], what: string,
                                   attend: Parameters<typeof decodeWithCache>[4]): Promise<void> {
  const p = decodeProblem(tf, lib, 31);
  const before = tf.memory().numTensors;
  const decoded = await decodeWithCache(tf, lib, p, chunks, attend);
  if (tf.memory().numTensors !== before) fail(`${what}: leaked ${tf.memory().numTensors - before} tensors`);
  const full = await values(p.full);
  const err = maxAbsDiff(decoded, full, what) / maxAbs(full);
  tf.dispose([p.q, p.k, p.v, p.full]);
  if (!(err <= 1e-5)) fail(`${what}: decoded output differs from one causal pass by ${err} (relative) > 1e-5`);
}

export const KV_CACHE_CHECKS: Record<string, GenerationCheck> = {
  'updateKVCache copies rows exactly (number[] positions, rows of 10 and of 16 floats)': async (tf, lib) => {
    await checkUpdate(tf, lib, [3, 7, 2, 5], 2, [0, 3, 5], false, 1);
    await checkUpdate(tf, lib, [2, 9, 2, 8], 3, [6, 1], false, 2);
    await checkUpdate(tf, lib, [1, 4, 1, 6], 4, [0], false, 3);  // n = capacity
  },

  'updateKVCache with one number position for every batch': async (tf, lib) => {
    const cache = tf.zeros([2, 5, 1, 4]), update = tf.ones([2, 2, 1, 4]);
    const out = lib.updateKVCache(cache, update, 3);
    const expected = referenceUpdate(new Float32Array(40), new Float32Array(16).fill(1), [3, 3], [2, 5, 1, 4], 2);
    expectExact(await values(out), expected, 'number position');
    tf.dispose([cache, update, out]);
  },

  'updateKVCache clamps int32 tensor positions to [0, capacity − n] on the device': async (tf, lib) => {
    await checkUpdate(tf, lib, [4, 7, 2, 4], 2, [-3, 6, 2, 100], true, 4);
    await checkUpdate(tf, lib, [3, 6, 3, 3], 1, [5, 0, -1], true, 5);
  },

  'updateKVCache rejects bad input with errors naming the argument': async (tf, lib) => {
    const cache = tf.zeros([2, 5, 1, 4]), update = tf.zeros([2, 2, 1, 4]);
    expectThrows(() => lib.updateKVCache(cache, update, [0, 4]), /positions\[1\].*\[0, capacity − n = 3\].*got 4/,
                 'p + n > capacity');
    expectThrows(() => lib.updateKVCache(cache, update, -1), /positions must be an integer/, 'negative');
    expectThrows(() => lib.updateKVCache(cache, update, [0.5, 1]), /positions\[0\]/, 'non-integer');
    expectThrows(() => lib.updateKVCache(cache, update, [0]), /positions must have length batch=2/, 'length');
    const f = tf.tensor1d([0, 1], 'float32');
    expectThrows(() => lib.updateKVCache(cache, update, f as never), /positions must be an int32 tensor/, 'dtype');
    const bad = tf.zeros([2, 2, 2, 4]);
    expectThrows(() => lib.updateKVCache(cache, bad, 0), /update must have shape/, 'update shape');
    const big = tf.zeros([2, 6, 1, 4]);
    expectThrows(() => lib.updateKVCache(cache, big, 0), /update must have shape/, 'n > capacity');
    expectThrows(() => lib.updateKVCache(tf.zeros([2, 5, 4]) as never, update, 0), /cache must be rank 4/, 'rank');
    tf.dispose([cache, update, f, bad, big]);
  },

  'updateKVCache gradient: d cache is dy without the written rows, d update the written rows': async (tf, lib) => {
    const shape = [2, 6, 2, 3], n = 2, positions = [1, 4];
    const cache = tf.tensor(randomArray(size(shape), 6), shape);
    const update = tf.tensor(randomArray(2 * n * 6, 7), [2, n, 2, 3]);
    const wValues = randomArray(size(shape), 8);
    const w = tf.tensor(wValues, shape);
    for (const pos of [positions, tf.tensor1d(positions, 'int32')]) {
      const [dCache, dUpdate] = tf.grads((c: Tensor, u: Tensor) =>
          tf.sum(tf.mul(lib.updateKVCache(c, u, pos as number[]), w)))([cache, update]);
      const written = referenceUpdate(new Float32Array(size(shape)).fill(1), new Float32Array(2 * n * 6),
                                      positions, shape, n);
      expectExact(await values(dCache), wValues.map((x, i) => x * written[i]), 'd cache');
      const rows: number[] = [];
      for (let b = 0; b < 2; b++) rows.push(...wValues.slice((b * 6 + positions[b]) * 6, (b * 6 + positions[b] + n) * 6));
      expectExact(await values(dUpdate), rows, 'd update');
      tf.dispose([dCache, dUpdate]);
      if (pos instanceof tf.Tensor) pos.dispose();
    }
    tf.dispose([cache, update, w]);
  },

  'decoding token by token with the cache (keyLengths) equals one causal pass': (tf, lib) =>
    expectDecodeMatches(tf, lib, new Array(9).fill(1), 'token by token, keyLengths',
        // One new query sees every key written so far: no causal mask, keyLengths = position + 1.
        (q, kCache, vCache, position) => lib.flashAttention(q, kCache, vCache, {
          keyLengths: new Array(q.shape[0]).fill(position + 1)})),

  'decoding with a cache whose valid part ends at its capacity (default alignment) equals one causal pass':
      (tf, lib) => expectDecodeMatches(tf, lib, [4, 1, 3, 1], 'chunks [4, 1, 3, 1], valid prefix',
          (q, kCache, vCache, position, n) => tf.tidy(() => {
            // seqK = the valid length exactly: bottom-right causal alignment puts the chunk's queries at the end.
            const [b, , h, d] = kCache.shape;
            const kValid = tf.slice(kCache, [0, 0, 0, 0], [b, position + n, h, d]);
            const vValid = tf.slice(vCache, [0, 0, 0, 0], [b, position + n, h, d]);
            return lib.flashAttention(q, kValid, vValid, {causal: true});
          })),

  'decoding in chunks with queryOffsets + keyLengths (flash_attn_with_kvcache) equals one causal pass':
      (tf, lib) => expectDecodeMatches(tf, lib, [4, 1, 3, 1], 'chunks [4, 1, 3, 1], queryOffsets tensor',
          (q, kCache, vCache, position, n) => tf.tidy(() => {
            const batch = q.shape[0];
            const offsets = tf.tensor1d(new Array(batch).fill(position), 'int32');
            const lengths = tf.tensor1d(new Array(batch).fill(position + n), 'int32');
            return lib.flashAttention(q, kCache, vCache, {causal: true, queryOffsets: offsets, keyLengths: lengths});
          })),
};

const ROTARY_DEFAULTS = {seqAxis: 1, featureAxis: 3, maxWavelength: 10000, scalingFactor: 1};

export const ROTARY_CHECKS: Record<string, GenerationCheck> = {
  'rotaryEmbedding matches the float64 formula (startIndex number, maxWavelength, scalingFactor)': async (tf, lib) => {
    const shape = [2, 5, 3, 8];
    const x = randomArray(size(shape), 11);
    const xt = tf.tensor(x, shape);
    for (const [start, maxWavelength, scalingFactor] of [[0, 10000, 1], [3, 500, 2], [1000, 10000, 4]]) {
      const out = lib.rotaryEmbedding(xt, {startIndex: start, maxWavelength, scalingFactor});
      const ref = referenceRotary(x, shape, (_, s) => start + s, {...ROTARY_DEFAULTS, maxWavelength, scalingFactor});
      expectClose(await values(out), ref, 1e-5, `rotary start ${start} λ ${maxWavelength} scaling ${scalingFactor}`);
      out.dispose();
    }
    xt.dispose();
  },

  'rotaryEmbedding with tensor positions [batch, seq] and a tensor startIndex [batch]': async (tf, lib) => {
    const shape = [3, 4, 2, 6];
    const x = randomArray(size(shape), 12);
    const xt = tf.tensor(x, shape);
    const starts = [0, 7, 3000];  // 3000: the device path's range reduction at large angles
    const pos = starts.flatMap((s) => [s, s + 1, s + 2, s + 3]);
    const positions = tf.tensor2d(pos, [3, 4], 'int32'), startIndex = tf.tensor1d(starts, 'int32');
    const ref = referenceRotary(x, shape, (b, s) => starts[b] + s, ROTARY_DEFAULTS);
    const byPositions = lib.rotaryEmbedding(xt, {positions});
    const byStart = lib.rotaryEmbedding(xt, {startIndex});
    expectClose(await values(byPositions), ref, 1e-5, 'positions [batch, seq]');
    expectClose(await values(byStart), ref, 1e-5, 'startIndex [batch]');
    tf.dispose([xt, positions, startIndex, byPositions, byStart]);
  },

  'rotaryEmbedding reproduces keras_hub\'s documented outputs': async (tf, lib) => {
    // keras_hub rotary_embedding_test.py: test_output_correct_values, test_rope_scaling, …_with_kv_cache.
    const ones = [tf.ones([1, 4, 6]), tf.ones([1, 3, 2, 4]), tf.ones([1, 1, 2, 4])];
    const a = await take(lib.rotaryEmbedding(ones[0]));
    expectClose(a.slice(0, 6), [1, 1, 1, 1, 1, 1], 1e-6, 'keras_hub position 0');
    expectClose(a.slice(18, 24), [-1.1311, 0.8515, 0.9935, -0.8489, 1.1291, 1.0064], 1e-4, 'keras_hub position 3');
    const b = await take(lib.rotaryEmbedding(ones[1], {scalingFactor: 2}));
    expectClose(b.slice(8, 12), [0.398157001, 0.994987488, 1.357008100, 1.004987478], 1e-6, 'scaling 2, position 1');
    expectClose(b.slice(16, 20), [-0.301168621, 0.989950180, 1.381773233, 1.009949803], 1e-6,
                'scaling 2, position 2');
    const c = await take(lib.rotaryEmbedding(ones[2], {scalingFactor: 5, startIndex: 12}));
    expectClose(c, [-1.412856817, 0.975714266, -0.061930716, 1.023709655, -1.412856817, 0.975714266, -0.061930716,
                    1.023709655], 1e-6, 'scaling 5, startIndex 12');
    const x = tf.tensor(randomArray(32, 13), [1, 2, 1, 16]);
    expectExact(await take(lib.rotaryEmbedding(x, {positions: [0, 0]})), await values(x), 'positions [0, 0]');
    tf.dispose([...ones, x]);
  },

  'rotaryEmbedding with permuted axes (sequenceAxis -1, featureAxis -2) equals the transposed result':
      async (tf, lib) => {
        const x = tf.tensor(randomArray(2 * 3 * 4, 14), [2, 3, 4]);
        const out = lib.rotaryEmbedding(x, {startIndex: 2});
        const transposedIn = tf.transpose(x, [0, 2, 1]);
        const permuted = lib.rotaryEmbedding(transposedIn, {sequenceAxis: -1, featureAxis: -2, startIndex: 2});
        transposedIn.dispose();
        const back = tf.transpose(permuted, [0, 2, 1]);
        expectClose(await values(back), await values(out), 1e-6, 'permuted axes');
        tf.dispose([x, out, permuted, back]);
      },

  'rotaryEmbedding one position at a time (startIndex) equals the whole sequence': async (tf, lib) => {
    const shape = [2, 6, 2, 8];
    const x = tf.tensor(randomArray(size(shape), 15), shape);
    const full = await take(lib.rotaryEmbedding(x));
    const parts: Tensor[] = [];
    for (let s = 0; s < 6; s++) {
      const xs = tf.slice(x, [0, s, 0, 0], [2, 1, 2, 8]);
      parts.push(lib.rotaryEmbedding(xs, {startIndex: s}));
      xs.dispose();
    }
    expectClose(await take(tf.concat(parts, 1)), full, 1e-6, 'one position at a time');
    tf.dispose([x, ...parts]);
  },

  'rotaryEmbedding gradient is the inverse rotation of dy': async (tf, lib) => {
    const shape = [1, 3, 2, 4];
    const x = tf.tensor(randomArray(size(shape), 16), shape);
    const w = randomArray(size(shape), 17);
    const wt = tf.tensor(w, shape);
    const dx = tf.grad((t: Tensor) => tf.sum(tf.mul(lib.rotaryEmbedding(t, {startIndex: 5}), wt)))(x);
    // dx1 = w1 cos + w2 sin, dx2 = w2 cos − w1 sin: the formula at −θ applied to w.
    const ref = referenceRotary(w, shape, (_, s) => -(5 + s), ROTARY_DEFAULTS);
    expectClose(await values(dx), ref, 1e-5, 'rotary gradient');
    tf.dispose([x, dx, wt]);
  },

  'rotaryEmbedding rejects bad input with errors naming the argument': async (tf, lib) => {
    const x = tf.zeros([1, 3, 5]);
    expectThrows(() => lib.rotaryEmbedding(x), /even size/, 'odd features');
    const y = tf.zeros([1, 3, 4]);
    expectThrows(() => lib.rotaryEmbedding(y, {positions: [0, 1]}), /positions must have length seq=3/, 'length');
    expectThrows(() => lib.rotaryEmbedding(y, {positions: [0, 1, 2], startIndex: 1}), /not both/, 'both');
    expectThrows(() => lib.rotaryEmbedding(y, {maxWavelength: 0}), /maxWavelength/, 'maxWavelength');
    expectThrows(() => lib.rotaryEmbedding(y, {sequenceAxis: 3}), /sequenceAxis/, 'axis');
    expectThrows(() => lib.rotaryEmbedding(y, {startIndx: 1} as never), /options.startIndx is not an option/, 'typo');
    tf.dispose([x, y]);
  },
};

export const GENERATION_CHECKS: Record<string, GenerationCheck> = {...KV_CACHE_CHECKS, ...ROTARY_CHECKS};
