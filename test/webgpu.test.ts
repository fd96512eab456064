/**
 * The webgpu backend in node: Dawn on the machine's Vulkan driver (lavapipe when there is no GPU, set up by
 * test/webgpu_env.ts). Runs the shared case table plus kernel-level checks of the dedicated webgpu kernels.
 * Tolerances: test/tolerances.ts's webgpu row (forward and gradients 1e-5, measured on this whole table), the same
 * row webgpu_grad.test.ts uses.
 */
import './setup_node.js';
import {expect} from 'chai';
import * as tf from '@tensorflow/tfjs-core';
import * as lib from '../src/index.js';
import '../kernels/webgpu/register_all_webgpu_kernels.js';
import {planForwardChunks} from '../kernels/webgpu/attention_forward.js';
import {setForwardConfigOverride} from '../kernels/webgpu/forward_tiles.js';
import {
  createOutput, MultiOutputProgram, runProgram, setLimitsOverrideForTests,
} from '../kernels/webgpu/program_runner.js';
import {checkCase, randomArray} from './check_case.js';
import {assertCaseResult, describeBackendCases} from './shared_runner.js';
import {TOLERANCES} from './tolerances.js';
import {setupWebGPU, WebGPUEnv, withGPUErrorCheck} from './webgpu_env.js';

let env: WebGPUEnv | null = null;

describe('webgpu', function() {
  // lavapipe compiles each new pipeline with LLVM and runs on the CPU: generous when the machine is shared.
  this.timeout(600000);
  before(async function() {
    env = await setupWebGPU();
    if (env == null) this.skip();
    console.log(`    adapter: ${env.adapterDescription}`);
  });

  describeBackendCases('webgpu', async (c, seed) => {
    await tf.setBackend('webgpu');
    return withGPUErrorCheck(env!.device, () => checkCase(tf, lib, c, seed));
  }, (c) => !(c.tags ?? []).includes('long') || process.env.WEBGPU_LONG === '1');

  describe('kernel', () => {
    const shape = (b: number, s: number, h: number, d: number) => [b, s, h, d];
    const rand = (s: number[], seed: number) => tf.tensor(randomArray(s.reduce((a, x) => a * x, 1), seed), s);

    it('runs dedicated kernels: no BatchMatMul/Softmax and no seqQ×seqK tensor', async () => {
      await withGPUErrorCheck(env!.device, async () => {
        const q = rand(shape(1, 96, 2, 32), 1), k = rand(shape(1, 80, 2, 32), 2), v = rand(shape(1, 80, 2, 32), 3);
        const profile = await tf.profile(() => {
          const o = lib.flashAttention(q, k, v, {causal: true});
          o.dispose();
        });
        const names = profile.kernelNames;
        expect(names).to.include('FlashAttention');
        expect(names.filter((n) => /BatchMatMul|Softmax/.test(n))).to.deep.equal([]);
        for (const kernel of profile.kernels) {
          for (const s of kernel.outputShapes) {
            if (s == null) continue;
            expect(s.reduce((a: number, x: number) => a * x, 1), kernel.name).to.be.below(96 * 80);
          }
        }
        tf.dispose([q, k, v]);
      });
    });

    it('is deterministic (bit-identical repeats) and leaks nothing', async () => {
      await withGPUErrorCheck(env!.device, async () => {
        const q = rand(shape(2, 150, 4, 64), 4), k = rand(shape(2, 150, 2, 64), 5), v = rand(shape(2, 150, 2, 64), 6);
        const run = async () => {
          const {output, lse} = lib.slidingWindowAttention(q, k, v, {windowSize: 40, returnLse: true});
          const r = [await output.data(), await lse.data()];
          tf.dispose([output, lse]);
          return r;
        };
        await run();  // warm up: the schedule buffer and pipeline are cached after this
        const tensors = tf.memory().numTensors;
        const dataIds = (env!.backend as unknown as {numDataIds(): number}).numDataIds();
        const [a, b] = [await run(), await run()];
        expect(tf.memory().numTensors).to.equal(tensors);
        expect((env!.backend as unknown as {numDataIds(): number}).numDataIds()).to.equal(dataIds);
        for (let i = 0; i < 2; i++) {
          expect(Buffer.from(a[i].buffer).equals(Buffer.from(b[i].buffer)), 'bit-identical').to.equal(true);
        }
        tf.dispose([q, k, v]);
      });
    });

    it('splits work that exceeds binding and dispatch limits (forced small limits) with identical results', async () => {
      // maxBytes: one batch of q (or, for the second case, even 64 query rows of it) no longer fits one binding:
      // forces batch and query-tile splits; 3 workgroups per dimension forces more dispatches.
      const cases = [
        {b: 3, sq: 200, sk: 70, h: 2, d: 40, causal: true, maxBytes: 64 * 1024},
        {b: 1, sq: 300, sk: 50, h: 3, d: 16, causal: false, maxBytes: 20000},
      ];
      for (const {b, sq, sk, h, d, causal, maxBytes} of cases) {
        await withGPUErrorCheck(env!.device, async () => {
          const q = rand(shape(b, sq, h, d), 7), k = rand(shape(b, sk, h, d), 8), v = rand(shape(b, sk, h, d), 9);
          const run = async () => {
            const {output, lse} = lib.flashAttention(q, k, v, {causal, returnLse: true});
            const r = [await output.data(), await lse.data()];
            tf.dispose([output, lse]);
            return r;
          };
          const expected = await run();
          const small = {maxStorageBufferBindingSize: maxBytes, maxComputeWorkgroupsPerDimension: 3};
          setLimitsOverrideForTests(small);
          try {
            const plan = lib.makePlan({kind: 'flash', batch: b, seqQ: sq, seqK: sk, heads: h, kvHeads: h, headDim: d,
              scale: 1, softcap: 0, windowLeft: -1, windowRight: causal ? 0 : -1, layout: null, hasKeyLengths: false});
            expect(planForwardChunks(plan, 64, small).length).to.be.greaterThan(b);
            const actual = await run();
            for (let i = 0; i < 2; i++) expect(Array.from(actual[i])).to.deep.equal(Array.from(expected[i]));
          } finally {
            setLimitsOverrideForTests(null);
          }
          tf.dispose([q, k, v]);
        });
      }
    });

    it('handles a head size that is not a multiple of 4 (scalar loads), GQA, causal, odd lengths', async () => {
      const c = {name: 'flash D18 GQA causal seqQ37 seqK45', op: 'flash' as const, batch: 2, seqQ: 37, seqK: 45,
                 heads: 4, kvHeads: 2, headDim: 18, causal: true, keyLengths: [45, 20]};
      const r = await withGPUErrorCheck(env!.device, () => checkCase(tf, lib, c, 4242));
      assertCaseResult(r, TOLERANCES.webgpu);
    });

    it('fails a test on a WebGPU validation error (the error-scope helper works)', async () => {
      const program: MultiOutputProgram = {
        outputNames: ['out'], outputTypes: ['f32'], variableNames: ['x'], variableTypes: ['f32'],
        uniformFields: [['n', 'i32']], shaderKey: 'test:validation',
        getUserCode: () => `@compute @workgroup_size(1) fn main() { out[0] = x[0] + f32(uniforms.n); }`,
      };
      const x = tf.ones([64]);
      const out = tf.engine().makeTensorFromTensorInfo(createOutput(env!.backend, [64]));
      let error: Error | null = null;
      try {
        await withGPUErrorCheck(env!.device, async () => {
          // Offset 4 breaks minStorageBufferOffsetAlignment: Dawn reports it asynchronously, without throwing.
          runProgram(env!.backend, program, {outputs: [out], inputs: [{tensor: x, byteOffset: 4, byteSize: 16}],
                                             uniforms: [1], dispatch: [1, 1, 1]});
          await out.data().catch(() => null);
        });
      } catch (e) {
        error = e as Error;
      }
      expect(error?.message).to.match(/WebGPU error/);
      tf.dispose([x, out]);
    });

    it('rejects with a clear Error when one batch of keys cannot fit a binding', async () => {
      const q = rand(shape(1, 64, 2, 16), 1), k = rand(shape(1, 64, 2, 16), 2), v = rand(shape(1, 64, 2, 16), 3);
      setLimitsOverrideForTests({maxStorageBufferBindingSize: 2048});
      try {
        expect(() => lib.flashAttention(q, k, v)).to.throw(/maxStorageBufferBindingSize/);
      } finally {
        setLimitsOverrideForTests(null);
      }
      tf.dispose([q, k, v]);
    });

    it('gives the same answer with every tile configuration', async () => {
      const q = rand(shape(1, 75, 2, 24), 11), k = rand(shape(1, 75, 2, 24), 12), v = rand(shape(1, 75, 2, 24), 13);
      const run = async () => {
        const o = lib.flashAttention(q, k, v, {causal: true});
        const r = await o.data();
        o.dispose();
        return r;
      };
      const reference = await run();
      for (const config of [{blockQ: 32, blockK: 32, rowsPerThread: 4, colsPerThread: 4, prefetch: true},
                            {blockQ: 32, blockK: 32, rowsPerThread: 2, colsPerThread: 4, prefetch: true},
                            {blockQ: 32, blockK: 16, rowsPerThread: 4, colsPerThread: 2},
                            {blockQ: 16, blockK: 8, rowsPerThread: 2, colsPerThread: 1},
                            {blockQ: 8, blockK: 8, rowsPerThread: 1, colsPerThread: 1}]) {
        setForwardConfigOverride(config);
        try {
          const actual = await withGPUErrorCheck(env!.device, run);
          let maxErr = 0;
          for (let i = 0; i < reference.length; i++) maxErr = Math.max(maxErr, Math.abs(actual[i] - reference[i]));
          expect(maxErr, JSON.stringify(config)).to.be.below(1e-5);
        } finally {
          setForwardConfigOverride(null);
        }
      }
      tf.dispose([q, k, v]);
    });
  });
});
