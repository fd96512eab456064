/**
 * The tensor-core forward (kernels/webgpu/attention_forward_tc.ts) end to end on Dawn/lavapipe, with its
 * subgroup-matrix operations EMULATED by SIMT code (lavapipe has shader-f16, no subgroup matrices): packing, tile
 * indexing, masks and options, online softmax, P·V and the outputs run exactly as on a GPU with tensor cores; only the
 * MMA statements differ (bench/device/tc_check.ts runs the real ones). Every shared case, forward, in 'medium' and
 * 'high', against the float64 reference.
 *
 * Tolerances: TENSOR_CORE_TOLERANCES (test/tolerances.ts; max |error| / max |reference|, check_case.ts).
 */
import './setup_node.js';
import {expect} from 'chai';
import * as tf from '@tensorflow/tfjs-core';
import * as lib from '../src/index.js';
import '../kernels/webgpu/register_all_webgpu_kernels.js';
import {setDecodePathForTests} from '../kernels/webgpu/attention_decode.js';
import {setTensorCoreEmulationForTests} from '../kernels/webgpu/attention_forward_tc.js';
import {CASES, hasTag} from './cases.js';
import {checkCase} from './check_case.js';
import {TENSOR_CORE_TOLERANCES} from './tolerances.js';
import {registerTensorCoreBackend} from './tc_kernels.js';
import {setupWebGPU, WebGPUEnv, withGPUErrorCheck} from './webgpu_env.js';


let env: WebGPUEnv | null = null;
let device: GPUDevice;

describe('webgpu tensor-core forward (emulated MMAs)', function() {
  this.timeout(1_800_000);
  before(async function() {
    env = await setupWebGPU();
    if (env == null) this.skip();
    const adapter = (await navigator.gpu.requestAdapter())!;
    if (!adapter.features.has('shader-f16')) this.skip();
    device = await registerTensorCoreBackend('webgpu-tc', adapter);
    await tf.setBackend('webgpu-tc');
    setTensorCoreEmulationForTests(true);
    // Decode-shaped plans (few queries, many keys) take the decode path, not the tensor cores; off here so that every
    // case runs the tensor-core program.
    setDecodePathForTests('never');
  });
  after(() => {
    setTensorCoreEmulationForTests(false);
    setDecodePathForTests(null);
    tf.env().set(lib.PRECISION_FLAG, 'highest');
  });

  const cases = CASES.filter((c) => !hasTag(c, 'browser') && (process.env.WEBGPU_LONG === '1' || !hasTag(c, 'long')));
  for (const precision of ['medium', 'high'] as const) {
    for (const c of cases) {
      it(`${precision}: ${c.name}`, async () => {
        tf.env().set(lib.PRECISION_FLAG, precision);
        const r = await withGPUErrorCheck(device, () => checkCase(tf, lib, {...c, forwardOnly: true}, 1));
        const path = lib.lastAttentionPath();
        expect(path?.path, 'path').to.equal(precision === 'high' ? 'subgroup-matrix-f16x3' : 'subgroup-matrix-f16');
        expect(r.problems, 'problems').to.deep.equal([]);
        expect(r.leakedTensors, 'leaked tensors').to.equal(0);
        expect(r.errors.output, 'output').to.be.at.most(TENSOR_CORE_TOLERANCES[precision]);
        expect(r.errors.lse, 'lse').to.be.at.most(TENSOR_CORE_TOLERANCES[precision]);
      });
    }
  }
});
