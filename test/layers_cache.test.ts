/**
 * The cached layers in node: (1) the shared checks of test/layers_cache_checks.ts (cached decoding == one full causal
 * pass, 1e-5) on cpu and on a cpu-based backend with only the composite kernels (attention and UpdateKVCache);
 * (2) MultiHeadAttention with a cache against tfjs-layers' own port of keras_hub's CachedMultiHeadAttention
 * (dist/layers/nlp/modeling, unexported) with the same weights, rel. 1e-5; (3) errors naming the argument.
 */
import './setup_node.js';
import {MathBackendCPU} from '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
// The port calls chained ops (x.add, cache.gather(...).squeeze()), which the public tfjs-core entry does not install.
import '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops.js';
import * as tfl from '@tensorflow/tfjs-layers';
import {expect} from 'chai';
import {createRequire} from 'node:module';
import * as lib from '../src/index.js';
import * as layers from '../src/layers/index.js';
import {CACHE_TOL, LAYER_CACHE_CHECKS} from './layers_cache_checks.js';

const COMPOSITE = 'cpu-layers-cache-composite';
tf.registerBackend(COMPOSITE, () => new MathBackendCPU(), -1);
for (const config of tf.getKernelsForBackend('cpu')) {
  if (!lib.ALL_KERNELS.includes(config.kernelName) && config.kernelName !== lib.UpdateKVCache) {
    tf.registerKernel({...config, backendName: COMPOSITE});
  }
}

for (const backend of ['cpu', COMPOSITE]) {
  describe(`layers with a KV cache on ${backend}`, () => {
    before(async () => {
      await tf.setBackend(backend);
    });
    for (const [name, check] of Object.entries(LAYER_CACHE_CHECKS)) it(name, () => check(tf, lib));
  });
}

// The port's modules are a second copy of tfjs-layers' classes: importing them registers that copy's classes in
// tfjs-core's one serialization map, which would then shadow the public bundle's (see test/layers_keras.test.ts).
// The map is restored after the import; the port gets its own classes back only while it is built and called. The
// import runs in a hook, not at load time: test/layers_keras.test.ts snapshots the classes its own (first) import of
// the port's modules registers, which a cached import made by this file first would not.
const registry = tf.serialization.SerializationMap.getMap().classNameMap;
type PortModule = typeof import('@tensorflow/tfjs-layers/dist/layers/nlp/modeling/cached_multihead_attention.js');
let portClasses: typeof registry = {};
let bundleClasses: typeof registry = {};
function loadPort(): PortModule['CachedMultiHeadAttention'] {
  bundleClasses = {...registry};
  const requireDist = createRequire(import.meta.url);
  const port = requireDist('@tensorflow/tfjs-layers/dist/layers/nlp/modeling/cached_multihead_attention.js') as
      PortModule;
  portClasses = {...registry};
  // When another test file loaded the port's modules first, their classes were registered (and removed) then: the
  // copy's initializers, regularizers and constraints (what the port deserializes by name) are added from the modules.
  for (const module of ['initializers', 'regularizers', 'constraints']) {
    for (const value of Object.values(requireDist(`@tensorflow/tfjs-layers/dist/${module}.js`) as object)) {
      const cls = value as {className?: unknown; fromConfig?: unknown};
      if (typeof value === 'function' && typeof cls.className === 'string') {
        portClasses[cls.className] = [value, cls.fromConfig] as (typeof registry)[string];
      }
    }
  }
  useClasses(bundleClasses);
  return port.CachedMultiHeadAttention;
}
const useClasses = (classes: typeof registry) => {
  for (const name of Object.keys(registry)) delete registry[name];
  Object.assign(registry, classes);
};
function withPortClasses<T>(run: () => T): T {
  useClasses(portClasses);
  try {
    return run();
  } finally {
    useClasses(bundleClasses);
  }
}

const relError = (a: tf.Tensor, b: tf.Tensor) => tf.tidy(() => {
  expect(a.shape).to.deep.equal(b.shape);
  return tf.max(tf.abs(tf.sub(a, b))).dataSync()[0] / Math.max(tf.max(tf.abs(b)).dataSync()[0], 1e-3);
});

/** keras_hub's compute_causal_mask(batch, capacity, seq, index): query i sees key j iff j <= index + i. */
function causalMask(batch: number, seq: number, capacity: number, index: number): tf.Tensor3D {
  return tf.tidy(() => tf.broadcastTo(tf.lessEqual(tf.reshape(tf.range(0, capacity, 1, 'int32'), [1, capacity]),
                                                   tf.reshape(tf.range(index, index + seq, 1, 'int32'), [seq, 1])),
                                      [batch, seq, capacity]) as tf.Tensor3D);
}

describe('layers: MultiHeadAttention with a cache vs tfjs-layers\' port of keras_hub\'s CachedMultiHeadAttention', () => {
  const [batch, features, heads, keyDim, capacity] = [2, 8, 2, 4, 9];
  let ours: layers.MultiHeadAttention;
  let port: InstanceType<PortModule['CachedMultiHeadAttention']>;

  before(async () => {
    await tf.setBackend('cpu');
    const KerasHubPort = loadPort();
    ours = layers.multiHeadAttention({numHeads: heads, keyDim});
    port = withPortClasses(() => new KerasHubPort({numHeads: heads, keyDim}));
    const x = tf.randomNormal([batch, 3, features]);
    withPortClasses(() => port.buildFromSignature(x.shape, x.shape));
    // Its dropout (rate 0, inference) returns its input, which tf.layers then clones through a Tensor class of the
    // second tfjs-core copy whose op handler is unset; the identity it computes is applied directly instead.
    (port as unknown as {dropoutLayer: {apply: (x: tf.Tensor) => tf.Tensor}}).dropoutLayer = {apply: (x) => x};
    withPortClasses(() => port.callAndReturnCache(x, {value: x}));  // builds the projections (their weights)
    ours.apply(x);
    const sublayers = port as unknown as Record<string, tfl.layers.Layer>;
    ours.setWeights(['queryDense', 'keyDense', 'valueDense', 'outputDense'].flatMap((n) => sublayers[n].getWeights()));
  });

  // keras_hub decodes with the decoder's causal mask (keys j <= index + i over the whole cache); ours takes
  // useCausalMask and builds the same visibility from queryOffsets and keyLengths on the kernels.
  for (const [seq, index] of [[3, 0], [1, 3], [1, 8], [2, 5]]) {
    it(`update mode: ${seq} new token(s) at cacheUpdateIndex ${index}`, () => {
      const cache = tf.randomNormal([batch, 2, capacity, heads, keyDim]);
      const x = tf.randomNormal([batch, seq, features]);
      const [refOut, refCache] = withPortClasses(() => port.callAndReturnCache(x, {
        value: x, cache, cacheUpdateIndex: index, attentionMask: causalMask(batch, seq, capacity, index),
      }));
      const [out, newCache] = ours.apply(x, {cache, cacheUpdateIndex: index, useCausalMask: true}) as tf.Tensor[];
      expect(relError(newCache, refCache)).to.be.at.most(CACHE_TOL);
      expect(relError(out, refOut)).to.be.at.most(CACHE_TOL);
      // keyLengths hide the rows after index + seq even without a causal mask (keras_hub would need a mask there).
      const [open] = ours.apply(x, {cache, cacheUpdateIndex: index}) as tf.Tensor[];
      const keysWritten = tf.broadcastTo(tf.less(tf.range(0, capacity, 1, 'int32'), index + seq),
                                         [batch, seq, capacity]);
      const [refOpen] = withPortClasses(() => port.callAndReturnCache(x, {
        value: x, cache, cacheUpdateIndex: index, attentionMask: keysWritten,
      }));
      expect(relError(open, refOpen)).to.be.at.most(CACHE_TOL);
    });
  }

  it('static mode (no cacheUpdateIndex): the cache is used as is, with an attentionMask', () => {
    const cache = tf.randomNormal([batch, 2, capacity, heads, keyDim]);
    const x = tf.randomNormal([batch, 2, features]);
    const mask = tf.tensor3d(Array.from({length: batch * 2 * capacity}, (_, n) => n % 3 !== 1), [batch, 2, capacity],
                             'bool');
    const [refOut, refCache] = withPortClasses(() => port.callAndReturnCache(x, {value: x, cache, attentionMask: mask}));
    const [out, same] = ours.apply(x, {value: x, cache, attentionMask: mask}) as tf.Tensor[];
    expect(relError(out, refOut)).to.be.at.most(CACHE_TOL);
    expect(relError(same, refCache)).to.equal(0);
  });
});

describe('layers: cache arguments are checked', () => {
  before(async () => {
    await tf.setBackend('cpu');
  });
  const x = () => tf.zeros([2, 1, 8]);
  const mha = (args: Partial<layers.MultiHeadAttentionArgs> = {}) => {
    const layer = layers.multiHeadAttention({numHeads: 2, keyDim: 4, ...args});
    layer.apply(tf.zeros([2, 3, 8]));
    return layer;
  };

  it('MultiHeadAttention', () => {
    const layer = mha();
    const cache = tf.zeros([2, 2, 5, 2, 4]);
    expect(() => layer.apply(x(), {cacheUpdateIndex: 0})).to.throw(/cacheUpdateIndex should not be set if cache/);
    expect(() => layer.apply(x(), {cache: tf.zeros([2, 2, 5, 1, 4]), cacheUpdateIndex: 0}))
        .to.throw(/cache must be a float32 tensor \[batch=2, 2, capacity, kvHeads=2, headDim=4\]/);
    expect(() => layer.apply(x(), {cache, cacheUpdateIndex: 5})).to.throw(/cacheUpdateIndex must be an integer in \[0, capacity − seq = 4\]/);
    expect(() => layer.apply(x(), {cache, cacheUpdateIndex: 1.5})).to.throw(/cacheUpdateIndex must be an integer/);
    expect(() => layer.apply(x(), {cache, cacheUpdateIndex: tf.tensor1d([1, 2, 3], 'int32')}))
        .to.throw(/cacheUpdateIndex must be a number, a scalar tensor or a tensor \[batch=2\]/);
    expect(() => layer.apply(x(), {cache, cacheUpdateIndex: 0, returnAttentionScores: true}))
        .to.throw(/returnAttentionScores is not supported with a cache/);
    expect(() => layer.apply(x(), {cache, cacheUpdateIndex: 0, keyLengths: [1, 1]})).to.throw(/keyLengths cannot/);
    expect(() => mha({valueDim: 6}).apply(x(), {cache, cacheUpdateIndex: 0})).to.throw(/keyDim == valueDim/);
    const sparse = mha({attention: {type: 'sparse', pattern: {name: 'local', blockSize: 1, windowBlocks: 1}}});
    expect(() => sparse.apply(x(), {cache, cacheUpdateIndex: 0})).to.throw(/does not support the sparse attention/);
    const symbolic = tfl.input({shape: [1, 8]});
    expect(() => layer.apply(symbolic, {cache, cacheUpdateIndex: 0})).to.throw(/eager calls/);
    expect(() => layers.multiHeadAttention({numHeads: 2, keyDim: 3, rotary: true})).to.throw(/rotary needs an even/);
    expect(() => layers.multiHeadAttention({numHeads: 2, keyDim: 4, rotary: {maxWavelength: -1}}))
        .to.throw(/rotary.maxWavelength must be a finite number > 0/);
  });

  it('TransformerDecoder', () => {
    const layer = layers.transformerDecoder({intermediateDim: 8, numHeads: 2});
    layer.apply(tf.zeros([2, 3, 8]));
    const cache = tf.zeros([2, 2, 5, 2, 4]);
    expect(() => layer.apply(x(), {selfAttentionCacheUpdateIndex: 0} as never))
        .to.throw(/selfAttentionCacheUpdateIndex should not be set if selfAttentionCache/);
    expect(() => layer.apply(x(), {selfAttentionCache: tf.zeros([2, 2, 5, 2, 3]), selfAttentionCacheUpdateIndex: 0} as
                             never)).to.throw(/selfAttentionCache must be a float32 tensor/);
    expect(() => layer.apply(x(), {
      selfAttentionCache: cache, selfAttentionCacheUpdateIndex: 0, decoderPaddingMask: tf.ones([2, 1]),
    } as never)).to.throw(/cannot be given with selfAttentionCache/);
    expect(() => layer.apply(tfl.input({shape: [1, 8]}), {selfAttentionCache: cache} as never)).to.throw(/eager calls/);
  });

  it('getConfig round-trips the rotary option', () => {
    const layer = layers.multiHeadAttention({numHeads: 2, keyDim: 4, rotary: {maxWavelength: 500}});
    const config = layer.getConfig();
    expect(config.rotary).to.deep.equal({maxWavelength: 500, scalingFactor: 1});
    const again = layers.MultiHeadAttention.fromConfig(layers.MultiHeadAttention, config) as layers.MultiHeadAttention;
    expect(again.rotary).to.deep.equal({maxWavelength: 500, scalingFactor: 1});
  });
});
