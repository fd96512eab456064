/**
 * Leaks, memory, asynchronous use and determinism, on every backend row:
 *   - many forward + backward calls (tf.grads, optimizer steps, tidy and no tidy) leave tf.memory() unchanged;
 *   - peak tensor memory (tf.profile peakBytes) of forward + backward grows O(seq), not O(seq²);
 *   - many ops in flight, interleaved with other tfjs ops and read back in any order, give the same results as one
 *     at a time;
 *   - identical inputs give bit-identical outputs and gradients, also after other shapes ran in between.
 * LEAK_ITERATIONS (default 200) sets the number of calls; the long run uses 1000.
 */
import * as tf from '@tensorflow/tfjs-core';
import {expect} from 'chai';
import * as lib from '../src/index.js';
import {randomArray} from './check_case.js';
import {itOn, selectedBackends} from './reliability_backends.js';

const ITERATIONS = Number(process.env.LEAK_ITERATIONS ?? 200);

type Run = (q: tf.Tensor, k: tf.Tensor, v: tf.Tensor) => {output: tf.Tensor; lse: tf.Tensor};

interface Scenario {
  name: string;
  shape: {batch: number; seqQ: number; seqK: number; heads: number; kvHeads: number; headDim: number};
  run: Run;
}

/** One scenario per op and option family (small, so that hundreds of calls stay fast). */
function scenarios(): Scenario[] {
  const shape = {batch: 2, seqQ: 13, seqK: 17, heads: 4, kvHeads: 2, headDim: 8};
  const layout = lib.patterns.bigBird(13, 17, 4, {numHeads: 4, seed: 3});
  return [
    {name: 'flash causal', shape, run: (q, k, v) => lib.flashAttention(q, k, v, {causal: true, returnLse: true})},
    {
      name: 'flash keyLengths array, softcap', shape,
      run: (q, k, v) => lib.flashAttention(q, k, v, {keyLengths: [5, 17], softcap: 3, returnLse: true}),
    },
    {
      name: 'sliding [3, 2] keyLengths tensor', shape,
      run: (q, k, v) => {
        const keyLengths = tf.tensor1d([17, 0], 'int32');
        const r = lib.slidingWindowAttention(q, k, v, {windowSize: [3, 2], keyLengths, returnLse: true});
        keyLengths.dispose();
        return r;
      },
    },
    {
      name: 'sparse bigBird per-head causal', shape,
      run: (q, k, v) => lib.sparseAttention(q, k, v, {layout, causal: true, returnLse: true}),
    },
    {
      // Every option at once, its tensors made and disposed by the call (the gradient saves its own references).
      name: 'flash causal with mask, bias, ALiBi, segments, queryOffsets tensor, dropout, keyLengths', shape,
      run: (q, k, v) => {
        const {batch, seqQ, seqK, heads} = shape;
        const mask = tf.tensor(randomArray(batch * seqQ * seqK, 7).map((x) => x > -0.6 ? 1 : 0),
                               [batch, 1, seqQ, seqK], 'int32');
        const bias = tf.tensor(randomArray(heads * seqQ * seqK, 8), [1, heads, seqQ, seqK]);
        const alibiSlopes = tf.tensor2d([0.5, 0.25, 0.125, 0.0625], [1, heads]);
        const ids = (n: number, cut: number) => tf.tensor2d(
            Array.from({length: batch * n}, (_, e) => (e % n < cut ? 0 : 1)), [batch, n], 'int32');
        const segmentIds = {query: ids(seqQ, 6), key: ids(seqK, 9)};
        const queryOffsets = tf.tensor1d([4, 1], 'int32');
        const r = lib.flashAttention(q, k, v, {
          causal: true, mask, bias, alibiSlopes, segmentIds, queryOffsets, keyLengths: [17, 12],
          dropout: {rate: 0.25, seed: 12345}, returnLse: true,
        });
        tf.dispose([mask, bias, alibiSlopes, segmentIds.query, segmentIds.key, queryOffsets]);
        return r;
      },
    },
  ];
}

function inputs(s: Scenario, seed: number): [tf.Tensor, tf.Tensor, tf.Tensor] {
  const {batch, seqQ, seqK, heads, kvHeads, headDim} = s.shape;
  return [
    tf.tensor(randomArray(batch * seqQ * heads * headDim, seed), [batch, seqQ, heads, headDim]),
    tf.tensor(randomArray(batch * seqK * kvHeads * headDim, seed + 1), [batch, seqK, kvHeads, headDim]),
    tf.tensor(randomArray(batch * seqK * kvHeads * headDim, seed + 2), [batch, seqK, kvHeads, headDim]),
  ];
}

/** Loss with both outputs used: sum(output·w) + sum(finite lse). */
function loss(r: {output: tf.Tensor; lse: tf.Tensor}): tf.Scalar {
  return tf.tidy(() => tf.add(tf.sum(tf.mul(r.output, 0.5)),
                              tf.sum(tf.where(tf.isFinite(r.lse), r.lse, tf.zerosLike(r.lse)))));
}

/** Forward + backward; returns every result as bytes (for bit-exact comparison). */
async function forwardBackward(s: Scenario, q: tf.Tensor, k: tf.Tensor, v: tf.Tensor): Promise<Uint8Array[]> {
  const r = s.run(q, k, v);
  const grads = tf.grads((qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor) => loss(s.run(qq, kk, vv)))([q, k, v]);
  const all = [r.output, r.lse, ...grads];
  const data = await Promise.all(all.map((t) => t.data()));
  tf.dispose(all);
  return data.map((d) => new Uint8Array((d as Float32Array).slice().buffer));
}

function sameBytes(a: Uint8Array[], b: Uint8Array[]): boolean {
  return a.length === b.length && a.every((x, n) => x.length === b[n].length && x.every((byte, m) => byte === b[n][m]));
}

for (const backend of selectedBackends()) {
  describe(`leaks, memory, async, determinism on ${backend.name}`, () => {
    before(() => backend.setUp());

    it(`${ITERATIONS} forward + backward calls leave tf.memory() unchanged`, async () => {
      const all = scenarios();
      const tensors = all.map((s, n) => inputs(s, 100 + n));
      // Warm up (schedule caches, backend programs), then measure.
      for (let n = 0; n < all.length; n++) await forwardBackward(all[n], ...tensors[n]);
      const before = tf.memory();
      for (let it = 0; it < ITERATIONS; it++) {
        const n = it % all.length, s = all[n], [q, k, v] = tensors[n];
        switch (Math.floor(it / all.length) % 4) {
          case 0:  // forward only, results disposed by hand
            tf.dispose(Object.values(s.run(q, k, v)));
            break;
          case 1:  // forward inside tidy, one result kept and disposed
            tf.tidy(() => tf.sum(s.run(q, k, v).output)).dispose();
            break;
          case 2:  // tf.grads, read back
            await forwardBackward(s, q, k, v);
            break;
          default:  // tf.valueAndGrads
            {
              const {value, grads} = tf.valueAndGrads((qq: tf.Tensor, kk: tf.Tensor, vv: tf.Tensor) =>
                                                          loss(s.run(qq, kk, vv)))([q, k, v]);
              await value.data();
              tf.dispose([value, ...grads]);
            }
        }
      }
      const after = tf.memory();
      tf.dispose(tensors.flat());
      expect(after.numTensors, 'numTensors').to.equal(before.numTensors);
      expect(after.numBytes, 'numBytes').to.equal(before.numBytes);
      expect(after.numDataBuffers, 'numDataBuffers').to.equal(before.numDataBuffers);
    });

    it('optimizer training steps on variables leave tf.memory() unchanged', async () => {
      const s = scenarios()[3];
      const [q0, k0, v0] = inputs(s, 200);
      const q = tf.variable(q0), k = tf.variable(k0), v = tf.variable(v0);
      tf.dispose([q0, k0, v0]);
      const optimizer = tf.train.adam(1e-3);
      const step = () => optimizer.minimize(() => loss(s.run(q, k, v)), true)!;
      (await step().data());  // creates the optimizer's slots
      const before = tf.memory().numTensors;
      for (let it = 0; it < Math.min(ITERATIONS, 100); it++) step().dispose();
      expect(tf.memory().numTensors).to.equal(before);
      optimizer.dispose();
      tf.dispose([q, k, v]);
    });

    itOn(backend, 'peak memory of forward + backward grows O(seq), not O(seq²)', async () => {
      // headDim 8 and one head make an O(seq²) score buffer dominate: at seq 512 it would be 1 MiB against ~100 KiB of
      // inputs and outputs, so doubling seq would multiply the peak by ~4 instead of ~2.
      const peak = async (seq: number) => {
        const s: Scenario = {
          name: 'flash causal', shape: {batch: 1, seqQ: seq, seqK: seq, heads: 1, kvHeads: 1, headDim: 8},
          run: (q, k, v) => lib.flashAttention(q, k, v, {causal: true, returnLse: true}),
        };
        const [q, k, v] = inputs(s, 300);
        await forwardBackward(s, q, k, v);  // warm up
        // tf.profile's peakBytes is the engine's whole byte count at its fullest kernel, including every tensor that
        // earlier tests (or test files, in one mocha process) still hold: measure from a baseline taken here.
        const baseline = tf.memory().numBytes;
        const info = await tf.profile(async () => {
          await forwardBackward(s, q, k, v);
        });
        tf.dispose([q, k, v]);
        return info.peakBytes - baseline;
      };
      const small = await peak(256), large = await peak(512), larger = await peak(1024);
      if (process.env.RELIABILITY_VERBOSE) console.log(`      peak bytes ${small}, ${large}, ${larger} at seq 256, 512, 1024`);
      const context = `peak bytes above the baseline ${small}, ${large}, ${larger} at seq 256, 512, 1024`;
      expect(large / small, context).to.be.below(2.6);
      expect(larger / large, context).to.be.below(2.6);
      // Fused kernels keep no score tile in tensors at all; the composite fallback's tiles are O(seq · tile).
      if (backend.fused) expect(larger, `${context}: below one seq² float32 buffer`).to.be.below(1024 * 1024 * 4);
    });

    it('many ops in flight, interleaved with other tfjs ops, read back in any order: same results', async () => {
      const all = scenarios();
      const tensors = all.map((s, n) => inputs(s, 400 + n));
      // Expected: one at a time.
      const expected: Uint8Array[][] = [];
      for (let n = 0; n < all.length; n++) expected.push(await forwardBackward(all[n], ...tensors[n]));
      // 5 rounds of every scenario launched without awaiting, with unrelated ops between launches.
      const pending: Array<{n: number; result: Promise<Uint8Array[]>}> = [];
      const noise: tf.Tensor[] = [];
      for (let round = 0; round < 5; round++) {
        for (let n = 0; n < all.length; n++) {
          pending.push({n, result: forwardBackward(all[n], ...tensors[n])});
          noise.push(tf.tidy(() => tf.softmax(tf.matMul(tf.randomNormal([32, 32]), tf.randomNormal([32, 32])))));
        }
      }
      // Read back in reverse order, noise first.
      await Promise.all(noise.map((t) => t.data()));
      for (const {n, result} of pending.reverse()) {
        expect(sameBytes(await result, expected[n]), `${all[n].name}: in-flight result differs`).to.equal(true);
      }
      tf.dispose([...noise, ...tensors.flat()]);
    });

    it('identical inputs give bit-identical outputs and gradients (3 runs, other shapes in between)', async () => {
      const all = scenarios();
      const tensors = all.map((s, n) => inputs(s, 500 + n));
      const first = [];
      for (let n = 0; n < all.length; n++) first.push(await forwardBackward(all[n], ...tensors[n]));
      for (let round = 0; round < 2; round++) {
        // Something else in between: other shapes and masks exercise the schedule caches.
        const other = scenarios()[round];
        const [q, k, v] = inputs({...other, shape: {...other.shape, seqQ: 31, seqK: 29}}, 600 + round);
        await forwardBackward({...other, run: (qq, kk, vv) => lib.flashAttention(qq, kk, vv, {returnLse: true})}, q, k, v);
        tf.dispose([q, k, v]);
        for (let n = all.length - 1; n >= 0; n--) {
          expect(sameBytes(await forwardBackward(all[n], ...tensors[n]), first[n]), `${all[n].name} round ${round}`)
              .to.equal(true);
        }
      }
      tf.dispose(tensors.flat());
    });
  });
}
