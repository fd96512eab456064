/**
 * Non-finite and extreme inputs (see RELIABILITY.md, "NaN / Inf semantics"):
 *   - NaN in q row i poisons output row i only; NaN in k/v row j poisons exactly the rows that see key j (rows that
 *     cannot see it — causal, window, layout, padding, other heads, other batches — stay finite and exact).
 *   - A score of -Infinity removes its key like a mask; +Infinity makes its row NaN; with softcap scores are finite.
 *   - Rows that see no key: output exactly 0, lse -Infinity, gradients exactly 0 (also with a gradient into lse).
 *   - Very large logits (|q·k| ~ 1e4) stay finite and correct (online softmax).
 * The float64 reference (test/reference.ts) has these semantics by construction; every check compares with it, and
 * the poisoned-row sets are also asserted explicitly so a reference bug cannot hide a kernel bug.
 *
 * Environment-agnostic (as test/check_case.ts): the checks take the tfjs and library modules, and register themselves
 * through a Registrar, so node (test/semantics.test.ts: cpu, wasm, webgpu) and a Chromium page
 * (test/browser_semantics.test.ts: webgl, through test/browser/semantics_page_entry.ts) run the same assertions.
 */
import type {Tensor, Tensor1D} from '@tensorflow/tfjs-core';
import {expect} from 'chai';
import type {AttentionCase} from './cases.js';
import {Lib, randomArray, refProblem, Tf} from './check_case.js';
import {RefProblem, referenceBackward, referenceForward, refVisible} from './reference.js';
import {describeBiasSemantics} from './semantics_bias.js';

/** How the checks declare themselves: mocha's describe/it in node, a collector in the browser page. */
export interface Registrar {
  /** The backend's row name (in messages). */
  backend: string;
  describe(title: string, body: () => void): void;
  /** A check every backend must pass. */
  it(title: string, fn: () => Promise<void>): void;
  /** A check a backend may list as a known failure (registered as pending there, see reliability_backends.ts). */
  itOn(title: string, fn: () => Promise<void>): void;
}

let tf: Tf;
let lib: Lib;

/** Declares every semantics check (describes NaN, Infinity, empty rows, large logits) on the given modules. */
export function defineSemanticsChecks(tfModule: Tf, libModule: Lib, r: Registrar): void {
  tf = tfModule;
  lib = libModule;
  describeNaN(r);
  describeInfinity(r);
  describeEmptyRows(r);
  describeLargeLogits(r);
  describeBiasSemantics(tf, lib, r);
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

interface Data {
  q: Float32Array;
  k: Float32Array;
  v: Float32Array;
}

function randomData(c: AttentionCase, seed: number): Data {
  const nq = c.batch * c.seqQ * c.heads * c.headDim, nk = c.batch * c.seqK * c.kvHeads * c.headDim;
  return {q: randomArray(nq, seed), k: randomArray(nk, seed + 1), v: randomArray(nk, seed + 2)};
}

const qIndex = (c: AttentionCase, b: number, i: number, h: number, d = 0) =>
  ((b * c.seqQ + i) * c.heads + h) * c.headDim + d;
const kIndex = (c: AttentionCase, b: number, j: number, hk: number, d = 0) =>
  ((b * c.seqK + j) * c.kvHeads + hk) * c.headDim + d;

function callOp(c: AttentionCase, p: RefProblem, q: Tensor, k: Tensor, v: Tensor,
                keyLengths?: number[] | Tensor1D) {
  const options: Any = {scale: c.scale, softcap: c.softcap, keyLengths: keyLengths ?? c.keyLengths, returnLse: true};
  if (c.op === 'flash') return lib.flashAttention(q, k, v, {...options, causal: c.causal});
  if (c.op === 'sliding') return lib.slidingWindowAttention(q, k, v, {...options, windowSize: c.windowSize!});
  return lib.sparseAttention(q, k, v, {...options, causal: c.causal, layout: p.layout!});
}

interface Outputs {
  output: Float32Array;
  lse: Float32Array;
}

async function forward(c: AttentionCase, data: Data): Promise<Outputs> {
  const p = refProblem(lib, c);
  const q = tf.tensor(data.q, [c.batch, c.seqQ, c.heads, c.headDim]);
  const k = tf.tensor(data.k, [c.batch, c.seqK, c.kvHeads, c.headDim]);
  const v = tf.tensor(data.v, [c.batch, c.seqK, c.kvHeads, c.headDim]);
  const r = callOp(c, p, q, k, v);
  const [output, lse] = await Promise.all([r.output.data(), r.lse.data()]) as Float32Array[];
  tf.dispose([q, k, v, r.output, r.lse]);
  return {output, lse};
}

/**
 * Every element: NaN where the reference is NaN, the same infinity where it is infinite, finite and within `tol`
 * (relative to the largest finite reference magnitude) elsewhere. Returns the first problems found.
 */
function compare(what: string, actual: ArrayLike<number>, expected: ArrayLike<number>, tol: number): string[] {
  const problems: string[] = [];
  let maxRef = 1e-3;
  for (let n = 0; n < expected.length; n++) if (Number.isFinite(expected[n])) maxRef = Math.max(maxRef, Math.abs(expected[n]));
  for (let n = 0; n < expected.length && problems.length < 5; n++) {
    const a = actual[n], e = expected[n];
    if (Number.isNaN(e) ? !Number.isNaN(a) : !Number.isFinite(e) ? a !== e :
        !Number.isFinite(a) || Math.abs(a - e) > tol * maxRef) {
      problems.push(`${what}[${n}] = ${a}, expected ${e}`);
    }
  }
  return problems;
}

async function expectForwardMatchesReference(c: AttentionCase, data: Data, tol: number): Promise<Outputs> {
  const actual = await forward(c, data);
  const ref = referenceForward(refProblem(lib, c), data.q, data.k, data.v);
  const problems = [...compare('output', actual.output, ref.output, tol), ...compare('lse', actual.lse, ref.lse, tol)];
  expect(problems, c.name).to.deep.equal([]);
  return actual;
}

/** The set of output rows (b, i, h) that contain a NaN, as "b,i,h" strings. */
function nanRows(c: AttentionCase, output: ArrayLike<number>): Set<string> {
  const rows = new Set<string>();
  for (let b = 0; b < c.batch; b++) {
    for (let i = 0; i < c.seqQ; i++) {
      for (let h = 0; h < c.heads; h++) {
        for (let d = 0; d < c.headDim; d++) {
          if (Number.isNaN(output[qIndex(c, b, i, h, d)])) {
            rows.add(`${b},${i},${h}`);
            break;
          }
        }
      }
    }
  }
  return rows;
}

/** Rows that see key j of kv head hk in batch b, straight from the visibility rule. */
function rowsSeeing(c: AttentionCase, b: number, j: number, hk: number): Set<string> {
  const p = refProblem(lib, c);
  const rows = new Set<string>();
  const group = c.heads / c.kvHeads;
  for (let h = hk * group; h < (hk + 1) * group; h++) {
    for (let i = 0; i < c.seqQ; i++) if (refVisible(p, b, h, i, j)) rows.add(`${b},${i},${h}`);
  }
  return rows;
}

const sorted = (s: Set<string>) => [...s].sort();

/** Cases that mask keys in every way: causal, window, layout (per head), padding; GQA with 2 kv heads. */
const base = {batch: 2, heads: 4, kvHeads: 2, headDim: 8};
const MASKED_CASES: AttentionCase[] = [
  {...base, name: 'flash dense', op: 'flash', seqQ: 7, seqK: 9},
  {...base, name: 'flash causal', op: 'flash', seqQ: 9, seqK: 9, causal: true},
  {...base, name: 'sliding [1, 1]', op: 'sliding', seqQ: 9, seqK: 9, windowSize: [1, 1]},
  {...base, name: 'sparse per-head fromBlockMask causal', op: 'sparse', seqQ: 9, seqK: 9, causal: true,
   layout: {name: 'fromBlockMask', blockSize: 3, mask: [
     [[1, 0, 0], [0, 1, 0], [1, 0, 1]], [[1, 0, 0], [1, 1, 0], [0, 1, 1]],
     [[0, 0, 0], [1, 0, 0], [1, 1, 1]], [[1, 0, 0], [0, 0, 0], [0, 0, 1]]]}},
  {...base, name: 'flash keyLengths [4, 9]', op: 'flash', seqQ: 5, seqK: 9, keyLengths: [4, 9]},
];
/** Keys to poison: inside, at the edge of, and past keyLengths; in kv head 0 or 1; batch 0. */
const POISONED_KEYS: Array<[number, number]> = [[4, 0], [0, 1], [8, 0], [6, 1]];

/** A case and the keys [j, kvHead] of batch 0 to poison in it. */
interface PoisonCase {
  c: AttentionCase;
  keys: Array<[number, number]>;
}
/**
 * Longer than one tile of the tiled kernels (composite: 256 keys, query tiles of up to 256 rows): rows combine
 * unmasked (full) tiles with masked ones (the causal diagonal, the tile holding keyLengths[b]), so a poisoned value
 * also goes through the online softmax's rescaling of earlier tiles. Keys: in a tile that is full for later query
 * tiles and diagonal for its own, on a later diagonal, and past keyLengths[0] = 290 (padding: seen by no row).
 */
const MULTI_TILE_CASES: PoisonCase[] = [
  {c: {...base, name: 'flash causal 300', op: 'flash', seqQ: 300, seqK: 300, causal: true}, keys: [[100, 0], [270, 1]]},
  {c: {...base, name: 'flash causal 300 keyLengths [290, 300]', op: 'flash', seqQ: 300, seqK: 300, causal: true,
       keyLengths: [290, 300]}, keys: [[260, 0], [295, 1]]},
];
const POISON_CASES: PoisonCase[] = [...MASKED_CASES.map((c) => ({c, keys: POISONED_KEYS})), ...MULTI_TILE_CASES];

const TOL = 1e-5;

const gradientTitle = (poison: string, tensor: 'q' | 'k' | 'v') =>
  `${poison} in ${tensor}: gradients match the reference element by element (${
      tensor === 'q' ? 'the row reaches no masked key' : 'masked keys reach no row'})`;

function describeNaN(r: Registrar): void {
  r.describe('NaN', () => {
    r.itOn('NaN in q row i poisons output row i only (every op and mask)', async () => {
      for (const c of MASKED_CASES) {
        const data = randomData(c, 11);
        data.q[qIndex(c, 0, 3, 1, 5)] = NaN;
        const out = await expectForwardMatchesReference(c, data, TOL);
        // Row (0, 3, 1) may legitimately be an empty row (output 0) in masked cases; otherwise it is NaN.
        const ref = referenceForward(refProblem(lib, c), data.q, data.k, data.v);
        const expected = Number.isNaN(ref.lse[(0 * c.heads + 1) * c.seqQ + 3]) ? ['0,3,1'] : [];
        expect(sorted(nanRows(c, out.output)), c.name).to.deep.equal(expected);
      }
    });
    for (const tensor of ['k', 'v'] as const) {
      r.itOn(`NaN in ${tensor} row j poisons exactly the rows that see key j`, async () => {
        for (const {c, keys} of POISON_CASES) {
          for (const [j, hk] of keys) {
            const data = randomData(c, 12);
            data[tensor][kIndex(c, 0, j, hk, 2)] = NaN;
            const out = await expectForwardMatchesReference(c, data, TOL);
            expect(sorted(nanRows(c, out.output)), `${c.name}, NaN in ${tensor} key ${j} kv head ${hk} (${r.backend})`)
                .to.deep.equal(sorted(rowsSeeing(c, 0, j, hk)));
          }
        }
      });
    }
    r.it('NaN or Infinity in k or v never leaves its batch and kv head (every backend)', async () => {
      for (const c of MASKED_CASES) {
        for (const [j, hk] of POISONED_KEYS) {
          for (const [tensor, value] of [['k', NaN], ['v', NaN], ['v', Infinity]] as const) {
            const data = randomData(c, 15);
            data[tensor][kIndex(c, 0, j, hk, 2)] = value;
            const out = await forward(c, data);
            const ref = referenceForward(refProblem(lib, c), data.q, data.k, data.v);
            // Rows of batch 1, and rows of batch 0 whose head reads the other kv head, must be finite and exact.
            const group = c.heads / c.kvHeads;
            for (let b = 0; b < c.batch; b++) {
              for (let i = 0; i < c.seqQ; i++) {
                for (let h = 0; h < c.heads; h++) {
                  if (b === 0 && Math.floor(h / group) === hk) continue;
                  const o = qIndex(c, b, i, h);
                  expect(compare(`output row ${b},${i},${h}`, out.output.subarray(o, o + c.headDim),
                                 ref.output.subarray(o, o + c.headDim), TOL),
                         `${c.name}: ${value} in ${tensor} key ${j} kv head ${hk}`).to.deep.equal([]);
                }
              }
            }
          }
        }
      }
    });
    r.it('NaN in one batch leaves the gradients of the other batch finite and exact', async () => {
      const c = MASKED_CASES[1];
      const data = randomData(c, 13);
      data.q[qIndex(c, 0, 2, 0, 1)] = NaN;
      data.k[kIndex(c, 0, 5, 1, 3)] = NaN;
      data.v[kIndex(c, 0, 1, 0, 0)] = NaN;
      const dO = randomArray(data.q.length, 14);
      const grads = await gradients(c, data, dO, null);
      const ref = referenceBackward(refProblem(lib, c), data.q, data.k, data.v, dO, null);
      // Batch 1 is the second half of every tensor.
      for (const key of ['dq', 'dk', 'dv'] as const) {
        const half = grads[key].length / 2;
        expect(compare(key, grads[key].subarray(half), ref[key].subarray(half), TOL), key).to.deep.equal([]);
      }
    });
    for (const [tensor, poison] of [['v', 'NaN'], ['v', '±Infinity']] as const) {
      r.itOn(gradientTitle(poison, tensor), async () => {
        for (const {c, keys} of POISON_CASES) {
          for (const [j, hk] of keys) {
            const data = randomData(c, 16);
            if (poison === 'NaN') {
              data[tensor][kIndex(c, 0, j, hk, 2)] = NaN;
            } else {
              data[tensor][kIndex(c, 0, j, hk, 3)] = Infinity;
              data[tensor][kIndex(c, 0, j, hk, 4)] = -Infinity;
            }
            const dO = randomArray(data.q.length, 17);
            const grads = await gradients(c, data, dO, null);
            const ref = referenceBackward(refProblem(lib, c), data.q, data.k, data.v, dO, null);
            for (const key of ['dq', 'dk', 'dv'] as const) {
              expect(compare(key, grads[key], ref[key], TOL), `${c.name}, ${poison} in ${tensor} key ${j} kv head ${hk}`)
                  .to.deep.equal([]);
            }
          }
        }
      });
    }
    /*
     * k: a NaN in key j makes the score of every row that sees j NaN (the whole row's gradients NaN); an infinity makes
     * it +Infinity (row NaN) or -Infinity, depending on the sign of q there: the key is removed (P = 0), and the
     * reference's dq = Σ dS·k gives 0·Infinity = NaN in that column of the row's dq. With softcap the score is finite
     * and its derivative 0: again NaN in that column of dq. Either way dq has a NaN in exactly the rows that see key j;
     * rows that cannot see it (masked by causal, window, layout, keyLengths; other heads and batches) stay exact, and so
     * does a row that sees only -Infinity scores (an empty row: gradients 0).
     */
    const SOFTCAP_CASES: PoisonCase[] =
        MASKED_CASES.slice(1).map((c) => ({c: {...c, name: `${c.name} softcap 5`, softcap: 5}, keys: POISONED_KEYS}));
    for (const poison of ['NaN', '+Infinity', '-Infinity'] as const) {
      r.itOn(gradientTitle(poison, 'k'), async () => {
        for (const {c, keys} of [...POISON_CASES, ...SOFTCAP_CASES]) {
          for (const [j, hk] of keys) {
            const data = randomData(c, 18);
            data.k[kIndex(c, 0, j, hk, 2)] = poison === 'NaN' ? NaN : poison === '+Infinity' ? Infinity : -Infinity;
            const dO = randomArray(data.q.length, 19);
            const grads = await gradients(c, data, dO, null);
            const ref = referenceBackward(refProblem(lib, c), data.q, data.k, data.v, dO, null);
            const what = `${c.name}, ${poison} in k key ${j} kv head ${hk}`;
            for (const key of ['dq', 'dk', 'dv'] as const) {
              expect(compare(key, grads[key], ref[key], TOL), what).to.deep.equal([]);
            }
            // dq rows with a NaN: those that see key j, except one seeing only -Infinity scores (empty: gradients 0).
            const {lse} = referenceForward(refProblem(lib, c), data.q, data.k, data.v);
            const expected = [...rowsSeeing(c, 0, j, hk)].filter((row) => {
              const [b, i, h] = row.split(',').map(Number);
              return lse[(b * c.heads + h) * c.seqQ + i] !== -Infinity;
            });
            expect(sorted(nanRows(c, grads.dq)), `${what}: rows of dq with a NaN`)
                .to.deep.equal(sorted(new Set(expected)));
          }
        }
      });
    }
    /*
     * q: a NaN or infinity in row i's q makes that row NaN (or empty, when every score it sees is -Infinity), so its dq
     * and the dk, dv of every key it sees are NaN; with softcap the row stays finite (scores ±softcap, derivative 0)
     * and dk of every key it sees is NaN in that column (0·Infinity). Keys it cannot see, and every other row: exact.
     * Rows poisoned: query i = min(j, seqQ − 1) of a head of kv head hk, for each [j, hk] of the case's keys.
     */
    for (const poison of ['NaN', '+Infinity', '-Infinity'] as const) {
      r.itOn(gradientTitle(poison, 'q'), async () => {
        for (const {c, keys} of [...POISON_CASES, ...SOFTCAP_CASES]) {
          for (const [j, hk] of keys) {
            const i = Math.min(j, c.seqQ - 1), h = hk * (c.heads / c.kvHeads) + (j % 2);
            const data = randomData(c, 20);
            data.q[qIndex(c, 0, i, h, 2)] = poison === 'NaN' ? NaN : poison === '+Infinity' ? Infinity : -Infinity;
            const dO = randomArray(data.q.length, 21);
            const grads = await gradients(c, data, dO, null);
            const ref = referenceBackward(refProblem(lib, c), data.q, data.k, data.v, dO, null);
            for (const key of ['dq', 'dk', 'dv'] as const) {
              expect(compare(key, grads[key], ref[key], TOL), `${c.name}, ${poison} in q row ${i} head ${h}`)
                  .to.deep.equal([]);
            }
          }
        }
      });
    }
  });
}

function describeInfinity(r: Registrar): void {
  r.describe('Infinity', () => {
    /** Key 4 of kv head 0 is [Inf, 0, ...]: its score is +Inf for rows with q[0] > 0 and -Inf for q[0] < 0. */
    function infiniteKey(c: AttentionCase, seed: number): Data {
      const data = randomData(c, seed);
      for (let b = 0; b < c.batch; b++) {
        for (let d = 0; d < c.headDim; d++) data.k[kIndex(c, b, 4, 0, d)] = d === 0 ? Infinity : 0;
        for (let i = 0; i < c.seqQ; i++) {
          for (let h = 0; h < c.heads; h++) data.q[qIndex(c, b, i, h)] = (i % 2 === 0 ? -0.5 : 0.5) + 0.01 * h;
        }
      }
      return data;
    }
    r.itOn('a -Infinity score removes its key; a +Infinity score makes its row NaN', async () => {
      for (const c of MASKED_CASES) {
        const data = infiniteKey(c, 21);
        const out = await forward(c, data);
        const ref = referenceForward(refProblem(lib, c), data.q, data.k, data.v);
        // The lse of a row with a +Infinity score is +Infinity (mathematically) or NaN (max − max): both accepted.
        const lse = out.lse.map((x, n) => (x === Infinity && Number.isNaN(ref.lse[n]) ? NaN : x));
        expect([...compare('output', out.output, ref.output, TOL), ...compare('lse', lse, ref.lse, TOL)], c.name)
            .to.deep.equal([]);
        // Explicitly: NaN rows are the odd rows (q[0] > 0) that see key 4 of kv head 0.
        const expected = new Set<string>();
        for (let b = 0; b < c.batch; b++) {
          for (const row of rowsSeeing(c, b, 4, 0)) if (Number(row.split(',')[1]) % 2 === 1) expected.add(row);
        }
        expect(sorted(nanRows(c, out.output)), c.name).to.deep.equal(sorted(expected));
      }
    });
    r.it('with softcap, infinite logits are capped: every row finite and exact', async () => {
      for (const c0 of MASKED_CASES) {
        const c = {...c0, softcap: 5};
        const out = await expectForwardMatchesReference(c, infiniteKey(c, 22), TOL);
        expect(out.output.every((x) => Number.isFinite(x)), c.name).to.equal(true);
      }
    });
    r.itOn('Infinity in v gives ±Infinity (not NaN) in exactly the rows that see it', async () => {
      for (const {c, keys} of POISON_CASES) {
        for (const [j, hk] of keys) {
          const data = randomData(c, 23);
          data.v[kIndex(c, 0, j, hk, 3)] = Infinity;
          data.v[kIndex(c, 0, j, hk, 4)] = -Infinity;
          const out = await expectForwardMatchesReference(c, data, TOL);
          const what = `${c.name}, ±Infinity in v key ${j} kv head ${hk}`;
          expect(nanRows(c, out.output).size, what).to.equal(0);
          const seeing = rowsSeeing(c, 0, j, hk);
          for (let i = 0; i < c.seqQ; i++) {
            for (let h = 0; h < c.heads; h++) {
              const inf = out.output[qIndex(c, 0, i, h, 3)] === Infinity &&
                  out.output[qIndex(c, 0, i, h, 4)] === -Infinity;
              expect(inf, `${what}: row 0,${i},${h}`).to.equal(seeing.has(`0,${i},${h}`));
            }
          }
        }
      }
    });
    r.itOn('+Infinity and -Infinity in one column of v give NaN where they meet, ±Infinity elsewhere', async () => {
      // Keys 0 (+Infinity) and 2 (-Infinity) in column 1 of kv head 0: causal rows 0 and 1 see only the +Infinity.
      const c = MASKED_CASES[1];
      const data = randomData(c, 24);
      data.v[kIndex(c, 0, 0, 0, 1)] = Infinity;
      data.v[kIndex(c, 0, 2, 0, 1)] = -Infinity;
      const out = await expectForwardMatchesReference(c, data, TOL);
      for (let i = 0; i < c.seqQ; i++) {
        const x = out.output[qIndex(c, 0, i, 0, 1)];
        expect(x, `row ${i}`).to.be.deep.equal(i < 2 ? Infinity : NaN);
      }
    });
  });
}

async function gradients(c: AttentionCase, data: Data, dO: Float32Array, dLse: Float32Array | null) {
  const p = refProblem(lib, c);
  const before = tf.memory().numTensors;
  const q = tf.tensor(data.q, [c.batch, c.seqQ, c.heads, c.headDim]);
  const k = tf.tensor(data.k, [c.batch, c.seqK, c.kvHeads, c.headDim]);
  const v = tf.tensor(data.v, [c.batch, c.seqK, c.kvHeads, c.headDim]);
  const dOut = tf.tensor(dO, q.shape);
  const dL = dLse ? tf.tensor(dLse, [c.batch, c.heads, c.seqQ]) : null;
  const [dq, dk, dv] = tf.grads((qq: Tensor, kk: Tensor, vv: Tensor) => {
    const r = callOp(c, p, qq, kk, vv);
    const loss = tf.sum(tf.mul(r.output, dOut));
    // lse * dLse directly, -Infinity rows included: the loss value may be ±Infinity, its gradient into lse is dLse.
    return dL ? tf.add(loss, tf.sum(tf.mul(r.lse, dL))) : loss;
  })([q, k, v]);
  const [dqA, dkA, dvA] = await Promise.all([dq.data(), dk.data(), dv.data()]) as Float32Array[];
  tf.dispose([q, k, v, dOut, dq, dk, dv]);
  dL?.dispose();
  expect(tf.memory().numTensors, 'tensors leaked').to.equal(before);
  return {dq: dqA, dk: dkA, dv: dvA};
}

function describeEmptyRows(r: Registrar): void {
  const EMPTY_CASES: AttentionCase[] = [
    {...base, name: 'flash keyLengths [0, 0]', op: 'flash', seqQ: 5, seqK: 9, keyLengths: [0, 0]},
    {...base, name: 'sparse all-zero layout', op: 'sparse', seqQ: 9, seqK: 9,
     layout: {name: 'fromBlockMask', blockSize: 4, mask: [[[0, 0, 0], [0, 0, 0], [0, 0, 0]]]}},
    {...base, name: 'sliding [2, 0] keyLengths [0, 0]', op: 'sliding', seqQ: 6, seqK: 6, windowSize: [2, 0],
     keyLengths: [0, 0]},
  ];
  const PARTLY_EMPTY: AttentionCase[] = [
    {...base, name: 'flash keyLengths [0, 6]', op: 'flash', seqQ: 5, seqK: 9, keyLengths: [0, 6]},
    {...base, name: 'flash causal seqQ 12 > seqK 5', op: 'flash', seqQ: 12, seqK: 5, causal: true},
    {...base, name: 'sliding [0, 0] seqQ 20 > seqK 4 (top rows empty)', op: 'sliding', seqQ: 20, seqK: 4,
     windowSize: [0, 0]},
    MASKED_CASES[3],
  ];
  r.describe('empty rows', () => {
    r.it('output exactly 0 and lse -Infinity, also with softcap and huge inputs', async () => {
      for (const c0 of [...EMPTY_CASES, ...PARTLY_EMPTY]) {
        for (const c of [c0, {...c0, softcap: 2, scale: 1e3}]) {
          const data = randomData(c, 31);
          const out = await expectForwardMatchesReference(c, data, TOL);
          const ref = referenceForward(refProblem(lib, c), data.q, data.k, data.v);
          let empty = 0;
          for (let b = 0; b < c.batch; b++) {
            for (let h = 0; h < c.heads; h++) {
              for (let i = 0; i < c.seqQ; i++) {
                if (ref.lse[(b * c.heads + h) * c.seqQ + i] !== -Infinity) continue;
                empty++;
                expect(out.lse[(b * c.heads + h) * c.seqQ + i]).to.equal(-Infinity);
                for (let d = 0; d < c.headDim; d++) expect(out.output[qIndex(c, b, i, h, d)]).to.equal(0);
              }
            }
          }
          expect(empty, `${c.name} has empty rows`).to.be.greaterThan(0);
        }
      }
    });
    r.it('gradients exactly 0 when every row is empty, even with a gradient into lse', async () => {
      for (const c of EMPTY_CASES) {
        const data = randomData(c, 32);
        const grads = await gradients(c, data, randomArray(data.q.length, 33), randomArray(c.batch * c.heads * c.seqQ, 34));
        for (const key of ['dq', 'dk', 'dv'] as const) {
          expect(grads[key].every((x) => x === 0), `${c.name}: ${key} not all exactly 0`).to.equal(true);
        }
      }
    });
    r.it('partly empty: gradients finite and exact with a gradient into lse (-Infinity rows contribute 0)', async () => {
      for (const c of PARTLY_EMPTY) {
        const data = randomData(c, 35);
        const dO = randomArray(data.q.length, 36), dLse = randomArray(c.batch * c.heads * c.seqQ, 37);
        const grads = await gradients(c, data, dO, dLse);
        const ref = referenceBackward(refProblem(lib, c), data.q, data.k, data.v, dO, dLse);
        for (const key of ['dq', 'dk', 'dv'] as const) {
          expect(compare(key, grads[key], ref[key], 1e-5), `${c.name} ${key}`).to.deep.equal([]);
        }
      }
    });
  });
}

function describeLargeLogits(r: Registrar): void {
  r.describe('large logits (online softmax)', () => {
    const c: AttentionCase = {...base, name: 'flash causal D64 scale 1', op: 'flash', seqQ: 33, seqK: 33, headDim: 64,
                              causal: true, scale: 1};
    /** q, k scaled so that |q·k| ~ magnitude; `shift` adds a common offset to every score of a row. */
    function largeData(magnitude: number, sign: number, seed: number): Data {
      const data = randomData(c, seed);
      // E|q·k| for uniform [-1, 1] entries is about sqrt(D)/3; scale both sides to reach the magnitude.
      const a = Math.sqrt(magnitude / (Math.sqrt(c.headDim) / 3));
      for (let n = 0; n < data.q.length; n++) data.q[n] *= a;
      for (let n = 0; n < data.k.length; n++) data.k[n] *= a;
      if (sign !== 0) {
        // Every score near sign·magnitude·(1 ± 0.1): q and k share a large common component of sign `sign`.
        for (let n = 0; n < data.q.length; n++) data.q[n] = data.q[n] * 0.05 + Math.sqrt(magnitude / c.headDim);
        for (let n = 0; n < data.k.length; n++) data.k[n] = data.k[n] * 0.05 + sign * Math.sqrt(magnitude / c.headDim);
      }
      return data;
    }
    // fp32 scores of magnitude 1e4 carry absolute rounding errors ~1e-3, so probabilities can differ by ~1e-3
    // relative from the float64 reference: that is the input's precision, not the kernel's.
    for (const [label, magnitude, sign] of [['mixed ±1e4', 1e4, 0], ['all ~ +1e4', 1e4, 1], ['all ~ -1e4', 1e4, -1],
                                            ['mixed ±1e3', 1e3, 0]] as Array<[string, number, number]>) {
      r.it(`${label}: finite and correct, forward and gradients`, async () => {
        const data = largeData(magnitude, sign, 41);
        await expectForwardMatchesReference(c, data, 2e-3);
        const dO = randomArray(data.q.length, 42), dLse = randomArray(c.batch * c.heads * c.seqQ, 43);
        const grads = await gradients(c, data, dO, dLse);
        const ref = referenceBackward(refProblem(lib, c), data.q, data.k, data.v, dO, dLse);
        for (const key of ['dq', 'dk', 'dv'] as const) {
          expect(grads[key].every((x) => Number.isFinite(x)), `${key} finite`).to.equal(true);
          expect(compare(key, grads[key], ref[key], 2e-2), key).to.deep.equal([]);
        }
      });
    }
  });
}
