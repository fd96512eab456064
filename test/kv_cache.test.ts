/**
 * updateKVCache, rotaryEmbedding and decoding with a KV cache (test/generation_checks.ts) on the cpu backend (its
 * dedicated UpdateKVCache kernel) and on a cpu-based backend without one (the composite kernel, registered on first
 * use as the attention kernels are).
 */
import './setup_node.js';
import {MathBackendCPU} from '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import {expect} from 'chai';
import {updateKVCacheConfig as compositeConfig} from '../kernels/composite/UpdateKVCache.js';
import * as lib from '../src/index.js';
import {GENERATION_CHECKS} from './generation_checks.js';


const COMPOSITE = 'cpu-kv-composite';
tf.registerBackend(COMPOSITE, () => new MathBackendCPU(), -1);
for (const config of tf.getKernelsForBackend('cpu')) {
  if (config.kernelName !== lib.UpdateKVCache) tf.registerKernel({...config, backendName: COMPOSITE});
}

for (const backend of ['cpu', COMPOSITE]) {
  describe(`generation pieces on ${backend}`, () => {
    before(async () => {
      await tf.setBackend(backend);
    });
    if (backend === COMPOSITE) {
      it('registers the composite UpdateKVCache kernel on first use', () => {
        expect(tf.getKernel(lib.UpdateKVCache, COMPOSITE)).to.equal(undefined);
        const c = tf.zeros([1, 3, 1, 2]), u = tf.ones([1, 1, 1, 2]);
        tf.dispose([lib.updateKVCache(c, u, 1), c, u]);
        expect(tf.getKernel(lib.UpdateKVCache, COMPOSITE)?.kernelFunc).to.equal(compositeConfig.kernelFunc);
      });
    }
    for (const [name, check] of Object.entries(GENERATION_CHECKS)) it(name, () => check(tf, lib));
  });
}
