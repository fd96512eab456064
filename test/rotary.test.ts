/**
 * The RotaryEmbedding layer (keras_hub's class): config keys (camelCase in tfjs, snake_case in the Keras JSON), a
 * save/load round trip, call kwargs (startIndex, positions) and the same outputs as the rotaryEmbedding op. The op's
 * numerics (float64 formula, keras_hub's documented values) are in test/generation_checks.ts, on every backend.
 */
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import * as tfl from '@tensorflow/tfjs-layers';
import {expect} from 'chai';
import {RotaryEmbedding, rotaryEmbedding} from '../src/index.js';
import {randomArray} from './check_case.js';

describe('RotaryEmbedding layer', () => {
  before(async () => {
    await tf.setBackend('cpu');
  });

  it('has keras_hub\'s config keys and defaults, snake_case in the model JSON', () => {
    const layer = new RotaryEmbedding({maxWavelength: 500, scalingFactor: 2, name: 'rope'});
    expect(layer.getClassName()).to.equal('RotaryEmbedding');
    const config = layer.getConfig();
    expect(config).to.include({maxWavelength: 500, scalingFactor: 2, sequenceAxis: 1, featureAxis: -1});
    const input = tfl.input({shape: [5, 8]});
    const model = tfl.model({inputs: input, outputs: layer.apply(input) as tfl.SymbolicTensor});
    const json = JSON.stringify(model.toJSON(null, false));
    for (const key of ['"max_wavelength":500', '"scaling_factor":2', '"sequence_axis":1', '"feature_axis":-1',
                       '"class_name":"RotaryEmbedding"']) {
      expect(json).to.include(key);
    }
    model.dispose();
  });

  it('survives a save/load round trip (tf.serialization) with the same outputs', async () => {
    const input = tfl.input({shape: [3, 2, 6]});
    const layer = new RotaryEmbedding({maxWavelength: 1000, scalingFactor: 3});
    const model = tfl.model({inputs: input, outputs: layer.apply(input) as tfl.SymbolicTensor});
    let saved: tf.io.ModelArtifacts | null = null;
    await model.save(tf.io.withSaveHandler(async (artifacts) => {
      saved = artifacts;
      return {modelArtifactsInfo: {dateSaved: new Date(), modelTopologyType: 'JSON'}};
    }));
    const loaded = await tfl.loadLayersModel(tf.io.fromMemory(saved!));
    const x = tf.tensor(randomArray(2 * 3 * 2 * 6, 3), [2, 3, 2, 6]);
    const a = model.predict(x) as tf.Tensor, b = loaded.predict(x) as tf.Tensor;
    const c = rotaryEmbedding(x, {maxWavelength: 1000, scalingFactor: 3});
    expect(Array.from(await b.data())).to.deep.equal(Array.from(await a.data()));
    expect(Array.from(await c.data())).to.deep.equal(Array.from(await a.data()));
    const restored = loaded.layers[1] as RotaryEmbedding;
    expect([restored.maxWavelength, restored.scalingFactor, restored.sequenceAxis, restored.featureAxis])
        .to.deep.equal([1000, 3, 1, -1]);
    tf.dispose([x, a, b, c]);
    model.dispose();
    loaded.dispose();
  });

  it('takes keras_hub\'s call arguments as kwargs: startIndex and positions', async () => {
    const layer = new RotaryEmbedding();
    const x = tf.tensor(randomArray(1 * 2 * 1 * 4, 4), [1, 2, 1, 4]);
    const byStart = layer.apply(x, {startIndex: 7}) as tf.Tensor;
    const byPositions = layer.apply(x, {positions: tf.tensor1d([7, 8])}) as tf.Tensor;
    const op = rotaryEmbedding(x, {startIndex: 7});
    expect(Array.from(await byStart.data())).to.deep.equal(Array.from(await op.data()));
    const diff = tf.max(tf.abs(tf.sub(byPositions, op)));
    expect((await diff.data())[0]).to.be.below(1e-6);
    tf.dispose([x, byStart, byPositions, op, diff]);
  });

  it('rejects a bad config with an error naming the key', () => {
    expect(() => new RotaryEmbedding({maxWavelength: -1})).to.throw(/maxWavelength must be a finite number > 0/);
    expect(() => new RotaryEmbedding({sequenceAxis: 1.5})).to.throw(/sequenceAxis must be an integer/);
  });
});
