/**
 * The cached layers (test/layers_cache_checks.ts: cached decoding == one full causal pass) on webgpu in node (Dawn;
 * lavapipe without a GPU), inside GPU error scopes.
 */
import './setup_node.js';
import * as tf from '@tensorflow/tfjs-core';
import * as lib from '../src/index.js';
import {LAYER_CACHE_CHECKS} from './layers_cache_checks.js';
import {webgpuBackendOrSkip, WebGPUEnv, withGPUErrorCheck} from './webgpu_env.js';

let env: WebGPUEnv | null = null;

describe('layers with a KV cache on webgpu', function() {
  this.timeout(600000);
  before(async function() {
    env = await webgpuBackendOrSkip(this);
  });
  for (const [name, check] of Object.entries(LAYER_CACHE_CHECKS)) {
    it(name, () => withGPUErrorCheck(env!.device, () => check(tf, lib)));
  }
});
