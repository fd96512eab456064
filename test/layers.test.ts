/**
 * tf.layers integration on the cpu backend: MultiHeadAttention against an independent reference written with plain
 * tfjs ops on the same weights (forward and gradients, tolerance 1e-5 relative to max |reference|), masks (causal,
 * sliding, sparse, keyLengths), GQA, serialization round trips, a training smoke test and error messages.
 */
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {expect} from 'chai';
import {flashAttention, lastAttentionPath, PRECISION_FLAG} from '../src/index.js';
import * as layers from '../src/layers/index.js';
import type {AttentionSpec} from '../src/layers/index.js';
import type {BlockLayout} from '../src/patterns/block_layout.js';
import * as patterns from '../src/patterns/index.js';

const TOL = 1e-5;

const maxAbs = (x: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(x)).dataSync()[0]);

/** max |a - b| / max(max |b|, floor). */
function relError(a: tf.Tensor, b: tf.Tensor, floor = 1e-3): number {
  return tf.tidy(() => {
    expect(a.shape).to.deep.equal(b.shape);
    return maxAbs(tf.sub(a, b)) / Math.max(maxAbs(b), floor);
  });
}

type Visible = (b: number, h: number, i: number, j: number) => boolean;

interface RefDims {
  numHeads: number;
  kvHeads: number;
  keyDim: number;
  softcap?: number;
}

/**
 * Multi-head attention written the slow obvious way, one (batch, head) at a time: per-head projections, scores,
 * masked softmax (rows with no visible key give 0), probs · v, then the output projection summed over heads.
 * `w` maps Keras weight names (query/kernel, ...) to tensors (variables, so gradients flow to them).
 */
function referenceAttention(
    w: Record<string, tf.Tensor>, query: tf.Tensor3D, key: tf.Tensor3D, value: tf.Tensor3D, d: RefDims,
    visible: Visible): tf.Tensor3D {
  const [batch, seqQ] = query.shape;
  const seqK = key.shape[1];
  const group = d.numHeads / d.kvHeads;
  const headProj = (x: tf.Tensor2D, name: string, h: number) => {
    const kernel = w[`${name}/kernel`] as tf.Tensor3D;
    const [features, , dim] = kernel.shape;
    let y = tf.matMul(x, tf.reshape(tf.slice(kernel, [0, h, 0], [features, 1, dim]), [features, dim]));
    if (w[`${name}/bias`] != null) y = tf.add(y, tf.reshape(tf.slice(w[`${name}/bias`], [h, 0], [1, dim]), [dim]));
    return y;
  };
  const rows: tf.Tensor[] = [];
  for (let b = 0; b < batch; b++) {
    const take = (x: tf.Tensor3D) =>
        tf.reshape(tf.slice(x, [b, 0, 0], [1, -1, -1]), x.shape.slice(1) as [number, number]) as tf.Tensor2D;
    const [qb, kb, vb] = [take(query), take(key), take(value)];
    let out: tf.Tensor | null = null;
    for (let h = 0; h < d.numHeads; h++) {
      const kvh = Math.floor(h / group);
      const q = headProj(qb, 'query', h), k = headProj(kb, 'key', kvh), v = headProj(vb, 'value', kvh);
      let scores = tf.div(tf.matMul(q, k, false, true), Math.sqrt(d.keyDim));
      if (d.softcap) scores = tf.mul(tf.tanh(tf.div(scores, d.softcap)), d.softcap);
      const maskValues: boolean[] = [];
      const rowAny: number[] = [];
      for (let i = 0; i < seqQ; i++) {
        let any = false;
        for (let j = 0; j < seqK; j++) {
          const on = visible(b, h, i, j);
          maskValues.push(on);
          any ||= on;
        }
        rowAny.push(any ? 1 : 0);
      }
      const mask = tf.tensor2d(maskValues.map(Number), [seqQ, seqK], 'bool');
      const masked = tf.where(mask, scores, tf.fill([seqQ, seqK], -Infinity));
      // Rows without keys: softmax of all -Infinity is NaN; replace those rows by 0 (the documented semantics).
      const hasKeys = tf.tile(tf.tensor2d(rowAny, [seqQ, 1], 'bool'), [1, seqK]);
      const zeros = tf.zerosLike(masked);
      const probs = tf.where(hasKeys, tf.softmax(tf.where(hasKeys, masked, zeros)), zeros);
      const o = tf.matMul(probs, v);
      const outKernel = w['attention_output/kernel'] as tf.Tensor3D;
      const [, valueDim, outDim] = outKernel.shape;
      const contribution = tf.matMul(o, tf.reshape(tf.slice(outKernel, [h, 0, 0], [1, valueDim, outDim]),
                                                   [valueDim, outDim]));
      out = out == null ? contribution : tf.add(out, contribution);
    }
    if (w['attention_output/bias'] != null) out = tf.add(out!, w['attention_output/bias']);
    rows.push(out!);
  }
  return tf.stack(rows) as tf.Tensor3D;
}

/** The layer's weights by Keras name (the part of the variable name after the layer name). */
function weightMap(layer: tfl.layers.Layer, prefix = ''): Record<string, tf.Tensor> {
  const map: Record<string, tf.Tensor> = {};
  for (const v of layer.weights) {
    const name = v.originalName.slice(v.originalName.indexOf('/') + 1);
    if (name.startsWith(prefix)) map[name.slice(prefix.length)] = v.read();
  }
  return map;
}

const causalVisible = (seqQ: number, seqK: number) => (_b: number, _h: number, i: number, j: number) =>
    j <= i + seqK - seqQ;
const windowVisible = (seqQ: number, seqK: number, left: number, right: number) =>
    (_b: number, _h: number, i: number, j: number) => {
      const diag = i + seqK - seqQ;
      return (left < 0 || j >= diag - left) && (right < 0 || j <= diag + right);
    };
const layoutVisible = (layout: BlockLayout, inner: Visible) => (b: number, h: number, i: number, j: number) => {
  const bs = layout.blockSize, lh = h % layout.numHeads;
  return layout.mask[(lh * layout.numQueryBlocks + Math.floor(i / bs)) * layout.numKeyBlocks + Math.floor(j / bs)] ===
      1 && inner(b, h, i, j);
};
const all: Visible = () => true;

interface Case {
  name: string;
  args: layers.MultiHeadAttentionArgs;
  batch: number;
  seqQ: number;
  /** Cross-attention when given. */
  seqK?: number;
  queryFeatures: number;
  valueFeatures?: number;
  keyFeatures?: number;
  keyLengths?: number[];
  /** Pass keyLengths as a trailing rank-1 input instead of the kwarg. */
  keyLengthsAsInput?: boolean;
  visible: (c: Case) => Visible;
}

const seqK = (c: Case) => c.seqK ?? c.seqQ;
const withLengths = (c: Case, v: Visible): Visible => (b, h, i, j) =>
    v(b, h, i, j) && (c.keyLengths == null || j < c.keyLengths[b]);

const CASES: Case[] = [
  {name: 'self, dense', args: {numHeads: 3, keyDim: 4}, batch: 2, seqQ: 13, queryFeatures: 12, visible: () => all},
  {name: 'self, causal', args: {numHeads: 2, keyDim: 8, causal: true}, batch: 2, seqQ: 21, queryFeatures: 16,
   visible: (c) => causalVisible(c.seqQ, seqK(c))},
  {name: 'cross [query, value, key], causal bottom-right, outputShape 9',
   args: {numHeads: 2, keyDim: 5, causal: true, outputShape: 9}, batch: 2, seqQ: 7, seqK: 19, queryFeatures: 10,
   valueFeatures: 6, keyFeatures: 5, visible: (c) => causalVisible(c.seqQ, seqK(c))},
  {name: 'cross [query, value], seqQ > seqK causal (empty rows)', args: {numHeads: 2, keyDim: 4, causal: true},
   batch: 1, seqQ: 11, seqK: 6, queryFeatures: 8, valueFeatures: 8, visible: (c) => causalVisible(c.seqQ, seqK(c))},
  {name: 'GQA 4 heads / 2 kv heads, causal', args: {numHeads: 4, keyDim: 4, numKeyValueHeads: 2, causal: true},
   batch: 2, seqQ: 17, queryFeatures: 8, visible: (c) => causalVisible(c.seqQ, seqK(c))},
  {name: 'MQA 4 heads / 1 kv head, no bias', args: {numHeads: 4, keyDim: 4, numKeyValueHeads: 1, useBias: false},
   batch: 1, seqQ: 9, queryFeatures: 8, visible: () => all},
  {name: 'valueDim 6 > keyDim 4 (padded)', args: {numHeads: 2, keyDim: 4, valueDim: 6, causal: true}, batch: 2,
   seqQ: 10, queryFeatures: 8, visible: (c) => causalVisible(c.seqQ, seqK(c))},
  {name: 'valueDim 3 < keyDim 5 (padded)', args: {numHeads: 2, keyDim: 5, valueDim: 3}, batch: 1, seqQ: 10,
   queryFeatures: 8, visible: () => all},
  {name: 'sliding window 4, causal', args: {numHeads: 2, keyDim: 4, causal: true,
                                            attention: {type: 'sliding', windowSize: 4}},
   batch: 2, seqQ: 23, queryFeatures: 8, visible: (c) => windowVisible(c.seqQ, seqK(c), 4, 0)},
  {name: 'sliding window 3 symmetric, GQA', args: {numHeads: 4, numKeyValueHeads: 2, keyDim: 4,
                                                   attention: {type: 'sliding', windowSize: 3}},
   batch: 1, seqQ: 19, queryFeatures: 8, visible: (c) => windowVisible(c.seqQ, seqK(c), 3, 3)},
  {name: 'sliding window [5, 2]', args: {numHeads: 2, keyDim: 4, attention: {type: 'sliding', windowSize: [5, 2]}},
   batch: 1, seqQ: 19, queryFeatures: 8, visible: (c) => windowVisible(c.seqQ, seqK(c), 5, 2)},
  {name: 'sparse longformer builder, causal', args: {
     numHeads: 2, keyDim: 4, causal: true,
     attention: {type: 'sparse', pattern: {name: 'longformer', blockSize: 4, windowBlocks: 1, globalBlocks: [0]}}},
   batch: 2, seqQ: 30, queryFeatures: 8,
   visible: (c) => layoutVisible(patterns.longformer(c.seqQ, seqK(c), 4, {windowBlocks: 1, globalBlocks: [0]}),
                                 causalVisible(c.seqQ, seqK(c)))},
  {name: 'sparse bigBird builder, per-head layouts', args: {
     numHeads: 2, keyDim: 4,
     attention: {type: 'sparse', pattern: {name: 'bigBird', blockSize: 4, randomBlocks: 1, numHeads: 2, seed: 3}}},
   batch: 1, seqQ: 26, queryFeatures: 8,
   visible: (c) =>
       layoutVisible(patterns.bigBird(c.seqQ, seqK(c), 4, {randomBlocks: 1, numHeads: 2, seed: 3}), all)},
  {name: 'sparse fixed block mask', args: {
     numHeads: 2, keyDim: 4,
     attention: {type: 'sparse', pattern: {blockSize: 4, mask: [[1, 0, 1], [0, 1, 0], [1, 1, 0]]}}},
   batch: 1, seqQ: 12, queryFeatures: 8,
   visible: () => layoutVisible(patterns.fromBlockMask([[1, 0, 1], [0, 1, 0], [1, 1, 0]], 4), all)},
  {name: 'keyLengths kwarg, causal', args: {numHeads: 2, keyDim: 4, causal: true}, batch: 3, seqQ: 14,
   queryFeatures: 8, keyLengths: [14, 5, 0], visible: (c) => withLengths(c, causalVisible(c.seqQ, seqK(c)))},
  {name: 'keyLengths as trailing input, cross-attention', args: {numHeads: 2, keyDim: 4}, batch: 2, seqQ: 6, seqK: 15,
   queryFeatures: 8, valueFeatures: 8, keyLengths: [9, 15], keyLengthsAsInput: true,
   visible: (c) => withLengths(c, all)},
  {name: 'softcap 2', args: {numHeads: 2, keyDim: 4, softcap: 2, causal: true}, batch: 1, seqQ: 9, queryFeatures: 8,
   visible: (c) => causalVisible(c.seqQ, seqK(c))},
  {name: "'naive' attention, GQA causal", args: {numHeads: 4, keyDim: 4, numKeyValueHeads: 2, causal: true,
                                                  attention: 'naive'},
   batch: 2, seqQ: 15, queryFeatures: 8, visible: (c) => causalVisible(c.seqQ, seqK(c))},
  {name: "'naive' attention, keyLengths", args: {numHeads: 2, keyDim: 4, attention: 'naive'}, batch: 2, seqQ: 8,
   queryFeatures: 8, keyLengths: [3, 0], visible: (c) => withLengths(c, all)},
];

interface Built {
  layer: layers.MultiHeadAttention;
  inputs: tf.Tensor[];
  query: tf.Tensor3D;
  key: tf.Tensor3D;
  value: tf.Tensor3D;
  kwargs: {keyLengths?: number[]};
}

function build(c: Case): Built {
  const layer = layers.multiHeadAttention(c.args);
  const query = tf.randomNormal([c.batch, c.seqQ, c.queryFeatures]) as tf.Tensor3D;
  const cross = c.seqK != null;
  const value = cross ? tf.randomNormal([c.batch, seqK(c), c.valueFeatures!]) as tf.Tensor3D : query;
  const key = c.keyFeatures != null ? tf.randomNormal([c.batch, seqK(c), c.keyFeatures]) as tf.Tensor3D : value;
  const inputs: tf.Tensor[] = !cross ? [query] : c.keyFeatures != null ? [query, value, key] : [query, value];
  const kwargs: {keyLengths?: number[]} = {};
  if (c.keyLengths != null) {
    if (c.keyLengthsAsInput) inputs.push(tf.tensor1d(c.keyLengths, 'float32'));  // tf.layers feeds float32
    else kwargs.keyLengths = c.keyLengths;
  }
  // Random biases too, so the reference checks them.
  layer.apply(inputs.length === 1 ? inputs[0] : inputs, kwargs);
  layer.setWeights(layer.getWeights().map((w) => tf.randomNormal(w.shape, 0, 0.5)));
  return {layer, inputs, query, key, value, kwargs};
}

function refDims(c: Case): RefDims {
  return {numHeads: c.args.numHeads, kvHeads: c.args.numKeyValueHeads ?? c.args.numHeads, keyDim: c.args.keyDim,
          softcap: c.args.softcap};
}

describe('layers: MultiHeadAttention vs a reference from plain tfjs ops (cpu, rel. tolerance 1e-5)', () => {
  before(async () => {
    await tf.setBackend('cpu');
  });

  for (const c of CASES) {
    it(`${c.name}: output`, () => {
      const b = build(c);
      const apply = () => b.layer.apply(b.inputs.length === 1 ? b.inputs[0] : b.inputs, b.kwargs) as tf.Tensor;
      const before = tf.memory().numTensors;
      const out = apply();
      const outShape = [c.batch, c.seqQ, (c.args.outputShape as number | undefined) ?? c.queryFeatures];
      expect(out.shape).to.deep.equal(outShape);
      expect(b.layer.computeOutputShape(b.inputs.map((x) => x.shape) as number[][])).to.deep.equal(
          [c.batch, c.seqQ, outShape[2]]);
      const ref = tf.tidy(
          () => referenceAttention(weightMap(b.layer), b.query, b.key, b.value, refDims(c), c.visible(c)));
      expect(relError(out, ref)).to.be.at.most(TOL);
      tf.dispose([out, ref]);
      const out2 = apply();
      out2.dispose();
      expect(tf.memory().numTensors, 'apply leaks no tensors').to.equal(before);
    });
  }

  for (const c of CASES.filter((c) => !c.keyLengthsAsInput)) {
    it(`${c.name}: gradients w.r.t. weights and inputs`, () => {
      const b = build(c);
      const ct = tf.randomNormal([c.batch, c.seqQ, (c.args.outputShape as number | undefined) ?? c.queryFeatures]);
      const cross = c.seqK != null;
      const layerLoss = (q: tf.Tensor, v: tf.Tensor, k: tf.Tensor) =>
          tf.sum(tf.mul(b.layer.apply(cross ? [q, v, k] : q, b.kwargs) as tf.Tensor, ct)) as tf.Scalar;
      const refLoss = (q: tf.Tensor, v: tf.Tensor, k: tf.Tensor) =>
          tf.sum(tf.mul(referenceAttention(weightMap(b.layer), q as tf.Tensor3D, (cross ? k : q) as tf.Tensor3D,
                                           (cross ? v : q) as tf.Tensor3D, refDims(c), c.visible(c)),
                        ct)) as tf.Scalar;
      const vars = b.layer.trainableWeights.map((w) => w.read() as tf.Variable);
      const names = vars.map((v) => v.name);
      const pick = (g: tf.NamedTensorMap) => names.map((n) => g[n]);
      const ours = tf.variableGrads(() => layerLoss(b.query, b.value, b.key), vars);
      const theirs = tf.variableGrads(() => refLoss(b.query, b.value, b.key), vars);
      // Relative to the largest weight gradient: some are exactly 0 in theory (key/bias: softmax is invariant to a
      // per-row shift), so both sides hold rounding noise there.
      const scale = Math.max(...pick(theirs.grads).map(maxAbs));
      pick(ours.grads).forEach(
          (g, i) => expect(relError(g, pick(theirs.grads)[i], scale), names[i]).to.be.at.most(TOL));
      const inputs = cross ? [b.query, b.value, b.key] : [b.query];
      const wrt = (loss: typeof layerLoss) => tf.grads((...xs: tf.Tensor[]) =>
          cross ? loss(xs[0], xs[1], xs[2]) : loss(xs[0], xs[0], xs[0]))(inputs);
      const dOurs = wrt(layerLoss), dTheirs = wrt(refLoss);
      dOurs.forEach((g, i) => expect(relError(g, dTheirs[i]), `d input ${i}`).to.be.at.most(TOL));
      tf.dispose([ct, ours.value, theirs.value, ...Object.values(ours.grads), ...Object.values(theirs.grads),
                  ...dOurs, ...dTheirs]);
    });
  }
});

/** LayerNorm over the last axis with keras_hub's epsilon. */
const refLayerNorm = (t: tf.Tensor, g: tf.Tensor, b: tf.Tensor) => {
  const {mean, variance} = tf.moments(t, -1, true);
  return tf.add(tf.mul(tf.div(tf.sub(t, mean), tf.sqrt(tf.add(variance, 1e-5))), g), b);
};
const refDense = (t: tf.Tensor, w: Record<string, tf.Tensor>, name: string) => {
  const k = w[`${name}/kernel`] as tf.Tensor2D;
  return tf.add(tf.reshape(tf.matMul(tf.reshape(t, [-1, k.shape[0]]), k), [...t.shape.slice(0, -1), k.shape[1]]),
                w[`${name}/bias`]);
};

describe('layers: keras_hub TransformerEncoder, TransformerDecoder, PositionEmbedding', () => {
  const randomizeWeights = (layer: tfl.layers.Layer) =>
      layer.setWeights(layer.getWeights().map((w) => tf.randomNormal(w.shape, 0, 0.5)));

  for (const normalizeFirst of [false, true]) {
    it(`TransformerEncoder (normalizeFirst ${normalizeFirst}) = keras_hub's block on reference ops`, () => {
      const encoder = layers.transformerEncoder({intermediateDim: 24, numHeads: 2, normalizeFirst,
                                                 activation: 'gelu'});
      const x = tf.randomNormal([2, 7, 8]) as tf.Tensor3D;
      encoder.apply(x);
      randomizeWeights(encoder);
      const out = encoder.apply(x) as tf.Tensor;
      const w = weightMap(encoder);
      const ln = (t: tf.Tensor, name: string) => refLayerNorm(t, w[`${name}/gamma`], w[`${name}/beta`]);
      const attend = (t: tf.Tensor) => referenceAttention(weightMap(encoder, 'self_attention_layer/'),
                                                          t as tf.Tensor3D, t as tf.Tensor3D, t as tf.Tensor3D,
                                                          {numHeads: 2, kvHeads: 2, keyDim: 4}, all);
      const ff = (t: tf.Tensor) => {
        const pre = refDense(t, w, 'feedforward_intermediate_dense');
        const g = tf.mul(tf.mul(pre, 0.5), tf.add(1, tf.erf(tf.div(pre, Math.SQRT2))));
        return refDense(g, w, 'feedforward_output_dense');
      };
      let ref: tf.Tensor;
      if (normalizeFirst) {
        const h = tf.add(x, attend(ln(x, 'self_attention_layer_norm')));
        ref = tf.add(h, ff(ln(h, 'feedforward_layer_norm')));
      } else {
        const h = ln(tf.add(x, attend(x)), 'self_attention_layer_norm');
        ref = ln(tf.add(h, ff(h)), 'feedforward_layer_norm');
      }
      expect(relError(out, ref)).to.be.at.most(TOL);
      expect(encoder.weights.map((v) => v.originalName.slice(v.originalName.indexOf('/') + 1))).to.deep.equal([
        'self_attention_layer/query/kernel', 'self_attention_layer/query/bias', 'self_attention_layer/key/kernel',
        'self_attention_layer/key/bias', 'self_attention_layer/value/kernel', 'self_attention_layer/value/bias',
        'self_attention_layer/attention_output/kernel', 'self_attention_layer/attention_output/bias',
        'self_attention_layer_norm/gamma', 'self_attention_layer_norm/beta', 'feedforward_layer_norm/gamma',
        'feedforward_layer_norm/beta', 'feedforward_intermediate_dense/kernel', 'feedforward_intermediate_dense/bias',
        'feedforward_output_dense/kernel', 'feedforward_output_dense/bias',
      ]);
    });
  }

  it('TransformerDecoder: causal self-attention and cross-attention on reference ops', () => {
    const decoder = layers.transformerDecoder({intermediateDim: 16, numHeads: 2});
    const x = tf.randomNormal([2, 6, 8]) as tf.Tensor3D;
    const enc = tf.randomNormal([2, 9, 8]) as tf.Tensor3D;
    decoder.apply(x, {encoderSequence: enc});
    randomizeWeights(decoder);
    const out = decoder.apply(x, {encoderSequence: enc}) as tf.Tensor;
    const w = weightMap(decoder);
    const ln = (t: tf.Tensor, name: string) => refLayerNorm(t, w[`${name}/gamma`], w[`${name}/beta`]);
    const dims = {numHeads: 2, kvHeads: 2, keyDim: 4};
    const keep = (i: number, j: number) => j <= i;
    let h = ln(tf.add(x, referenceAttention(weightMap(decoder, 'self_attention/'), x, x, x, dims,
                                            (_b, _h, i, j) => keep(i, j))), 'self_attention_layer_norm');
    h = ln(tf.add(h, referenceAttention(weightMap(decoder, 'cross_attention/'), h as tf.Tensor3D, enc, enc, dims,
                                        all)), 'cross_attention_layer_norm');
    const ref = ln(tf.add(h, refDense(tf.relu(refDense(h, w, 'feedforward_intermediate_dense')), w,
                                      'feedforward_output_dense')), 'feedforward_layer_norm');
    expect(relError(out, ref)).to.be.at.most(TOL);
    expect(() => decoder.apply(x)).to.throw(/built with cross-attention/);
    // useCausalMask false: the last token changes every output row.
    const dense = decoder.apply(x, {encoderSequence: enc, useCausalMask: false}) as tf.Tensor;
    expect(relError(tf.slice(dense, [0, 0, 0], [2, 1, 8]), tf.slice(out, [0, 0, 0], [2, 1, 8]))).to.be.above(1e-4);
  });

  it('PositionEmbedding returns the learned table shaped like its input (keras_hub)', () => {
    const embedding = layers.positionEmbedding({sequenceLength: 10});
    const x = tf.randomNormal([2, 7, 6]);
    const y = embedding.apply(x) as tf.Tensor;
    const table = embedding.getWeights()[0];
    expect(table.shape).to.deep.equal([10, 6]);
    expect(relError(y, tf.broadcastTo(tf.slice(table, [0, 0], [7, 6]), [2, 7, 6]))).to.equal(0);
    const shifted = embedding.apply(tf.zeros([1, 3, 6]), {startIndex: 4}) as tf.Tensor;
    expect(relError(shifted, tf.expandDims(tf.slice(table, [4, 0], [3, 6]), 0))).to.equal(0);
    // Longer than sequenceLength: keras_hub's hierarchical extension; the first sequenceLength rows are the table.
    const long = embedding.apply(tf.zeros([1, 23, 6])) as tf.Tensor;
    expect(relError(tf.slice(long, [0, 0, 0], [1, 10, 6]), tf.expandDims(table, 0))).to.be.at.most(1e-6);
    const alpha = 0.4, e = (p: number) => tf.div(tf.sub(tf.slice(table, [p, 0], [1, 6]),
                                                         tf.mul(alpha, tf.slice(table, [0, 0], [1, 6]))), 1 - alpha);
    const row21 = tf.add(tf.mul(alpha, e(2)), tf.mul(1 - alpha, e(1)));
    expect(relError(tf.reshape(tf.slice(long, [0, 21, 0], [1, 1, 6]), [1, 6]), row21)).to.be.at.most(1e-5);
    expect(() => layers.positionEmbedding({sequenceLength: 4, maxLength: 3} as never)).to.throw(/maxLength/);
  });
});

/** Saves to memory and loads back through tf.loadLayersModel. */
async function roundTrip(model: tfl.LayersModel): Promise<tfl.LayersModel> {
  let artifacts: tf.io.ModelArtifacts | undefined;
  await model.save(tf.io.withSaveHandler(async (a) => {
    artifacts = a;
    return {modelArtifactsInfo: {dateSaved: new Date(), modelTopologyType: 'JSON'}};
  }));
  // Through JSON text, as a file would be.
  const topology = JSON.parse(JSON.stringify(artifacts!.modelTopology));
  return tfl.loadLayersModel(tf.io.fromMemory({...artifacts!, modelTopology: topology}));
}

describe('layers: serialization', () => {
  it('a small GPT (all attention kinds) round-trips through model.save / tf.loadLayersModel', async () => {
    const specs: AttentionSpec[] = [
      'flash',
      {type: 'sliding', windowSize: 4},
      {type: 'sparse', pattern: {name: 'bigBird', blockSize: 4, windowBlocks: 3, globalBlocks: 1, randomBlocks: 1,
                                 seed: 7}},
      {type: 'sparse', pattern: {blockSize: 8, mask: [[1, 0], [1, 1]]}},
    ];
    const model = tfl.sequential();
    model.add(tfl.layers.embedding({inputDim: 11, outputDim: 16, inputShape: [16]}));
    model.add(layers.positionEmbedding({sequenceLength: 32}));
    for (const attention of specs) {
      model.add(layers.transformerDecoder({numHeads: 4, intermediateDim: 20, dropout: 0.1, normalizeFirst: true,
                                           activation: 'gelu', attention}));
    }
    model.add(layers.transformerEncoder({numHeads: 2, intermediateDim: 12}));
    model.add(layers.multiHeadAttention({numHeads: 2, keyDim: 3, valueDim: 5, outputShape: 7, causal: true}));
    model.add(tfl.layers.dense({units: 11}));
    const tokens = tf.tensor2d(Array.from({length: 2 * 16}, (_, i) => (i * 7) % 11), [2, 16], 'int32');
    const expected = model.predict(tokens) as tf.Tensor;

    const loaded = await roundTrip(model);
    const got = loaded.predict(tokens) as tf.Tensor;
    expect(Array.from(await got.data())).to.deep.equal(Array.from(await expected.data()));
    const ours = ['PositionEmbedding', 'TransformerDecoder', 'TransformerEncoder', 'MultiHeadAttention'];
    const configs = (m: tfl.LayersModel) => JSON.parse(JSON.stringify(
        m.layers.filter((l) => ours.includes(l.getClassName())).map((l) => ({cls: l.getClassName(), ...l.getConfig()})), (_k, v) => v === undefined ? null : v));
    expect(configs(model)).to.have.length(7);
    expect(configs(loaded)).to.deep.equal(configs(model));
    expect(loaded.layers.slice(2, 6).map((l) => (l as layers.TransformerDecoder).config.attention.spec))
        .to.deep.equal(specs);
  });

  it('a functional cross-attention model with a keyLengths input round-trips', async () => {
    const query = tfl.input({shape: [null, 8]});
    const memory = tfl.input({shape: [null, 6]});
    const lengths = tfl.input({shape: [1], dtype: 'int32'});
    const attended = layers.multiHeadAttention({numHeads: 2, keyDim: 4, numKeyValueHeads: 1})
                         .apply([query, memory, lengths]) as tfl.SymbolicTensor;
    expect(attended.shape).to.deep.equal([null, null, 8]);
    const model = tfl.model({inputs: [query, memory, lengths], outputs: attended});
    const feeds = [tf.randomNormal([2, 5, 8]), tf.randomNormal([2, 9, 6]), tf.tensor2d([[9], [4]], [2, 1], 'int32')];
    const expected = model.predict(feeds) as tf.Tensor;
    const loaded = await roundTrip(model);
    const got = loaded.predict(feeds) as tf.Tensor;
    expect(Array.from(await got.data())).to.deep.equal(Array.from(await expected.data()));
    // keyLengths took effect: the memory past position 4 of the second sequence doesn't matter.
    const changed = [feeds[0], tf.concat([tf.slice(feeds[1], [0, 0, 0], [2, 4, 6]), tf.randomNormal([2, 5, 6])], 1),
                     feeds[2]];
    const again = loaded.predict(changed) as tf.Tensor;
    expect(relError(tf.slice(again, [1, 0, 0], [1, 5, 8]), tf.slice(expected, [1, 0, 0], [1, 5, 8])))
        .to.be.at.most(TOL);
  });
});

describe('layers: training', () => {
  it('model.fit on a previous-token task: the loss falls', async () => {
    const vocab = 6, seq = 12, n = 64;
    const model = tfl.sequential();
    model.add(tfl.layers.embedding({inputDim: vocab, outputDim: 16, inputShape: [seq]}));
    model.add(layers.transformerDecoder({numHeads: 2, intermediateDim: 32, normalizeFirst: true,
                                         attention: {type: 'sliding', windowSize: 2}}));
    model.add(tfl.layers.dense({units: vocab, activation: 'softmax'}));
    model.compile({optimizer: tf.train.adam(0.01), loss: 'categoricalCrossentropy'});
    const tokens = Array.from({length: n * seq}, (_, i) => (i * 7919 + (i >> 3) * 31) % vocab);
    const x = tf.tensor2d(tokens, [n, seq], 'int32');
    // Target at position i is the token at i-1 (position 0: itself).
    const prev = tokens.map((t, i) => i % seq === 0 ? t : tokens[i - 1]);
    const y = tf.oneHot(tf.tensor2d(prev, [n, seq], 'int32'), vocab);
    const history = await model.fit(x, y, {epochs: 25, batchSize: 16, verbose: 0});
    const losses = history.history.loss as number[];
    expect(losses[losses.length - 1]).to.be.below(0.5 * losses[0]);
  });
});

describe('layers: dropout and errors', () => {
  it('dropout is active only when training', () => {
    const layer = layers.multiHeadAttention({numHeads: 2, keyDim: 4, dropout: 0.5});
    const x = tf.randomNormal([1, 6, 8]);
    const a = layer.apply(x) as tf.Tensor, b = layer.apply(x) as tf.Tensor;
    expect(relError(a, b)).to.equal(0);
    const c = layer.apply(x, {training: true}) as tf.Tensor;
    expect(relError(c, a)).to.be.above(1e-3);
  });

  it('the kernel path (masks, top-left causal, Keras-empty rows) equals the materialized one, every spec', () => {
    const specs: Array<[AttentionSpec, boolean]> = [
      ['flash', false], ['flash', true], [{type: 'sliding', windowSize: 3}, false], [{type: 'sliding', windowSize: 2}, true],
      [{type: 'sparse', pattern: {name: 'local', blockSize: 2, windowBlocks: 1}}, false],
    ];
    const query = tf.randomNormal([2, 5, 8]), value = tf.randomNormal([2, 8, 8]);
    // Batch 1's value mask is all false: every row of it is Keras-empty (uniform over the keys the spec allows).
    const valueMask = tf.tensor2d([[1, 1, 1, 1, 1, 1, 0, 0], [0, 0, 0, 0, 0, 0, 0, 0]], [2, 8], 'bool');
    const queryMask = tf.tensor2d([[1, 1, 0, 1, 1], [1, 1, 1, 1, 1]], [2, 5], 'bool');
    const attentionMask = tf.tensor3d(Array.from({length: 2 * 5 * 8}, (_, n) => n % 3 !== 1), [2, 5, 8], 'bool');
    for (const [attention, causal] of specs) {
      for (const call of [{useCausalMask: true}, {queryMask, valueMask}, {attentionMask, useCausalMask: true},
                          {queryMask, valueMask, attentionMask}]) {
        const layer = layers.multiHeadAttention({numHeads: 2, keyDim: 4, attention, causal});
        const kernel = layer.apply(query, {value, ...call}) as tf.Tensor;
        const [materialized] = layer.apply(query, {value, ...call, returnAttentionScores: true}) as tf.Tensor[];
        expect(relError(kernel, materialized), `${JSON.stringify(attention)} causal=${causal} ${
            Object.keys(call)}`).to.be.at.most(1e-5);
      }
    }
  });

  it('training dropout runs in the kernel: the op dropout with the layer seed + its call count', () => {
    const x = tf.randomNormal([2, 6, 8]);
    const args = {numHeads: 2, keyDim: 4, dropout: 0.3, seed: 11};
    const a = layers.multiHeadAttention(args), b = layers.multiHeadAttention(args);
    a.apply(x);
    b.apply(x);
    b.setWeights(a.getWeights());
    const a1 = a.apply(x, {training: true}) as tf.Tensor, a2 = a.apply(x, {training: true}) as tf.Tensor;
    const b1 = b.apply(x, {training: true}) as tf.Tensor;
    expect(relError(b1, a1)).to.equal(0);
    expect(relError(a2, a1)).to.be.above(1e-3);
    const [wq, bq, wk, bk, wv, bv, wo, bo] = a.getWeights();
    const project = (w: tf.Tensor, bias: tf.Tensor) =>
        tf.add(tf.reshape(tf.matMul(tf.reshape(x, [12, 8]), tf.reshape(w, [8, 8])), [2, 6, 2, 4]), bias) as tf.Tensor4D;
    const o = flashAttention(project(wq, bq), project(wk, bk), project(wv, bv), {dropout: {rate: 0.3, seed: 11}});
    const expected = tf.add(tf.reshape(tf.matMul(tf.reshape(o, [12, 8]), tf.reshape(wo, [8, 8])), [2, 6, 8]), bo);
    expect(relError(a1, expected)).to.be.at.most(1e-5);
  });

  it('bad configs and inputs throw errors that name the argument', () => {
    expect(() => layers.multiHeadAttention({numHeads: 4, keyDim: 8, numKeyValueHeads: 3}))
        .to.throw(/numHeads \(4\) must be divisible by numKeyValueHeads \(3\)/);
    expect(() => layers.multiHeadAttention({numHeads: 0, keyDim: 8})).to.throw(/numHeads must be a positive/);
    expect(() => layers.multiHeadAttention({numHeads: 2, keyDim: 8, dropout: 1})).to.throw(/dropout/);
    expect(() => layers.multiHeadAttention({numHeads: 2, keyDim: 8, causal: true,
                                            attention: {type: 'sliding', windowSize: [3, 2]}}))
        .to.throw(/right = 0 in a causal layer/);
    expect(() => layers.multiHeadAttention({numHeads: 2, keyDim: 8, attention: 'fast' as AttentionSpec}))
        .to.throw(/attention must be 'flash'/);
    expect(() => layers.multiHeadAttention({
      numHeads: 2, keyDim: 8,
      attention: {type: 'sparse', pattern: {name: 'nope' as 'local', blockSize: 4}},
    })).to.throw(/pattern.name must be one of/);
    expect(() => layers.multiHeadAttention({
      numHeads: 2, keyDim: 8, attention: {type: 'sparse', pattern: {name: 'strided', blockSize: 4}},
    })).to.throw(/stride/);
    const fixedMask = layers.multiHeadAttention({
      numHeads: 2, keyDim: 8, attention: {type: 'sparse', pattern: {blockSize: 4, mask: [[1, 0], [1, 1]]}},
    });
    expect(() => fixedMask.apply(tf.zeros([1, 12, 8]))).to.throw(/seqQ=12, seqK=12/);
    expect(() => layers.multiHeadAttention({numHeads: 2, keyDim: 8}).apply(tf.zeros([4, 8])))
        .to.throw(/rank 3/);
    expect(() => layers.transformerEncoder({numHeads: 9, intermediateDim: 4}).apply(tf.zeros([1, 4, 8])))
        .to.throw(/at least numHeads/);
    expect(() => layers.transformerEncoder({numHeads: 2, intermediateDim: 4, casual: true} as never))
        .to.throw(/unknown config key 'casual'/);
    expect(() => layers.multiHeadAttention({numHeads: 2, keyDim: 4}).apply(tf.zeros([1, 4, 8]), {casual: true} as never))
        .to.throw(/unknown call argument 'casual'/);
    expect(() => layers.multiHeadAttention({numHeads: 2, keyDim: 4, attentionAxes: [2]}))
        .to.throw(/attentionAxes \[2\] is not supported/);
    expect(() => layers.multiHeadAttention({numHeads: 2, keyDim: 4}).apply(tf.zeros([2, 5, 8]), {keyLengths: [5, 6]}))
        .to.throw(/keyLengths\[1\] must be an integer in \[0, seqK=5\]/);
  });
});

describe('layers: precision', () => {
  it('MultiHeadAttention passes precision to the ops, checks it, and saves it only when set', () => {
    const x = tf.randomNormal([1, 6, 8]);
    for (const precision of ['medium', 'high', 'highest'] as const) {
      const layer = layers.multiHeadAttention({numHeads: 2, keyDim: 4, precision});
      tf.dispose(layer.apply(x) as tf.Tensor);
      expect(lastAttentionPath()?.requested, precision).to.equal(precision);
      expect(layer.getConfig().precision).to.equal(precision);
      const copy = layers.MultiHeadAttention.fromConfig(layers.MultiHeadAttention, layer.getConfig());
      expect((copy as layers.MultiHeadAttention).precision).to.equal(precision);
    }
    // Unset: the ATTENTION_PRECISION flag at call time, and no key in the (Keras) config.
    const plain = layers.multiHeadAttention({numHeads: 2, keyDim: 4});
    expect('precision' in plain.getConfig()).to.equal(false);
    tf.env().set(PRECISION_FLAG, 'medium');
    try {
      tf.dispose(plain.apply(x) as tf.Tensor);
      expect(lastAttentionPath()?.requested).to.equal('medium');
    } finally {
      tf.env().set(PRECISION_FLAG, 'highest');
    }
    expect(() => layers.multiHeadAttention({numHeads: 2, keyDim: 4, precision: 'fp16' as never}))
        .to.throw(/MultiHeadAttention: precision must be one of 'highest', 'high', 'medium', got "fp16"/);
    x.dispose();
  });

  it('TransformerEncoder and TransformerDecoder pass precision through to their attention', () => {
    const x = tf.randomNormal([1, 5, 8]);
    const encoder = layers.transformerEncoder({intermediateDim: 8, numHeads: 2, precision: 'medium'});
    tf.dispose(encoder.apply(x) as tf.Tensor);
    expect(lastAttentionPath()?.requested).to.equal('medium');
    expect(encoder.getConfig().precision).to.equal('medium');
    const decoder = layers.transformerDecoder({intermediateDim: 8, numHeads: 2, precision: 'high'});
    tf.dispose(decoder.apply(x) as tf.Tensor);
    expect(lastAttentionPath()?.requested).to.equal('high');
    expect('precision' in layers.transformerDecoder({intermediateDim: 8, numHeads: 2}).getConfig()).to.equal(false);
    expect(() => layers.transformerDecoder({intermediateDim: 8, numHeads: 2, precision: 'low' as never}))
        .to.throw(/TransformerDecoder: precision must be one of/);
    x.dispose();
  });
});
