import './setup_node.js';
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import * as lib from '../src/index.js';
import {checkCase} from './check_case.js';
import {describeBackendCases} from './shared_runner.js';


describeBackendCases('cpu', async (c, seed) => {
  await tf.setBackend('cpu');
  return checkCase(tf, lib, c, seed);
});
