/**
 * updateKVCache (the dedicated webgpu kernel: vec4 and scalar variants), rotaryEmbedding and decoding with a KV cache
 * (test/generation_checks.ts) on webgpu in node (Dawn; lavapipe without a GPU), inside GPU error scopes.
 */
import './setup_node.js';
import * as tf from '@tensorflow/tfjs-core';
import {expect} from 'chai';
import * as lib from '../src/index.js';
import {GENERATION_CHECKS} from './generation_checks.js';
import {webgpuBackendOrSkip, WebGPUEnv, withGPUErrorCheck} from './webgpu_env.js';

let env: WebGPUEnv | null = null;

describe('generation pieces on webgpu', function() {
  this.timeout(600000);
  before(async function() {
    env = await webgpuBackendOrSkip(this);
  });

  it('runs the dedicated UpdateKVCache kernel (one kernel, no composite ops)', async () => {
    await withGPUErrorCheck(env!.device, async () => {
      const cache = tf.zeros([2, 8, 2, 4]), update = tf.ones([2, 1, 2, 4]);
      const profile = await tf.profile(async () => {
        const out = lib.updateKVCache(cache, update, [3, 7]);
        await out.data();
        out.dispose();
      });
      expect(profile.kernelNames).to.deep.equal(['UpdateKVCache']);
      tf.dispose([cache, update]);
    });
  });

  for (const [name, check] of Object.entries(GENERATION_CHECKS)) {
    it(name, () => withGPUErrorCheck(env!.device, () => check(tf, lib)));
  }
});
