import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import {createRequire} from 'node:module';
import * as lib from '../src/index.js';
import {checkCase} from './check_case.js';
import {describeSharedCases} from './shared_runner.js';

// checkCase differentiates through tf.sum/mul/add/where, whose gradients tfjs-core alone does not register.
// register_all_gradients imports directories, which node's ESM loader rejects; required, tsx's hook compiles it.
createRequire(import.meta.url)('@tensorflow/tfjs-core/dist/register_all_gradients');

describeSharedCases('cpu', {forward: 1e-5, gradients: 1e-5}, async (c, seed) => {
  await tf.setBackend('cpu');
  return checkCase(tf, lib, c, seed);
});
