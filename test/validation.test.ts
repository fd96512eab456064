/**
 * The input-validation matrix: every argument of the three ops and of the pattern builders, given a wrong rank,
 * shape, dtype, type, or an out-of-range / non-finite value, must throw an Error whose message names the argument
 * and states the expectation — and an op that throws must not leave tensors behind.
 */
import {MathBackendCPU} from '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import {expect} from 'chai';
import * as lib from '../src/index.js';
import type {BlockLayout} from '../src/patterns/block_layout.js';
import {selectedBackends} from './reliability_backends.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;
type Op = 'flash' | 'sliding' | 'sparse';
const OPS: Op[] = ['flash', 'sliding', 'sparse'];

// Valid shapes: batch 2, seqQ 5, seqK 6, heads 4, kvHeads 2, headDim 8.
const B = 2, SQ = 5, SK = 6, H = 4, HK = 2, D = 8, BS = 2;

/** The op with the options it needs to be valid (windowSize, layout) merged with `extra`. */
function callOp(op: Op, q: unknown, k: unknown, v: unknown, extra: object = {}): unknown {
  if (op === 'flash') return lib.flashAttention(q as Any, k as Any, v as Any, extra);
  if (op === 'sliding') return lib.slidingWindowAttention(q as Any, k as Any, v as Any, {windowSize: 2, ...extra});
  return lib.sparseAttention(q as Any, k as Any, v as Any, {layout: lib.patterns.local(SQ, SK, BS), ...extra});
}

/** Asserts that `fn` throws an Error matching every pattern, and that no tensor was created and kept. */
function expectError(fn: () => unknown, ...patterns: RegExp[]): void {
  const before = tf.memory().numTensors;
  let error: unknown = null;
  try {
    const result = fn();
    tf.dispose(result as Any);
  } catch (e) {
    error = e;
  }
  expect(error, `expected an Error matching ${patterns.join(' and ')}`).to.be.instanceOf(Error);
  const message = (error as Error).message;
  for (const p of patterns) expect(message).to.match(p);
  expect(error, `a TypeError from JS internals is not a validation message: ${message}`)
      .to.not.be.instanceOf(TypeError);
  expect(tf.memory().numTensors - before, `tensors leaked by the failed call (${message})`).to.equal(0);
}

interface Inputs {
  q: tf.Tensor;
  k: tf.Tensor;
  v: tf.Tensor;
  [name: string]: tf.Tensor;
}

function makeInputs(): Inputs {
  // Some backends (wasm) have no Complex kernel: fall back to a plain tensor there, the case is then skipped.
  let complex: tf.Tensor | null = null;
  try {
    complex = tf.tidy(() => tf.complex(tf.zeros([B, SQ, H, D]), tf.zeros([B, SQ, H, D])));
  } catch {
    complex = null;
  }
  const disposed = tf.zeros([B, SQ, H, D]);
  disposed.dispose();
  const disposedLengths = tf.tensor1d([1, 2], 'int32');
  disposedLengths.dispose();
  return {
    q: tf.zeros([B, SQ, H, D]),
    k: tf.zeros([B, SK, HK, D]),
    v: tf.zeros([B, SK, HK, D]),
    rank3: tf.zeros([B, SQ, H * D]),
    rank5: tf.zeros([B, SQ, H, D, 1]),
    int32: tf.zeros([B, SQ, H, D], 'int32'),
    bool: tf.zeros([B, SQ, H, D], 'bool'),
    ...(complex ? {complex} : {}),
    disposed,
    kInt32: tf.zeros([B, SK, HK, D], 'int32'),
    zeroSeq: tf.zeros([B, 0, H, D]),
    zeroHeads: tf.zeros([B, SQ, 0, D]),
    kWrongBatch: tf.zeros([B + 1, SK, HK, D]),
    kWrongDim: tf.zeros([B, SK, HK, D + 1]),
    kZeroSeq: tf.zeros([B, 0, HK, D]),
    vWrongSeq: tf.zeros([B, SK + 1, HK, D]),
    vWrongHeads: tf.zeros([B, SK, HK + 1, D]),
    kThreeHeads: tf.zeros([B, SK, 3, D]),
    q257: tf.zeros([1, 1, 1, 257]),
    k257: tf.zeros([1, 1, 1, 257]),
    lengthsFloat: tf.tensor1d([1, 2], 'float32'),
    lengthsShort: tf.tensor1d([1], 'int32'),
    lengthsRank2: tf.tensor2d([[1], [2]], [2, 1], 'int32'),
    disposedLengths,
  };
}

function layout(l: Partial<BlockLayout>): BlockLayout {
  return {blockSize: BS, numHeads: 1, numQueryBlocks: 3, numKeyBlocks: 3, mask: new Uint8Array(9).fill(1), ...l};
}

/**
 * Checks that fail today because of a problem reported to the lead (file and proposed fix in the reliability report).
 * Each is registered as pending with the reason; remove the entry once fixed and the test runs for real.
 */
const PENDING: Record<string, string> = {
};

/** RELIABILITY_RUN_PENDING=1 runs the pending checks too (to verify a fix). */
function itUnlessPending(title: string, fn: () => void | Promise<void>): void {
  if (PENDING[title] != null && !process.env.RELIABILITY_RUN_PENDING) it(`${title} [pending: ${PENDING[title]}]`);
  else it(title, fn);
}

for (const backend of selectedBackends()) {
  describe(`validation on ${backend.name}`, () => {
    let t: Inputs;
    before(async () => {
      await backend.setUp();
      t = makeInputs();
    });
    after(() => tf.dispose(Object.values(t)));

    for (const op of OPS) {
      describe(`${op}: q, k, v`, () => {
        it('non-tensors name the argument and its shape', () => {
          for (const bad of [undefined, null, 3, [[[[1]]]], {shape: [1, 1, 1, 1]}]) {
            expectError(() => callOp(op, bad, t.k, t.v), /^q must be a tf\.Tensor of shape \[batch, seqQ, heads, headDim\]/);
            expectError(() => callOp(op, t.q, bad, t.v), /^k must be a tf\.Tensor of shape \[batch, seqK, kvHeads, headDim\]/);
            expectError(() => callOp(op, t.q, t.k, bad), /^v must be a tf\.Tensor of shape \[batch, seqK, kvHeads, headDim\]/);
          }
        });
        it('wrong rank', () => {
          expectError(() => callOp(op, t.rank3, t.k, t.v), /^q must be rank 4/, /got rank 3/);
          expectError(() => callOp(op, t.rank5, t.k, t.v), /^q must be rank 4/, /got rank 5/);
          expectError(() => callOp(op, t.q, t.rank3, t.v), /^k must be rank 4/, /\[batch, seqK, kvHeads, headDim\]/);
          expectError(() => callOp(op, t.q, t.k, t.rank5), /^v must be rank 4/);
        });
        it('wrong dtype (int32, bool, complex64)', () => {
          for (const dtype of ['int32', 'bool', 'complex'] as const) {
            if (t[dtype] == null) continue;
            const got = new RegExp(`got ${dtype === 'complex' ? 'complex64' : dtype}`);
            expectError(() => callOp(op, t[dtype], t.k, t.v), /^q must have dtype float32/, got);
          }
          expectError(() => callOp(op, t.q, t.kInt32, t.v), /^k must have dtype float32/);
        });
        it('disposed tensors', () => {
          expectError(() => callOp(op, t.disposed, t.k, t.v), /^q has been disposed/);
        });
        it('zero-sized dimensions', () => {
          expectError(() => callOp(op, t.zeroSeq, t.k, t.v), /^q must have non-zero dimensions/);
          expectError(() => callOp(op, t.zeroHeads, t.k, t.v), /^q must have non-zero dimensions/);
          expectError(() => callOp(op, t.q, t.kZeroSeq, t.kZeroSeq), /^k must have shape/, /seqK>=1/);
        });
        it('k must match q in batch and headDim; v must match k', () => {
          expectError(() => callOp(op, t.q, t.kWrongBatch, t.kWrongBatch), /^k must have shape \[batch=2/, /got \[3,/);
          expectError(() => callOp(op, t.q, t.kWrongDim, t.kWrongDim), /^k must have shape/, /headDim=8\]/);
          expectError(() => callOp(op, t.q, t.k, t.vWrongSeq), /^v must have the shape of k \[2,6,2,8\], got \[2,7,2,8\]/);
          expectError(() => callOp(op, t.q, t.k, t.vWrongHeads), /^v must have the shape of k/);
        });
        it('heads must be divisible by kvHeads', () => {
          expectError(() => callOp(op, t.q, t.kThreeHeads, t.kThreeHeads),
                      /heads \(4, q\.shape\[2\]\) must be divisible by kvHeads \(3, k\.shape\[2\]\)/);
        });
        it('headDim above 256', () => {
          const extra = op === 'sparse' ? {layout: lib.patterns.local(1, 1, 1)} : {};
          expectError(() => callOp(op, t.q257, t.k257, t.k257, extra), /headDim \(q\.shape\[3\]\) must be at most 256, got 257/);
        });
      });

      describe(`${op}: options`, () => {
        it('scale must be finite', () => {
          for (const scale of [NaN, Infinity, -Infinity, '1', null, [1]]) {
            expectError(() => callOp(op, t.q, t.k, t.v, {scale}), /^scale must be a finite number/);
          }
        });
        it('softcap must be finite and >= 0', () => {
          for (const softcap of [-1, -0.5, NaN, Infinity, '2', null]) {
            expectError(() => callOp(op, t.q, t.k, t.v, {softcap}), /^softcap must be a finite number >= 0/);
          }
        });
        it('returnLse must be a boolean', () => {
          for (const returnLse of [1, 'true', null]) {
            expectError(() => callOp(op, t.q, t.k, t.v, {returnLse}), /^returnLse must be a boolean/);
          }
        });
        it('keyLengths arrays: length batch, integers in [0, seqK]', () => {
          expectError(() => callOp(op, t.q, t.k, t.v, {keyLengths: [1]}), /^keyLengths must have length batch=2, got length 1/);
          expectError(() => callOp(op, t.q, t.k, t.v, {keyLengths: [1, 2, 3]}), /^keyLengths must have length batch=2/);
          expectError(() => callOp(op, t.q, t.k, t.v, {keyLengths: [1, 7]}),
                      /^keyLengths\[1\] must be an integer in \[0, seqK=6\], got 7/);
          expectError(() => callOp(op, t.q, t.k, t.v, {keyLengths: [-1, 2]}), /^keyLengths\[0\] must be an integer in \[0, seqK=6\]/);
          expectError(() => callOp(op, t.q, t.k, t.v, {keyLengths: [1.5, 2]}), /^keyLengths\[0\] must be an integer/, /got 1\.5/);
          expectError(() => callOp(op, t.q, t.k, t.v, {keyLengths: [NaN, 2]}), /^keyLengths\[0\] must be an integer/);
          expectError(() => callOp(op, t.q, t.k, t.v, {keyLengths: new Int32Array([1, 9])}), /^keyLengths\[1\] must be an integer/);
        });
        it('keyLengths of another type', () => {
          for (const keyLengths of ['3', 3, {0: 1, 1: 2}, new Float32Array([1, 2])]) {
            expectError(() => callOp(op, t.q, t.k, t.v, {keyLengths}), /^keyLengths must be a number\[\] or int32 Tensor1D of length batch=2/);
          }
        });
        it('keyLengths tensors: int32 of shape [batch], not disposed', () => {
          expectError(() => callOp(op, t.q, t.k, t.v, {keyLengths: t.lengthsFloat}),
                      /^keyLengths must be an int32 tensor of shape \[batch=2\], got a float32 tensor of shape \[2\]/);
          expectError(() => callOp(op, t.q, t.k, t.v, {keyLengths: t.lengthsShort}), /^keyLengths must be an int32 tensor of shape \[batch=2\]/);
          expectError(() => callOp(op, t.q, t.k, t.v, {keyLengths: t.lengthsRank2}), /^keyLengths must be an int32 tensor of shape \[batch=2\]/);
          expectError(() => callOp(op, t.q, t.k, t.v, {keyLengths: t.disposedLengths}), /^keyLengths has been disposed/);
        });
      });
    }

    describe('options object', () => {
      itUnlessPending('options null / not an object', () => {
        for (const op of OPS) {
          for (const options of [null, 5, 'causal']) {
            const call = () => op === 'flash' ? lib.flashAttention(t.q, t.k, t.v, options as Any) :
                op === 'sliding' ? lib.slidingWindowAttention(t.q, t.k, t.v, options as Any) :
                                   lib.sparseAttention(t.q, t.k, t.v, options as Any);
            expectError(call, /options/);
          }
        }
      });
      itUnlessPending('a misspelt or foreign option key throws, naming it (an undefined one is ignored)', () => {
        for (const op of OPS) {
          expectError(() => callOp(op, t.q, t.k, t.v, {casual: true}), /options\.casual/, /not an option/);
        }
        expectError(() => lib.flashAttention(t.q, t.k, t.v, {windowSize: 2} as Any), /options\.windowSize/);
        const out = lib.flashAttention(t.q, t.k, t.v, {windowSize: undefined} as Any) as Any as tf.Tensor;
        expect(out.shape).to.deep.equal(t.q.shape);
        out.dispose();
      });
    });

    describe('masks, bias, ALiBi, segments, queryOffsets, dropout', () => {
      // Option tensors of this block (valid and bad ones), made once and disposed after.
      let o: Record<string, tf.Tensor>;
      before(() => {
        const disposedMask = tf.ones([SQ, SK], 'bool');
        disposedMask.dispose();
        o = {
          mask: tf.ones([B, 1, SQ, SK], 'bool'),
          maskRank1: tf.ones([SK], 'bool'),
          maskRank5: tf.ones([1, B, H, SQ, SK], 'bool'),
          maskWrongDims: tf.ones([SQ, SK + 1], 'bool'),
          maskBadBatch: tf.ones([3, SQ, SK], 'bool'),
          maskBadHeads: tf.ones([B, 3, SQ, SK], 'bool'),
          maskString: tf.tensor(new Array(SQ * SK).fill('a'), [SQ, SK], 'string'),
          biasInt: tf.zeros([SQ, SK], 'int32'),
          biasBool: tf.zeros([1, H, SQ, SK], 'bool'),
          biasBadHeads: tf.zeros([1, 2, SQ, SK]),
          biasTransposed: tf.zeros([SK, SQ]),
          slopesInt: tf.zeros([H], 'int32'),
          slopesShort: tf.zeros([3]),
          slopesBadBatch: tf.zeros([3, H]),
          slopesRank3: tf.zeros([1, 1, H]),
          ids: tf.zeros([B, SQ], 'int32'),
          keyIds: tf.zeros([B, SK], 'int32'),
          idsFloat: tf.zeros([B, SQ]),
          idsShort: tf.zeros([B, SK - 2], 'int32'),
          idsBadBatch: tf.zeros([B + 1, SK], 'int32'),
          offsetsFloat: tf.zeros([B]),
          offsetsShort: tf.zeros([1], 'int32'),
          offsetsRank2: tf.zeros([B, 1], 'int32'),
          disposedMask,
        };
      });
      after(() => tf.dispose(Object.values(o)));
      const pairShapes = /\[seqQ=5, seqK=6\], \[batch=2 \| 1, seqQ, seqK\] or \[batch=2 \| 1, heads=4 \| 1, seqQ, seqK\]/;

      for (const op of OPS) {
        it(`${op}: mask and bias — rank, dims, broadcast, dtype, type, disposed`, () => {
          for (const name of ['mask', 'bias'] as const) {
            const bad = (x: unknown) => () => callOp(op, t.q, t.k, t.v, {[name]: x});
            const dtype = name === 'mask' ? o.maskRank1 : tf.cast(o.maskRank1, 'float32');
            const shapeError = new RegExp(`^${name} must have shape`);
            expectError(bad(dtype), shapeError, pairShapes, /got \[6\]/);
            if (name === 'bias') dtype.dispose();
            for (const x of [o.maskRank5, o.maskWrongDims, o.maskBadBatch, o.maskBadHeads]) {
              const y = name === 'mask' ? x : tf.cast(x, 'float32');
              expectError(bad(y), shapeError, pairShapes, new RegExp(`got \\[${y.shape.join(', ')}\\]`));
              if (name === 'bias') y.dispose();
            }
            for (const x of [undefined, null, 1, [[1]], {shape: [SQ, SK]}]) {
              if (x === undefined) continue;  // absent: no option
              expectError(bad(x), new RegExp(`^${name} must be a tf\\.Tensor of shape`), pairShapes);
            }
            expectError(bad(o.disposedMask), new RegExp(`^${name} has been disposed`));
          }
          expectError(() => callOp(op, t.q, t.k, t.v, {mask: o.maskString}),
                      /^mask must have dtype bool or int32 or float32, got string/);
          expectError(() => callOp(op, t.q, t.k, t.v, {bias: o.biasInt}), /^bias must have dtype float32, got int32/);
          expectError(() => callOp(op, t.q, t.k, t.v, {bias: o.biasBool}), /^bias must have dtype float32, got bool/);
          expectError(() => callOp(op, t.q, t.k, t.v, {bias: o.biasBadHeads}), /^bias must have shape/,
                      /got \[1, 2, 5, 6\]/);
          expectError(() => callOp(op, t.q, t.k, t.v, {bias: o.biasTransposed}), /^bias must have shape/,
                      /got \[6, 5\]/);
        });

        it(`${op}: alibiSlopes — length, values, dtype, shape`, () => {
          const bad = (x: unknown) => () => callOp(op, t.q, t.k, t.v, {alibiSlopes: x});
          expectError(bad([1, 2, 3]), /^alibiSlopes must have length heads=4, got length 3/);
          expectError(bad([1, NaN, 3, 4]), /^alibiSlopes\[1\] must be a finite number, got NaN/);
          expectError(bad([1, 2, Infinity, 4]), /^alibiSlopes\[2\] must be a finite number, got Infinity/);
          expectError(bad(new Float32Array(5)), /^alibiSlopes must have length heads=4/);
          expectError(bad('0.5'), /^alibiSlopes must be a number\[\], Float32Array or float32 tensor of shape \[heads=4\] or \[batch=2 \| 1, heads=4\]/);
          expectError(bad(o.slopesInt), /^alibiSlopes must have dtype float32, got int32/);
          expectError(bad(o.slopesShort), /^alibiSlopes must have shape \[heads=4\] or \[batch=2 \| 1, heads=4\], got \[3\]/);
          expectError(bad(o.slopesBadBatch), /^alibiSlopes must have shape/, /got \[3, 4\]/);
          expectError(bad(o.slopesRank3), /^alibiSlopes must have shape/, /got \[1, 1, 4\]/);
        });

        it(`${op}: segmentIds — dtype, ids of the wrong length, a single tensor when seqQ != seqK`, () => {
          const bad = (x: unknown) => () => callOp(op, t.q, t.k, t.v, {segmentIds: x});
          expectError(bad(o.ids), /^segmentIds must be \{query: \[batch, seqQ=5\], key: \[batch, seqK=6\]\} when seqQ != seqK/);
          expectError(bad({query: o.idsFloat, key: o.keyIds}),
                      /^segmentIds\.query must be int32 of shape \[batch=2, seqQ=5\], got a float32 tensor of shape \[2, 5\]/);
          expectError(bad({query: o.ids, key: o.idsShort}),
                      /^segmentIds\.key must be int32 of shape \[batch=2, seqK=6\], got a int32 tensor of shape \[2, 4\]/);
          expectError(bad({query: o.ids, key: o.idsBadBatch}), /^segmentIds\.key must be int32 of shape \[batch=2, seqK=6\]/);
          expectError(bad({query: o.ids}), /^segmentIds\.key must be a tf\.Tensor int32 of shape \[batch=2, seqK=6\]/);
          expectError(bad({query: o.ids, key: o.keyIds, extra: o.ids}), /^segmentIds must be an int32 tensor \[batch, seq\] or \{query/);
          expectError(bad([o.ids, o.keyIds]), /^segmentIds must be an int32 tensor \[batch, seq\] or \{query/);
        });

        it(`${op}: queryOffsets — range, integers, length, tensor dtype and shape`, () => {
          const bad = (x: unknown) => () => callOp(op, t.q, t.k, t.v, {queryOffsets: x});
          const range = /in \[-seqQ, seqK\] = \[-5, 6\]/;
          expectError(bad(7), /^queryOffsets must be an integer/, range, /got 7/);
          expectError(bad(-6), /^queryOffsets must be an integer/, range, /got -6/);
          expectError(bad(1.5), /^queryOffsets must be an integer/, /got 1\.5/);
          expectError(bad(NaN), /^queryOffsets must be an integer/);
          expectError(bad([0, 9]), /^queryOffsets\[1\] must be an integer/, range, /got 9/);
          expectError(bad([0, 1, 2]), /^queryOffsets must have length batch=2, got length 3/);
          expectError(bad(new Int32Array([1])), /^queryOffsets must have length batch=2, got length 1/);
          expectError(bad('1'), /^queryOffsets must be a number, number\[\] \/ Int32Array of length batch=2 or an int32 Tensor1D/);
          expectError(bad(o.offsetsFloat), /^queryOffsets must be an int32 tensor of shape \[batch=2\], got a float32 tensor of shape \[2\]/);
          expectError(bad(o.offsetsShort), /^queryOffsets must be an int32 tensor of shape \[batch=2\]/, /\[1\]/);
          expectError(bad(o.offsetsRank2), /^queryOffsets must be an int32 tensor of shape \[batch=2\]/, /\[2, 1\]/);
        });

        it(`${op}: dropout — rate in [0, 1), integer seed in [0, 2^53), known keys`, () => {
          const bad = (x: unknown) => () => callOp(op, t.q, t.k, t.v, {dropout: x});
          for (const rate of [1, 1.5, -0.1, NaN, '0.1', undefined]) {
            expectError(bad({rate, seed: 1}), /^dropout\.rate must be a number in \[0, 1\)/);
          }
          for (const seed of [-1, 1.5, 2 ** 53, NaN, '3', undefined]) {
            expectError(bad({rate: 0.1, seed}), /^dropout\.seed must be an integer in \[0, 2\^53\)/);
          }
          expectError(bad({rate: 0.1, seed: 1, p: 0.2}), /^dropout\.p is not a dropout option \(known: rate, seed\)/);
          for (const x of [0.1, null, [0.1, 1], 'yes']) expectError(bad(x), /^dropout must be an object \{rate, seed\}/);
        });
      }

      it('the kernels refuse none of the options on this backend', () => {
        const out = tf.tidy(() => lib.flashAttention(t.q, t.k, t.v, {
          mask: o.mask, bias: tf.zeros([1, H, SQ, SK]), alibiSlopes: [0.5, 0.25, 0.125, 0.0625],
          segmentIds: {query: o.ids as tf.Tensor2D, key: o.keyIds as tf.Tensor2D}, queryOffsets: [0, 1], dropout: {rate: 0.2, seed: 3},
        }) as tf.Tensor);
        expect(out.shape).to.deep.equal([B, SQ, H, D]);
        out.dispose();
      });
    });

    describe('flash / sparse: causal', () => {
      it('must be a boolean', () => {
        for (const causal of [1, 'true', null]) {
          expectError(() => callOp('flash', t.q, t.k, t.v, {causal}), /^causal must be a boolean/);
          expectError(() => callOp('sparse', t.q, t.k, t.v, {causal}), /^causal must be a boolean/);
        }
      });
    });

    describe('sliding: windowSize', () => {
      it('is required', () => {
        expectError(() => lib.slidingWindowAttention(t.q, t.k, t.v, undefined as Any), /^windowSize must be given/);
        expectError(() => lib.slidingWindowAttention(t.q, t.k, t.v, {} as Any), /^windowSize must be given/);
      });
      it('integers >= -1, a number or a pair', () => {
        for (const windowSize of [-2, 1.5, NaN, Infinity, [1], [1, 2, 3], ['a', 1], [-2, 0], [0, 1.5], '3', null, {}]) {
          expectError(() => callOp('sliding', t.q, t.k, t.v, {windowSize}),
                      /^windowSize must be an integer/, /-1 = unbounded|>= -1/);
        }
      });
    });

    describe('sparse: layout', () => {
      it('is required and must be a BlockLayout', () => {
        expectError(() => lib.sparseAttention(t.q, t.k, t.v, undefined as Any), /layout must be given/);
        for (const l of [undefined, null, {}, 5, layout({blockSize: 0}), layout({blockSize: 1.5}),
                         layout({mask: [1, 1, 1] as Any})]) {
          expectError(() => callOp('sparse', t.q, t.k, t.v, {layout: l}), /^layout must be a BlockLayout \(from patterns\.\*\)/);
        }
      });
      it('block counts must fit seqQ, seqK and blockSize', () => {
        expectError(() => callOp('sparse', t.q, t.k, t.v, {layout: lib.patterns.local(SQ + 4, SK, BS)}),
                    /^layout must have ceil\(seqQ\/blockSize\)=3 query blocks and ceil\(seqK\/blockSize\)=3 key blocks/,
                    /got 5x3/);
        expectError(() => callOp('sparse', t.q, t.k, t.v, {layout: lib.patterns.local(SQ, SK + 2, BS)}),
                    /ceil\(seqK\/blockSize\)=3 key blocks/, /got 3x4/);
        expectError(() => callOp('sparse', t.q, t.k, t.v, {layout: layout({numKeyBlocks: 2, mask: new Uint8Array(6)})}),
                    /^layout must have/, /got 3x2/);
      });
      it('layout heads must be 1 or heads', () => {
        expectError(() => callOp('sparse', t.q, t.k, t.v, {layout: lib.patterns.bigBird(SQ, SK, BS, {numHeads: HK})}),
                    /^layout must have 1 or heads=4 layout heads, got 2/);
        expectError(() => callOp('sparse', t.q, t.k, t.v, {layout: layout({numHeads: 0, mask: new Uint8Array(0)})}),
                    /^layout must have 1 or heads=4 layout heads, got 0/);
      });
      it('mask length must match', () => {
        expectError(() => callOp('sparse', t.q, t.k, t.v, {layout: layout({mask: new Uint8Array(8)})}),
                    /^layout\.mask must have numHeads\*numQueryBlocks\*numKeyBlocks=9 entries, got 8/);
      });
    });
  });
}

  describe('validation: pattern builders', () => {
    const P = lib.patterns;
    it('seqQ, seqK, blockSize must be positive integers (every builder)', () => {
      const builders: Array<(a: number, b: number, c: number) => unknown> = [
        (a, b, c) => P.local(a, b, c), (a, b, c) => P.strided(a, b, c, {stride: 2}),
        (a, b, c) => P.fixed(a, b, c, {blocksPerSegment: 2}), (a, b, c) => P.bigBird(a, b, c),
        (a, b, c) => P.longformer(a, b, c),
      ];
      for (const build of builders) {
        for (const bad of [0, -1, 1.5, NaN]) {
          expectError(() => build(bad, 8, 2), /^seqQ must be a positive integer/);
          expectError(() => build(8, bad, 2), /^seqK must be a positive integer/);
          expectError(() => build(8, 8, bad), /^blockSize must be a positive integer/);
        }
      }
    });
    it('local', () => {
      expectError(() => P.local(8, 8, 2, {leftBlocks: -1}), /^leftBlocks must be a non-negative integer, got -1/);
      expectError(() => P.local(8, 8, 2, {rightBlocks: 0.5}), /^rightBlocks must be a non-negative integer, got 0\.5/);
    });
    it('strided', () => {
      expectError(() => P.strided(8, 8, 2, undefined as Any), /^stride must be a positive integer, got undefined/);
      expectError(() => P.strided(8, 8, 2, {stride: 0}), /^stride must be a positive integer, got 0/);
      expectError(() => P.strided(8, 8, 2, {stride: 2, localBlocks: -1}), /^localBlocks must be a non-negative integer/);
    });
    it('fixed', () => {
      expectError(() => P.fixed(8, 8, 2, undefined as Any), /^blocksPerSegment must be a positive integer/);
      expectError(() => P.fixed(8, 8, 2, {blocksPerSegment: 0}), /^blocksPerSegment must be a positive integer/);
      expectError(() => P.fixed(8, 8, 2, {blocksPerSegment: 2, summaryBlocks: 0}), /^summaryBlocks must be a positive integer/);
      expectError(() => P.fixed(8, 8, 2, {blocksPerSegment: 2, summaryBlocks: 3}),
                  /^summaryBlocks \(3\) must be at most blocksPerSegment \(2\)/);
    });
    it('bigBird', () => {
      expectError(() => P.bigBird(8, 8, 2, {windowBlocks: -1}), /^windowBlocks must be a non-negative integer/);
      expectError(() => P.bigBird(8, 8, 2, {globalBlocks: 1.5}), /^globalBlocks must be a non-negative integer/);
      expectError(() => P.bigBird(8, 8, 2, {randomBlocks: -2}), /^randomBlocks must be a non-negative integer/);
      expectError(() => P.bigBird(8, 8, 2, {numHeads: 0}), /^numHeads must be a positive integer/);
    });
    it('longformer', () => {
      expectError(() => P.longformer(8, 8, 2, {windowBlocks: -1}), /^windowBlocks must be a non-negative integer/);
      expectError(() => P.longformer(8, 8, 2, {globalBlocks: [0, -1]}), /^globalBlocks\[\] must be a non-negative integer, got -1/);
      expectError(() => P.longformer(8, 8, 2, {globalBlocks: [0.5]}), /^globalBlocks\[\] must be a non-negative integer/);
    });
    it('fromBlockMask', () => {
      expectError(() => P.fromBlockMask([], 2), /^mask must be a non-empty \[layoutHeads\]\[queryBlocks\]\[keyBlocks\] array/);
      expectError(() => P.fromBlockMask(null as Any, 2), /^mask must be a non-empty/);
      expectError(() => P.fromBlockMask([[]], 2), /^mask must have at least one query block and one key block/);
      expectError(() => P.fromBlockMask([[1, 0], [1]], 2), /^mask\[0\]\[1\] must have 2 key blocks/);
      expectError(() => P.fromBlockMask([[[1]], [[1], [1]]], 2), /^mask\[1\] must have 1 query blocks/);
      expectError(() => P.fromBlockMask([[1, 2]], 2), /^mask\[0\]\[0\]\[1\] must be 0, 1, true or false, got 2/);
      expectError(() => P.fromBlockMask([[1, NaN]], 2), /^mask\[0\]\[0\]\[1\] must be 0, 1, true or false, got NaN/);
      expectError(() => P.fromBlockMask([[1]], 0), /^blockSize must be a positive integer/);
    });
    itUnlessPending('builder params null / of the wrong type', () => {
      expectError(() => P.local(8, 8, 2, null as Any), /params|leftBlocks/);
      expectError(() => P.longformer(8, 8, 2, {globalBlocks: 3 as Any}), /^globalBlocks must be an array/);
    });
    itUnlessPending('union / intersect of non-layouts', () => {
      expectError(() => P.union(undefined as Any), /^union: layouts\[0\] must be a BlockLayout/);
      expectError(() => P.intersect(P.local(8, 8, 2), {} as Any), /^intersect: layouts\[1\] must be a BlockLayout/);
    });
    it('union / intersect', () => {
      expectError(() => P.union(), /^union needs at least one layout/);
      expectError(() => P.intersect(), /^intersect needs at least one layout/);
      expectError(() => P.union(P.local(8, 8, 2), P.local(8, 8, 4)),
                  /^union: layouts\[1\] must have blockSize 2 and 4x4 blocks like layouts\[0\], got blockSize 4, 2x2/);
      expectError(() => P.intersect(P.local(8, 8, 2), P.local(8, 10, 2)), /^intersect: layouts\[1\] must have/);
      expectError(() => P.union(P.bigBird(8, 8, 2, {numHeads: 2}), P.bigBird(8, 8, 2, {numHeads: 3})),
                  /^union: layouts\[1\] has 3 heads, others have 2/);
    });
  });

describe('validation: a kernel that fails mid-op', () => {
  // A backend with no kernels at all: the op validates, falls back to the composite kernels, and those throw on the
  // first tfjs op they call. Nothing the op created may survive the throw.
  const name = 'reliability-no-kernels';
  let previous = '';
  before(async () => {
    previous = tf.getBackend();
    tf.registerBackend(name, () => new MathBackendCPU());
    await tf.setBackend(name);
  });
  after(async () => {
    await tf.setBackend(previous);
    tf.removeBackend(name);
  });
  itUnlessPending('a kernel that throws leaks nothing', () => {
    const q = tf.zeros([1, 5, 2, 4]), k = tf.zeros([1, 5, 1, 4]);
    try {
      for (const keyLengths of [undefined, [3]]) {
        expectError(() => lib.flashAttention(q, k, k, {keyLengths}), /not registered/);
        expectError(() => lib.slidingWindowAttention(q, k, k, {windowSize: 1, keyLengths}), /not registered/);
      }
    } finally {
      tf.dispose([q, k]);
    }
  });
});
