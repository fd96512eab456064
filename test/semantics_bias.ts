/**
 * NaN / Inf semantics of `bias` values (RELIABILITY.md, "NaN / Inf semantics", the bias rows), shared by every
 * backend's semantics runner through defineSemanticsChecks:
 *   - a `-Infinity` bias entry removes its key from the row (as a mask); a row whose every visible entry is
 *     `-Infinity` is an empty row (output 0, lse -Infinity, gradients 0);
 *   - a `+Infinity` or NaN entry at a key the row can see makes exactly that row NaN (output; lse NaN or +Infinity);
 *   - any value at a (query, key) pair the masks rule out (causal, window, layout, keyLengths, mask, segments) is
 *     never read: the row stays exact;
 *   - gradients: with `-Infinity` entries (finite rows and empty rows), dq, dk, dv and dBias equal the float64
 *     reference (dBias 0 at the `-Infinity` entries and on empty rows).
 */
import type {Tensor} from '@tensorflow/tfjs-core';
import {expect} from 'chai';
import type {AttentionCase} from './cases.js';
import {biasValues, Lib, maskValues, randomArray, refProblem, Tf} from './check_case.js';
import {referenceBackward, referenceForward, refVisible} from './reference.js';
import type {Registrar} from './semantics_checks.js';

const CASE: AttentionCase = {name: 'bias semantics', op: 'flash', batch: 2, seqQ: 6, seqK: 9, heads: 2, kvHeads: 1,
  headDim: 8, causal: true, bias: {shape: 'bh'}, mask: {shape: 'q', density: 0.8}};

/** Bias element (b, h, i, j) of CASE's [B, H, Sq, Sk] bias. */
const at = (b: number, h: number, i: number, j: number) =>
  ((b * CASE.heads + h) * CASE.seqQ + i) * CASE.seqK + j;

export function describeBiasSemantics(tf: Tf, lib: Lib, r: Registrar): void {
  const seed = 4242;
  const p0 = refProblem(lib, CASE, seed);
  const n = CASE.batch * CASE.seqQ * CASE.heads * CASE.headDim, nk = CASE.batch * CASE.seqK * CASE.kvHeads * CASE.headDim;
  const q = randomArray(n, seed), k = randomArray(nk, seed + 1), v = randomArray(nk, seed + 2);
  const dO = randomArray(n, seed + 3);
  const maskData = maskValues(CASE, CASE.mask!, seed + 11);
  const visible = (b: number, h: number, i: number, j: number) => refVisible(p0, b, h, i, j);

  /** The op on CASE's inputs with the given bias values; forward, and gradients when asked. */
  async function run(bias: Float32Array, grads: boolean) {
    const qt = tf.tensor(q, [CASE.batch, CASE.seqQ, CASE.heads, CASE.headDim]);
    const kt = tf.tensor(k, [CASE.batch, CASE.seqK, CASE.kvHeads, CASE.headDim]);
    const vt = tf.tensor(v, [CASE.batch, CASE.seqK, CASE.kvHeads, CASE.headDim]);
    const mt = tf.tensor(Int32Array.from(maskData.values), [CASE.seqQ, CASE.seqK], 'bool');
    const bt = tf.tensor(bias, [CASE.batch, CASE.heads, CASE.seqQ, CASE.seqK]);
    const dOt = tf.tensor(dO, qt.shape);
    const f = (a: Tensor, b: Tensor, c: Tensor, d: Tensor) =>
      lib.flashAttention(a, b, c, {causal: true, mask: mt, bias: d, returnLse: true});
    const {output, lse} = f(qt, kt, vt, bt);
    const result: Record<string, Float32Array> = {
      output: await output.data() as Float32Array, lse: await lse.data() as Float32Array,
    };
    const owned = [qt, kt, vt, mt, bt, dOt, output, lse];
    if (grads) {
      const g = tf.grads((a: Tensor, b: Tensor, c: Tensor, d: Tensor) => tf.sum(tf.mul(f(a, b, c, d).output, dOt)))([qt, kt, vt, bt]);
      [result.dq, result.dk, result.dv, result.dBias] =
          await Promise.all(g.map((t) => t.data())) as Float32Array[];
      owned.push(...g);
    }
    tf.dispose(owned);
    return result;
  }

  const reference = (bias: Float32Array) =>
    ({...p0, bias: {values: bias, batchStride: CASE.heads * CASE.seqQ * CASE.seqK, headStride: CASE.seqQ * CASE.seqK}});

  /** Output rows (b, i, h) holding a NaN. */
  const nanRows = (out: Float32Array) => {
    const rows = new Set<string>();
    for (let b = 0; b < CASE.batch; b++) for (let i = 0; i < CASE.seqQ; i++) for (let h = 0; h < CASE.heads; h++) {
      const o = ((b * CASE.seqQ + i) * CASE.heads + h) * CASE.headDim;
      if (Array.from(out.subarray(o, o + CASE.headDim)).some(Number.isNaN)) rows.add(`${b},${i},${h}`);
    }
    return [...rows].sort();
  };

  const close = (what: string, actual: Float32Array, expected: Float64Array, skip: (n: number) => boolean) => {
    let maxRef = 1e-3;
    expected.forEach((e, m) => { if (!skip(m) && Number.isFinite(e)) maxRef = Math.max(maxRef, Math.abs(e)); });
    const problems: string[] = [];
    expected.forEach((e, m) => {
      if (skip(m) || problems.length >= 4) return;
      const a = actual[m];
      const ok = Number.isFinite(e) ? Number.isFinite(a) && Math.abs(a - e) <= 2e-4 * maxRef : a === e;
      if (!ok) problems.push(`${what}[${m}] = ${a}, expected ${e}`);
    });
    return problems;
  };

  r.describe('bias values', () => {
    r.it('-Infinity entries remove keys; a row of -Infinity is empty (output 0, lse -Infinity, gradients 0)',
        async () => {
          const bias = Float32Array.from(biasValues(CASE, CASE.bias!, seed + 12).values);
          for (let j = 0; j < CASE.seqK; j++) bias[at(0, 1, 5, j)] = -Infinity;   // row (b0, i5, h1): empty
          for (let j = 0; j < CASE.seqK; j += 2) bias[at(1, 0, 4, j)] = -Infinity;  // half its keys removed
          const actual = await run(bias, true);
          const ref = referenceForward(reference(bias), q, k, v);
          const grads = referenceBackward(reference(bias), q, k, v, dO, null);
          const none = () => false;
          const problems = [
            ...close('output', actual.output, ref.output, none), ...close('lse', actual.lse, ref.lse, none),
            ...close('dq', actual.dq, grads.dq, none), ...close('dk', actual.dk, grads.dk, none),
            ...close('dv', actual.dv, grads.dv, none), ...close('dBias', actual.dBias, grads.dBias!, none),
          ];
          expect(problems, r.backend).to.deep.equal([]);
          expect(actual.lse[(0 * CASE.heads + 1) * CASE.seqQ + 5]).to.equal(-Infinity);
          for (let j = 0; j < CASE.seqK; j++) expect(actual.dBias[at(0, 1, 5, j)], `dBias of the empty row`).to.equal(0);
        });

    r.it('+Infinity or NaN at a visible key makes exactly that row NaN; at a masked pair it is never read',
        async () => {
          const bias = Float32Array.from(biasValues(CASE, CASE.bias!, seed + 12).values);
          // Visible pairs poisoned: (b0, h0, i3) with +Infinity, (b1, h1, i5) with NaN.
          const pick = (b: number, h: number, i: number) => {
            for (let j = 0; j < CASE.seqK; j++) if (visible(b, h, i, j)) return j;
            throw new Error('no visible key');
          };
          bias[at(0, 0, 3, pick(0, 0, 3))] = Infinity;
          bias[at(1, 1, 5, pick(1, 1, 5))] = NaN;
          // Masked pairs poisoned (causal-hidden and mask-hidden): must not matter.
          let maskedPoisoned = 0;
          for (let b = 0; b < CASE.batch; b++) for (let h = 0; h < CASE.heads; h++) for (let i = 0; i < CASE.seqQ; i++) {
            for (let j = 0; j < CASE.seqK; j++) {
              if (!visible(b, h, i, j) && (i + j + b + h) % 3 === 0) {
                bias[at(b, h, i, j)] = (i + j) % 2 === 0 ? NaN : Infinity;
                maskedPoisoned++;
              }
            }
          }
          expect(maskedPoisoned).to.be.above(10);
          const actual = await run(bias, false);
          expect(nanRows(actual.output), r.backend).to.deep.equal(['0,3,0', '1,5,1']);
          const ref = referenceForward(reference(bias), q, k, v);
          const rowOf = (m: number) => Math.floor(m / CASE.headDim);
          const poisonedRow = (row: number) => {
            const h = row % CASE.heads, i = Math.floor(row / CASE.heads) % CASE.seqQ, b = Math.floor(row / CASE.heads / CASE.seqQ);
            return (b === 0 && i === 3 && h === 0) || (b === 1 && i === 5 && h === 1);
          };
          expect(close('output', actual.output, ref.output, (m) => poisonedRow(rowOf(m))), r.backend).to.deep.equal([]);
          const lseRow = (m: number) => {  // lse is [B, H, Sq]
            const i = m % CASE.seqQ, h = Math.floor(m / CASE.seqQ) % CASE.heads, b = Math.floor(m / CASE.seqQ / CASE.heads);
            return (b === 0 && i === 3 && h === 0) || (b === 1 && i === 5 && h === 1);
          };
          expect(close('lse', actual.lse, ref.lse, lseRow), r.backend).to.deep.equal([]);
          const poisonedLse = [actual.lse[(0 * CASE.heads + 0) * CASE.seqQ + 3], actual.lse[(1 * CASE.heads + 1) * CASE.seqQ + 5]];
          for (const x of poisonedLse) expect(Number.isNaN(x) || x === Infinity, `poisoned lse ${x}`).to.equal(true);
        });
  });
}
