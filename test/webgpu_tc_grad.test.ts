/**
 * The tensor-core backward (precision 'medium': kernels/webgpu/flash_attention_grad_tc_webgpu.ts) end to end on
 * Dawn/lavapipe with its subgroup-matrix operations EMULATED by SIMT code, as test/webgpu_tc.test.ts runs the
 * tensor-core forward: every shared case (odd sizes, GQA/MQA, causal, windows, sparse layouts, keyLengths, masks,
 * bias, ALiBi, segments, query offsets, dropout), output, lse, dq, dk, dv and dBias against the float64 reference at
 * the 'medium' gradient tolerance (TENSOR_CORE_TOLERANCES.mediumGradients, test/tolerances.ts), no leaks, the path
 * the backward reported, and bit-identical gradients run to run.
 */
import './setup_node.js';
import {expect} from 'chai';
import * as tf from '@tensorflow/tfjs-core';
import * as lib from '../src/index.js';
import '../kernels/webgpu/register_all_webgpu_kernels.js';
import {setDecodePathForTests} from '../kernels/webgpu/attention_decode.js';
import {setTensorCoreEmulationForTests} from '../kernels/webgpu/attention_forward_tc.js';
import {CASES, hasTag} from './cases.js';
import {checkCase, randomArray} from './check_case.js';
import {caseSeed} from './shared_runner.js';
import {TENSOR_CORE_TOLERANCES} from './tolerances.js';
import {registerTensorCoreBackend} from './tc_kernels.js';
import {setupWebGPU, WebGPUEnv, withGPUErrorCheck} from './webgpu_env.js';

let env: WebGPUEnv | null = null;
let device: GPUDevice;

/** Cases beyond the 'quick' tag that the default run includes: one per option the quick set lacks. */
const TC_GRAD_EXTRA = [
  'flash D80 S33', 'sliding [0, 0] diagonal only', 'sliding GQA keyLengths softcap',
  'mask random int32 [B, Sq, Sk] + causal seqQ33 seqK70', 'bias [B, H, Sq, Sk] sparse bigBird',
  'ALiBi [B, heads] tensor + sliding w16 seqQ20 seqK77', 'dropout 0.1 causal + mask + bias, seed > 2^32',
  'bias [seqQ, seqK] seqQ1 seqK1 D8 (fuzz minimal case)', 'segments query/key differ seqQ20 seqK50',
];

describe('webgpu tensor-core backward (precision medium, emulated MMAs)', function() {
  this.timeout(1_800_000);
  before(async function() {
    env = await setupWebGPU();
    if (env == null) this.skip();
    const adapter = (await navigator.gpu.requestAdapter())!;
    if (!adapter.features.has('shader-f16')) this.skip();
    device = await registerTensorCoreBackend('webgpu-tc-grad', adapter);
    await tf.setBackend('webgpu-tc-grad');
    setTensorCoreEmulationForTests(true);
    // Decode-shaped plans take the decode path in the forward (and the fp32 backward); off so that every case runs
    // the tensor-core programs.
    setDecodePathForTests('never');
  });
  after(() => {
    setTensorCoreEmulationForTests(false);
    setDecodePathForTests(null);
  });

  const quick = process.env.WEBGPU_TC_GRAD_ALL == null;
  const cases = CASES.filter((c) => !hasTag(c, 'browser') && !c.forwardOnly &&
      (process.env.WEBGPU_LONG === '1' || !hasTag(c, 'long')));
  const worst: Record<string, number> = {};
  after(() => console.log(`    worst 'medium' errors: ${JSON.stringify(worst)}`));
  cases.forEach((c) => {
    const index = CASES.indexOf(c);
    (quick && !hasTag(c, 'quick') && !TC_GRAD_EXTRA.includes(c.name) ? it.skip : it)(c.name, async () => {
      const r = await withGPUErrorCheck(device, () => checkCase(tf, lib, {...c, precision: 'medium'}, caseSeed(index)));
      const context = `${c.name} (seed ${r.seed}): ${JSON.stringify(r.errors)}`;
      expect(lib.lastAttentionPath()?.path, `backward path ${context}`).to.equal('subgroup-matrix-f16');
      expect(r.problems, context).to.deep.equal([]);
      expect(r.leakedTensors, `leaked tensors ${context}`).to.equal(0);
      for (const [q, e] of Object.entries(r.errors)) worst[q] = Math.max(worst[q] ?? 0, e);
      expect(r.errors.output, `output ${context}`).to.be.at.most(TENSOR_CORE_TOLERANCES.medium);
      expect(r.errors.lse, `lse ${context}`).to.be.at.most(TENSOR_CORE_TOLERANCES.medium);
      for (const q of ['dq', 'dk', 'dv', 'dBias'] as const) {
        expect(r.errors[q], `${q} ${context}`).to.be.at.most(TENSOR_CORE_TOLERANCES.mediumGradients);
      }
    });
  });

  it('is deterministic: two runs give bit-identical dq, dk, dv', async () => {
    const shape = [1, 70, 4, 32], kvShape = [1, 70, 2, 32];
    const grads = async () => {
      tf.env().set(lib.PRECISION_FLAG, 'medium');
      const q = tf.tensor(randomArray(70 * 4 * 32, 1), shape), k = tf.tensor(randomArray(70 * 2 * 32, 2), kvShape);
      const v = tf.tensor(randomArray(70 * 2 * 32, 3), kvShape);
      const gs = tf.grads((a: tf.Tensor, b: tf.Tensor, cc: tf.Tensor) =>
          tf.sum(tf.square(lib.flashAttention(a, b, cc, {causal: true}) as tf.Tensor)))([q, k, v]);
      const data = await Promise.all(gs.map((g) => g.data()));
      expect(lib.lastAttentionPath()?.path).to.equal('subgroup-matrix-f16');
      [q, k, v, ...gs].forEach((t) => t.dispose());
      return data;
    };
    try {
      const first = await withGPUErrorCheck(device, grads);
      const second = await withGPUErrorCheck(device, grads);
      for (let i = 0; i < 3; i++) {
        expect(Buffer.from((second[i] as Float32Array).buffer).equals(Buffer.from((first[i] as Float32Array).buffer)),
               `gradient ${i}`).to.equal(true);
      }
    } finally {
      tf.env().set(lib.PRECISION_FLAG, 'highest');
    }
  });
});
