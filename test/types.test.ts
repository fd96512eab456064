/**
 * The declared return types of the three ops, checked by `tsc --noEmit -p .` (this file is in tsconfig's include):
 * `returnLse: true` is typed {output, lse}, no or a false `returnLse` is typed Tensor4D, and a `returnLse` known only
 * at run time gives the union. The `@ts-expect-error` lines fail the type-check if an overload becomes too loose.
 * At run time (cpu) the same calls return what their types say.
 */
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import {expect} from 'chai';
import {
  AttentionWithLse, FlashAttentionOptions, flashAttention, patterns, slidingWindowAttention, sparseAttention,
} from '../src/index.js';

describe('op return types (tsc-checked overloads)', () => {
  before(() => tf.setBackend('cpu'));

  it('returnLse: true is {output, lse}; absent or false is Tensor4D; a run-time boolean is the union', () => {
    tf.tidy(() => {
      const [batch, seq, heads, headDim] = [1, 8, 2, 4];
      const q = tf.randomNormal([batch, seq, heads, headDim]);
      const k = tf.randomNormal([batch, seq, heads, headDim]);
      const v = tf.randomNormal([batch, seq, heads, headDim]);
      const layout = patterns.local(seq, seq, 4, {leftBlocks: 1});

      const withLse: AttentionWithLse[] = [
        flashAttention(q, k, v, {causal: true, returnLse: true}),
        slidingWindowAttention(q, k, v, {windowSize: 2, returnLse: true}),
        sparseAttention(q, k, v, {layout, returnLse: true}),
      ];
      const outputs: tf.Tensor4D[] = [
        flashAttention(q, k, v),
        flashAttention(q, k, v, {causal: true, returnLse: false}),
        slidingWindowAttention(q, k, v, {windowSize: [2, 1]}),
        sparseAttention(q, k, v, {layout, returnLse: false}),
      ];
      // @ts-expect-error {output, lse} is not a Tensor4D
      const notATensor: tf.Tensor4D = flashAttention(q, k, v, {returnLse: true});
      // @ts-expect-error a Tensor4D has no lse
      const notAPair: AttentionWithLse = slidingWindowAttention(q, k, v, {windowSize: 2});

      const options: FlashAttentionOptions = {returnLse: Math.random() < 2};
      const either: tf.Tensor4D|AttentionWithLse = flashAttention(q, k, v, options);
      // @ts-expect-error with returnLse unknown until run time the result may be either
      const notNarrowed: tf.Tensor4D = flashAttention(q, k, v, options);

      for (const r of withLse) {
        expect(r.output.shape).to.deep.equal([batch, seq, heads, headDim]);
        expect(r.lse.shape).to.deep.equal([batch, heads, seq]);
      }
      for (const out of [...outputs, notAPair as unknown as tf.Tensor4D]) {
        expect(out).to.be.instanceOf(tf.Tensor);
        expect(out.shape).to.deep.equal([batch, seq, heads, headDim]);
      }
      expect(notATensor).to.have.keys(['output', 'lse']);
      expect(either).to.have.keys(['output', 'lse']);
      expect(notNarrowed).to.have.keys(['output', 'lse']);
    });
  });
});
