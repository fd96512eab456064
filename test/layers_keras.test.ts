/**
 * MultiHeadAttention against Keras's math (cpu): (1) tfjs-layers' unexported port of Keras's MultiHeadAttention
 * (dist/layers/nlp) with the same weights and inputs, rel. tolerance 1e-5; (2) Keras-format model.json fixtures
 * (test/fixtures/keras, written by make_fixtures.ts as the converter writes tf.keras functional models) loaded with
 * tf.loadLayersModel, checked against a float64 reference of Keras's math from the same weights. The tests do not
 * depend on which path (kernels or materialized) attention_dispatch.ts picks.
 */
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
// tfjs-layers' nlp port calls chained ops (x.add, x.expandDims), which the public tfjs-core entry does not install.
import '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops.js';
import * as tfl from '@tensorflow/tfjs-layers';
import {expect} from 'chai';
import {readFileSync} from 'node:fs';
import {createRequire} from 'node:module';
import {dirname, join} from 'node:path';
import {fileURLToPath} from 'node:url';
import '../src/index.js';
import * as layers from '../src/layers/index.js';

// The port's modules (dist/layers/...) are a second copy of tfjs-layers' classes: importing them registers their
// Dense, Dropout, initializers, MultiHeadAttention, ... in tfjs-core's one serialization map under the public
// bundle's class names, so tf.loadLayersModel would then build the copy's layers (whose variable names collide with
// the bundle's: "Variable ... already registered") and the port instead of our MultiHeadAttention. The map is
// restored after the import; the port gets its own classes back only while it is built and called.
const registry = tf.serialization.SerializationMap.getMap().classNameMap;
const bundleClasses = {...registry};
const {MultiHeadAttention: KerasPort} = createRequire(import.meta.url)(
    '@tensorflow/tfjs-layers/dist/layers/nlp/multihead_attention.js') as
    typeof import('@tensorflow/tfjs-layers/dist/layers/nlp/multihead_attention.js');
const portClasses = {...registry};
const useClasses = (classes: typeof registry) => {
  for (const name of Object.keys(registry)) delete registry[name];
  Object.assign(registry, classes);
};
useClasses(bundleClasses);
function withPortClasses<T>(run: () => T): T {
  useClasses(portClasses);
  try {
    return run();
  } finally {
    useClasses(bundleClasses);
  }
}

const TOL = 1e-5;
const maxAbs = (x: tf.Tensor) => tf.tidy(() => tf.max(tf.abs(x)).dataSync()[0]);
const relError = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => {
  expect(a.shape).to.deep.equal(b.shape);
  return maxAbs(tf.sub(a, b)) / Math.max(maxAbs(b), 1e-3);
});

interface PortCase {
  name: string;
  args: {numHeads: number; keyDim: number; valueDim?: number; outputShape?: number; useBias?: boolean};
  seqQ: number;
  seqK?: number;  // cross-attention when given
  features: number;
  kvFeatures?: number;
  attentionMask?: boolean;
  useCausalMask?: boolean;
  queryMask?: boolean;
  valueMask?: boolean;
}

const PORT_CASES: PortCase[] = [
  {name: 'self', args: {numHeads: 2, keyDim: 4}, seqQ: 6, features: 8},
  {name: 'cross, valueDim 5 != keyDim 3, outputShape 7', args: {numHeads: 3, keyDim: 3, valueDim: 5, outputShape: 7},
   seqQ: 5, seqK: 9, features: 6, kvFeatures: 10},
  {name: 'useBias false', args: {numHeads: 2, keyDim: 4, useBias: false}, seqQ: 5, seqK: 7, features: 8},
  {name: 'attentionMask (with fully masked rows)', args: {numHeads: 2, keyDim: 4}, seqQ: 6, seqK: 8, features: 8,
   attentionMask: true},
  {name: 'useCausalMask, Tq = Tk', args: {numHeads: 2, keyDim: 4}, seqQ: 7, features: 8, useCausalMask: true},
  {name: 'useCausalMask, Tq < Tk (top-left)', args: {numHeads: 2, keyDim: 4}, seqQ: 4, seqK: 9, features: 8,
   useCausalMask: true},
  {name: 'useCausalMask, Tq > Tk (top-left)', args: {numHeads: 2, keyDim: 4}, seqQ: 9, seqK: 4, features: 8,
   useCausalMask: true},
  {name: 'Keras masks: right-padded value mask', args: {numHeads: 2, keyDim: 4}, seqQ: 6,
   seqK: 8, features: 8, valueMask: true},
  {name: 'Keras masks: query + value masks, causal and attentionMask', args: {numHeads: 2, keyDim: 4}, seqQ: 6,
   features: 8, queryMask: true, valueMask: true, useCausalMask: true, attentionMask: true},
];

function withMask(t: tf.Tensor, mask: tf.Tensor | undefined): tf.Tensor {
  if (mask != null) (t as unknown as {kerasMask: tf.Tensor}).kerasMask = mask;
  return t;
}

describe('layers: MultiHeadAttention vs tfjs-layers\' port of Keras (dist/layers/nlp), rel. 1e-5', () => {
  before(async () => {
    await tf.setBackend('cpu');
  });

  for (const c of PORT_CASES) {
    it(c.name, () => {
      const batch = 2;
      const seqK = c.seqK ?? c.seqQ;
      const query = tf.randomNormal([batch, c.seqQ, c.features]);
      const value = c.seqK == null ? query : tf.randomNormal([batch, seqK, c.kvFeatures ?? c.features]);
      const lengths = [seqK, Math.max(1, seqK - 3)];
      const valueMask = c.valueMask ?
          tf.tensor2d(lengths.flatMap((l) => Array.from({length: seqK}, (_, j) => j < l)), [batch, seqK], 'bool') :
          undefined;
      const queryMask = c.queryMask ?
          tf.tensor2d(Array.from({length: batch * c.seqQ}, (_, i) => i % c.seqQ !== 2), [batch, c.seqQ], 'bool') :
          undefined;
      // Row 1 of batch 0 sees nothing: Keras gives it the mean of the values (uniform softmax over -1e9 scores).
      const attentionMask = c.attentionMask ? tf.tensor3d(
          Array.from({length: batch * c.seqQ * seqK}, (_, n) => {
            const i = Math.floor(n / seqK) % c.seqQ, j = n % seqK;
            return !(n < c.seqQ * seqK && i === 1) && (i + 2 * j) % 3 !== 0;
          }), [batch, c.seqQ, seqK], 'bool') : undefined;

      const ours = layers.multiHeadAttention(c.args as layers.MultiHeadAttentionArgs);
      const port = withPortClasses(() => new KerasPort(c.args as ConstructorParameters<typeof KerasPort>[0]));
      const q1 = withMask(query.clone(), queryMask);
      const v1 = c.seqK == null ? q1 : withMask(value.clone(), valueMask);
      if (c.seqK == null && valueMask != null) (q1 as unknown as {kerasMask: tf.Tensor}).kerasMask = valueMask;
      const [refOut, refScores] = withPortClasses(() => port.callAndReturnAttentionScores(q1, {
        value: v1, attentionMask, useCausalMask: c.useCausalMask ?? false,
      }));
      ours.apply(query, {value});
      const sublayers = port as unknown as Record<string, tfl.layers.Layer>;
      ours.setWeights(['queryDense', 'keyDense', 'valueDense', 'outputDense'].flatMap((n) => sublayers[n].getWeights()));
      const q2 = withMask(query.clone(), c.seqK == null ? (valueMask ?? queryMask) : queryMask);
      const v2 = c.seqK == null ? q2 : withMask(value.clone(), valueMask);
      const [out, scores] = ours.apply(q2, {
        value: v2, attentionMask, useCausalMask: c.useCausalMask, returnAttentionScores: true,
      }) as tf.Tensor[];
      expect(relError(out, refOut)).to.be.at.most(TOL);
      expect(relError(scores, refScores)).to.be.at.most(TOL);
      // Without returnAttentionScores (the kernel path where it applies), the same output.
      const plain = ours.apply(q2, {value: v2, attentionMask, useCausalMask: c.useCausalMask}) as tf.Tensor;
      expect(relError(plain, refOut)).to.be.at.most(TOL);
    });
  }

  it('masks from tf.layers.embedding({maskZero}) flow into the layer in a functional model', () => {
    const ids = tfl.input({shape: [6]});
    const embedded = tfl.layers.embedding({inputDim: 10, outputDim: 8, maskZero: true}).apply(ids) as tfl.SymbolicTensor;
    const mha = layers.multiHeadAttention({numHeads: 2, keyDim: 4});
    const model = tfl.model({inputs: ids, outputs: mha.apply(embedded, {value: embedded}) as tfl.SymbolicTensor});
    const tokens = tf.tensor2d([[3, 4, 5, 6, 0, 0], [7, 1, 0, 0, 0, 0]]);
    const out = model.predict(tokens) as tf.Tensor;
    // Padding (token 0) keys must not matter: change the embedding row of token 0 and compare unpadded rows.
    const embeddingLayer = model.layers[1];
    const table = embeddingLayer.getWeights()[0];
    embeddingLayer.setWeights([tf.concat([tf.randomNormal([1, 8]), tf.slice(table, [1, 0], [9, 8])])]);
    const out2 = model.predict(tokens) as tf.Tensor;
    expect(relError(tf.slice(out2, [0, 0, 0], [1, 4, 8]), tf.slice(out, [0, 0, 0], [1, 4, 8]))).to.be.at.most(TOL);
    expect(relError(tf.slice(out2, [1, 0, 0], [1, 2, 8]), tf.slice(out, [1, 0, 0], [1, 2, 8]))).to.be.at.most(TOL);
  });
});

// ---- Keras-format fixtures ----

const fixtureDir = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'keras');

async function loadFixture(file: string): Promise<{model: tfl.LayersModel; weights: Record<string, Float64Array>;
                                                   shapes: Record<string, number[]>}> {
  const json = JSON.parse(readFileSync(join(fixtureDir, `${file}.json`), 'utf8'));
  const manifest = json.weightsManifest[0];
  const bin = readFileSync(join(fixtureDir, manifest.paths[0]));
  const floats = new Float32Array(bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength));
  const weights: Record<string, Float64Array> = {};
  const shapes: Record<string, number[]> = {};
  let offset = 0;
  for (const w of manifest.weights) {
    const size = w.shape.reduce((a: number, b: number) => a * b, 1);
    weights[w.name.slice(w.name.indexOf('/') + 1)] = Float64Array.from(floats.subarray(offset, offset + size));
    shapes[w.name.slice(w.name.indexOf('/') + 1)] = w.shape;
    offset += size;
  }
  const model = await tfl.loadLayersModel(tf.io.fromMemory({
    modelTopology: json.modelTopology, weightSpecs: manifest.weights, weightData: floats.buffer as ArrayBuffer,
  }));
  return {model, weights, shapes};
}

/**
 * Keras's MultiHeadAttention in float64: einsum projections, scores / sqrt(keyDim), masked scores += -1e9 rounded
 * to float32 as Keras's float32 add does (so a row that sees nothing is uniform), softmax, probabilities · v, output projection. visible(b, i, j).
 */
function kerasReference(w: Record<string, Float64Array>, s: Record<string, number[]>, query: Float64Array,
                        value: Float64Array, batch: number, seqQ: number, seqK: number,
                        visible: (b: number, i: number, j: number) => boolean): Float64Array {
  const [qF, heads, keyDim] = s['query/kernel'];
  const kvF = s['key/kernel'][0];
  const valueDim = s['value/kernel'][2];
  const out = s['attention_output/kernel'][2];
  const proj = (x: Float64Array, rows: number, feat: number, name: string, dim: number) => {
    const k = w[`${name}/kernel`], bias = w[`${name}/bias`];
    const y = new Float64Array(batch * rows * heads * dim);
    for (let r = 0; r < batch * rows; r++) {
      for (let h = 0; h < heads; h++) {
        for (let d = 0; d < dim; d++) {
          let acc = bias ? bias[h * dim + d] : 0;
          for (let f = 0; f < feat; f++) acc += x[r * feat + f] * k[(f * heads + h) * dim + d];
          y[(r * heads + h) * dim + d] = acc;
        }
      }
    }
    return y;
  };
  const q = proj(query, seqQ, qF, 'query', keyDim);
  const k = proj(value, seqK, kvF, 'key', keyDim);
  const v = proj(value, seqK, kvF, 'value', valueDim);
  const result = new Float64Array(batch * seqQ * out);
  for (let b = 0; b < batch; b++) {
    for (let i = 0; i < seqQ; i++) {
      const o = new Float64Array(heads * valueDim);
      for (let h = 0; h < heads; h++) {
        const scores = new Float64Array(seqK);
        for (let j = 0; j < seqK; j++) {
          let dot = 0;
          for (let d = 0; d < keyDim; d++) {
            dot += q[((b * seqQ + i) * heads + h) * keyDim + d] * k[((b * seqK + j) * heads + h) * keyDim + d];
          }
          // Keras adds -1e9 to masked float32 scores: the sum rounds to float32 (ulp 64 near 1e9), so a row that sees
          // no key is uniform (for |score| < 32, as here), not softmax(scores) as float64 would keep it.
          const score = Math.fround(dot / Math.sqrt(keyDim));
          scores[j] = visible(b, i, j) ? score : Math.fround(score - 1e9);
        }
        const max = Math.max(...scores);
        const e = scores.map((x) => Math.exp(x - max));
        const sum = e.reduce((a, x) => a + x, 0);
        for (let j = 0; j < seqK; j++) {
          for (let d = 0; d < valueDim; d++) o[h * valueDim + d] += e[j] / sum * v[((b * seqK + j) * heads + h) * valueDim + d];
        }
      }
      for (let u = 0; u < out; u++) {
        let acc = w['attention_output/bias'] ? w['attention_output/bias'][u] : 0;
        for (let hd = 0; hd < heads * valueDim; hd++) acc += o[hd] * w['attention_output/kernel'][hd * out + u];
        result[(b * seqQ + i) * out + u] = acc;
      }
    }
  }
  return result;
}

const relErrorArrays = (a: Float32Array | Float64Array, b: Float64Array) => {
  let diff = 0, scale = 1e-3;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
};

describe('layers: Keras-format model.json fixtures (converter layout) vs float64 Keras math', () => {
  it('self-attention with use_causal_mask: true in the node kwargs', async () => {
    const {model, weights, shapes} = await loadFixture('mha_causal_self');
    const x = tf.randomNormal([2, 6, 8]);
    const y = model.predict(x) as tf.Tensor;
    const xs = Float64Array.from(await x.data());
    const ref = kerasReference(weights, shapes, xs, xs, 2, 6, 6, (_b, i, j) => j <= i);
    expect(relErrorArrays(await y.data() as Float32Array, ref)).to.be.at.most(TOL);
    // The symptom: changing the last token must not change position 0.
    const x2 = tf.concat([tf.slice(x, [0, 0, 0], [2, 5, 8]), tf.randomNormal([2, 1, 8])], 1);
    const y2 = model.predict(x2) as tf.Tensor;
    expect(relError(tf.slice(y2, [0, 0, 0], [2, 1, 8]), tf.slice(y, [0, 0, 0], [2, 1, 8]))).to.be.at.most(TOL);
  });

  it('cross-attention with value and attention_mask tensor references in the node kwargs; save → load', async () => {
    const {model, weights, shapes} = await loadFixture('mha_cross_attention_mask');
    const q = tf.randomNormal([2, 5, 6]), m = tf.randomNormal([2, 9, 10]);
    const maskValues = Array.from({length: 2 * 5 * 9}, (_, n) => (n * 7) % 5 !== 0 && !(n >= 9 && n < 18));
    const mask = tf.tensor3d(maskValues, [2, 5, 9], 'bool');
    const y = model.predict([q, m, mask]) as tf.Tensor;
    expect(y.shape).to.deep.equal([2, 5, 7]);
    const ref = kerasReference(weights, shapes, Float64Array.from(await q.data()), Float64Array.from(await m.data()),
                               2, 5, 9, (b, i, j) => maskValues[(b * 5 + i) * 9 + j]);
    expect(relErrorArrays(await y.data() as Float32Array, ref)).to.be.at.most(TOL);
    // model.save → tf.loadLayersModel keeps the call arguments.
    let artifacts: tf.io.ModelArtifacts | undefined;
    await model.save(tf.io.withSaveHandler(async (a) => {
      artifacts = a;
      return {modelArtifactsInfo: {dateSaved: new Date(), modelTopologyType: 'JSON'}};
    }));
    const loaded = await tfl.loadLayersModel(tf.io.fromMemory(
        {...artifacts!, modelTopology: JSON.parse(JSON.stringify(artifacts!.modelTopology))}));
    const again = loaded.predict([q, m, mask]) as tf.Tensor;
    expect(Array.from(await again.data())).to.deep.equal(Array.from(await y.data()));
  });

  it('a functional model with keras_hub layers trains (model.fit) and save → load predicts identically', async () => {
    const ids = tfl.input({shape: [8]});
    const tokens = tfl.layers.embedding({inputDim: 7, outputDim: 16, maskZero: true}).apply(ids) as tfl.SymbolicTensor;
    const positions = layers.positionEmbedding({sequenceLength: 8}).apply(tokens) as tfl.SymbolicTensor;
    let x = tfl.layers.add().apply([tokens, positions]) as tfl.SymbolicTensor;
    x = layers.transformerEncoder({intermediateDim: 32, numHeads: 2, dropout: 0.1}).apply(x) as tfl.SymbolicTensor;
    x = layers.transformerDecoder({intermediateDim: 32, numHeads: 2, normalizeFirst: true})
            .apply(x, {encoderSequence: x}) as tfl.SymbolicTensor;
    const model = tfl.model({inputs: ids, outputs: tfl.layers.dense({units: 7, activation: 'softmax'}).apply(x) as
                                                       tfl.SymbolicTensor});
    model.compile({optimizer: tf.train.adam(0.01), loss: 'categoricalCrossentropy'});
    const data = tf.tensor2d(Array.from({length: 32 * 8}, (_, i) => 1 + (i * 5) % 6), [32, 8]);
    const history = await model.fit(data, tf.oneHot(tf.cast(data, 'int32'), 7), {epochs: 8, batchSize: 8, verbose: 0});
    const losses = history.history.loss as number[];
    expect(losses[losses.length - 1]).to.be.below(losses[0]);
    let artifacts: tf.io.ModelArtifacts | undefined;
    await model.save(tf.io.withSaveHandler(async (a) => {
      artifacts = a;
      return {modelArtifactsInfo: {dateSaved: new Date(), modelTopologyType: 'JSON'}};
    }));
    const loaded = await tfl.loadLayersModel(tf.io.fromMemory(
        {...artifacts!, modelTopology: JSON.parse(JSON.stringify(artifacts!.modelTopology))}));
    const probe = tf.tensor2d([[1, 2, 3, 4, 5, 0, 0, 0], [6, 5, 4, 3, 2, 1, 2, 3]]);
    expect(Array.from(await (loaded.predict(probe) as tf.Tensor).data()))
        .to.deep.equal(Array.from(await (model.predict(probe) as tf.Tensor).data()));
  });
});
