import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import * as lib from '../src/index.js';
import {checkCase} from './check_case.js';
import {describeSharedCases} from './shared_runner.js';

describeSharedCases('cpu', {forward: 1e-5, gradients: 1e-5}, async (c, seed) => {
  await tf.setBackend('cpu');
  return checkCase(tf, lib, c, seed);
});
