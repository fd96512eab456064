/**
 * The `precision` option's contract on the backends without reduced-precision paths (cpu here; webgpu in
 * test/webgpu_precision.test.ts): every precision is accepted, runs fp32 exactly, and lastAttentionPath() says so;
 * bad values are refused with the argument named; the default comes from the ATTENTION_PRECISION flag.
 */
import './setup_node.js';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import {expect} from 'chai';
import * as lib from '../src/index.js';

describe('precision option (cpu)', () => {
  before(async () => {
    await tf.setBackend('cpu');
  });
  afterEach(() => tf.env().set(lib.PRECISION_FLAG, 'highest'));

  const qkv = () => [tf.randomNormal([1, 7, 2, 8], 0, 1, 'float32', 1), tf.randomNormal([1, 7, 2, 8], 0, 1, 'float32', 2),
    tf.randomNormal([1, 7, 2, 8], 0, 1, 'float32', 3)] as tf.Tensor4D[];

  for (const precision of lib.ATTENTION_PRECISIONS) {
    it(`'${precision}' runs the fp32 kernel and reports it`, async () => {
      const [q, k, v] = qkv();
      const exact = lib.flashAttention(q, k, v, {causal: true}) as tf.Tensor;
      const got = lib.flashAttention(q, k, v, {causal: true, precision}) as tf.Tensor;
      expect(lib.lastAttentionPath()).to.deep.equal(
          {backend: 'cpu', kernel: 'FlashAttention', requested: precision, path: 'fp32'});
      expect(Array.from(await got.data())).to.deep.equal(Array.from(await exact.data()));
      tf.dispose([q, k, v, exact, got]);
    });
  }

  it('the gradient kernel records its path with the forward\'s precision', () => {
    const [q, k, v] = qkv();
    const grads = tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
      lib.flashAttention(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, {precision: 'medium'}) as tf.Tensor);
    tf.dispose(grads([q, k, v]));
    expect(lib.lastAttentionPath()).to.deep.equal(
        {backend: 'cpu', kernel: 'FlashAttentionGrad', requested: 'medium', path: 'fp32'});
    tf.dispose([q, k, v]);
  });

  it('takes its default from tf.env() ATTENTION_PRECISION', () => {
    const [q, k, v] = qkv();
    tf.env().set(lib.PRECISION_FLAG, 'high');
    tf.dispose(lib.slidingWindowAttention(q, k, v, {windowSize: 3}));
    expect(lib.lastAttentionPath()?.requested).to.equal('high');
    tf.dispose([q, k, v]);
  });

  it('refuses a bad value, naming the argument, and leaks nothing', () => {
    const [q, k, v] = qkv();
    const before = tf.memory().numTensors;
    expect(() => lib.flashAttention(q, k, v, {precision: 'low' as never}))
        .to.throw(/precision must be one of 'highest', 'high', 'medium', got "low"/);
    expect(tf.memory().numTensors).to.equal(before);
    expect(() => tf.env().set(lib.PRECISION_FLAG, 'fp16')).to.throw(/ATTENTION_PRECISION must be one of/);
    tf.dispose([q, k, v]);
  });
});
