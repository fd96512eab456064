/**
 * The shared table on the wasm backend, which has no dedicated attention kernels: the composite ones are registered
 * for it by name when the library is imported.
 */
import './setup_node.js';
import {setWasmPaths} from '@tensorflow/tfjs-backend-wasm';
import * as tf from '@tensorflow/tfjs-core';
import {expect} from 'chai';
import {createRequire} from 'module';
import path from 'path';
import {compositeKernelConfigs} from '../kernels/composite/register_all_composite_kernels.js';
import * as lib from '../src/index.js';
import {checkCase} from './check_case.js';
import {describeBackendCases} from './shared_runner.js';

const require = createRequire(import.meta.url);

// In node the wasm module reads its .wasm binary with fs: a plain directory path (with trailing slash) works.
const wasmPackage = require.resolve('@tensorflow/tfjs-backend-wasm/package.json');
setWasmPaths(path.join(path.dirname(wasmPackage), 'dist') + path.sep);

describe('wasm backend', () => {
  it('initializes and has the composite attention kernels', async () => {
    expect(await tf.setBackend('wasm')).to.equal(true);
    for (const name of lib.ALL_KERNELS) {
      const expected = compositeKernelConfigs.find((c) => c.kernelName === name)!.kernelFunc;
      expect(tf.getKernel(name, 'wasm')?.kernelFunc, name).to.equal(expected);
    }
  });
});

// Tolerance: test/tolerances.ts ('wasm').
describeBackendCases('wasm', async (c, seed) => {
  await tf.setBackend('wasm');
  return checkCase(tf, lib, c, seed);
});
