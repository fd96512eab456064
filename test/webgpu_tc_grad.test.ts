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
import {TC_BACKWARD_FLAG} from '../kernels/webgpu/attention_backward.js';
import {CASES, hasTag} from './cases.js';
import {checkCase, randomArray} from './check_case.js';
import {caseSeed} from './shared_runner.js';
import {TENSOR_CORE_TOLERANCES} from './tolerances.js';
import type {OptionFlags} from '../kernels/webgpu/attention_options.js';
import {chooseTcGradTiles, TcGradTileProgram, tcGradWorkgroupBytes} from '../kernels/webgpu/flash_attention_grad_tc_webgpu.js';
import {programSource} from '../kernels/webgpu/program_runner.js';
import {checkMatrixCallsUnbranched, uninitialisedVars} from './tc_kernels.js';
import {emulatedTensorCoreBackendOrSkip, restoreTensorCoreSwitches} from './tc_env.js';
import {withGPUErrorCheck} from './webgpu_env.js';

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
    device = await emulatedTensorCoreBackendOrSkip(this, 'webgpu-tc-grad');
  });
  after(() => {
    restoreTensorCoreSwitches();
  });

  it('is opt-in on real subgroup matrices (ATTENTION_WEBGPU_TC_BACKWARD defaults to false)', () => {
    expect(TC_BACKWARD_FLAG).to.equal('ATTENTION_WEBGPU_TC_BACKWARD');
    expect(tf.env().getBool(TC_BACKWARD_FLAG)).to.equal(false);
  });

  // The emulated MMAs compile slowly on lavapipe: by default the 'quick' cases and TC_GRAD_EXTRA (one per option the
  // quick set lacks); WEBGPU_TC_GRAD_ALL=1 runs every shared case.
  const quick = process.env.WEBGPU_TC_GRAD_ALL == null;
  const cases = CASES.filter((c) => !hasTag(c, 'browser') && !c.forwardOnly &&
      (process.env.WEBGPU_LONG === '1' || !hasTag(c, 'long')) &&
      (!quick || hasTag(c, 'quick') || TC_GRAD_EXTRA.includes(c.name)));
  // The largest error of each quantity over the cases run, and its case (the numbers RELIABILITY.md quotes).
  const worst: Record<string, [number, string]> = {};
  after(() => console.log(`    worst 'medium' errors: ${Object.entries(worst).map(([q, [e, name]]) =>
      `${q} ${e.toExponential(1)} (${name})`).join(', ')}`));
  cases.forEach((c) => {
    const index = CASES.indexOf(c);
    it(c.name, async () => {
      const r = await withGPUErrorCheck(device, () => checkCase(tf, lib, {...c, precision: 'medium'}, caseSeed(index)));
      const context = `${c.name} (seed ${r.seed}): ${JSON.stringify(r.errors)}`;
      expect(lib.lastAttentionPath()?.path, `backward path ${context}`).to.equal('subgroup-matrix-f16');
      expect(r.problems, context).to.deep.equal([]);
      expect(r.leakedTensors, `leaked tensors ${context}`).to.equal(0);
      for (const [q, e] of Object.entries(r.errors)) if (e >= (worst[q]?.[0] ?? 0)) worst[q] = [e, c.name];
      expect(r.errors.output, `output ${context}`).to.be.at.most(TENSOR_CORE_TOLERANCES.medium);
      expect(r.errors.lse, `lse ${context}`).to.be.at.most(TENSOR_CORE_TOLERANCES.medium);
      for (const q of ['dq', 'dk', 'dv', 'dBias'] as const) {
        expect(r.errors[q], `${q} ${context}`).to.be.at.most(TENSOR_CORE_TOLERANCES.mediumGradients);
      }
    });
  });

  // The real (not emulated) WGSL cannot compile here (lavapipe has no subgroup matrices): its structure is checked, and
  // Dawn validates it (types, bindings, uniformity of the barriers) with every subgroup-matrix call replaced by a scalar
  // stand-in of the same arguments.
  const H100 = {maxComputeWorkgroupStorageSize: 49152, maxComputeInvocationsPerWorkgroup: 1024};
  const NO_OPTIONS: OptionFlags = {queryOffsets: false, mask: null, bias: false, alibi: false, segments: false,
                                   dropout: false};
  const optionSets: Array<OptionFlags | null> = [null, {...NO_OPTIONS, mask: 'f32', bias: true, alibi: true,
                                                          dropout: true, segments: true, queryOffsets: true}];
  const stubs = `
fn stubLoad(x: f32, colMajor: bool, stride: u32) -> f32 { return x + select(0.0, f32(stride), colMajor); }
fn stubMma(left: f32, right: f32, acc: f32) -> f32 { return left * right + acc; }
`;
  const stubbed = (code: string) => code
      .replace(/^diagnostic\(off, chromium.*\n/m, '').replace(/^enable chromium_experimental_subgroup_matrix;\n/m, '')
      .replace(/subgroupMatrixLoad<subgroup_matrix_\w+<f(16|32), 16, 16>>\(&(\w+), ([^,]+), (true|false), (\w+)\)/g,
               'stubLoad(f32($2[$3]), $4, $5)')
      .replace(/subgroupMatrixStore\(&(\w+), ([^,]+), (\w+), (true|false), (\w+)\)/g,
               '$1[$2 + select(0u, $5, $4)] = $3')
      .replace(/subgroup_matrix_(result|left)<f(16|32), 16, 16>\(\)/g, '0.0')
      .replace(/subgroupMatrixMultiplyAccumulate\(/g, 'stubMma(') + stubs;
  for (const headDim of [16, 40, 64, 128, 256]) {
    for (const subgroup of [32, 64]) {
      for (const opts of optionSets) {
        it(`real WGSL d${headDim} subgroups ≤ ${subgroup} ${opts == null ? 'plain' : 'every option'}: structure, ` +
           'Dawn validation (matrix calls stubbed)', async () => {
          const dropout = opts?.dropout ?? false;
          for (const [pass, directBias, dbias] of [['dkdv', false, false], ['dq', opts != null, false],
                                                   ['dq', false, true]] as const) {
            if (dbias && opts == null) continue;
            const tiles = chooseTcGradTiles(pass, headDim, H100, subgroup, dropout);
            expect(tiles, `${pass} tiles`).to.not.equal(null);
            expect(tcGradWorkgroupBytes(pass, tiles!, headDim, dropout)).to.be.at.most(H100.maxComputeWorkgroupStorageSize);
            // One subgroup per resident 16-row block at any subgroup size up to the maximum.
            expect(tiles!.threads % subgroup).to.equal(0);
            expect(tiles!.threads / subgroup).to.be.at.least(tiles!.resident / 16);
            const flags = {softcap: true, layout: true, keyLengths: true, vec4: false};
            const code = programSource(new TcGradTileProgram(pass, tiles!, headDim, flags, opts, directBias, false, dbias));
            for (const e of ['f16', 'subgroups', 'chromium_experimental_subgroup_matrix']) {
              expect(code).to.include(`enable ${e};`);
            }
            expect(uninitialisedVars(code), 'uninitialised vars').to.deep.equal([]);
            // Matrix calls only in loops over subgroups (and the workgroup-uniform tile loop's branches).
            const loops = checkMatrixCallsUnbranched(code, ['if (k0 < keyLen)', 'if (state > 0 && k0 < keyLen)']);
            expect(loops.length).to.be.greaterThan(0);
            for (const l of loops) expect(l).to.match(/for \(var (t|rb) = sg; \w+ < \w+; \w+ \+= numSg\) \{/);
            expect(code.replace(/\/\/.*$/gm, '')).to.not.match(/undefined|NaN|\[object/);
            const plain = stubbed(code);
            expect(plain).to.not.match(/subgroup_?[mM]atrix/);
            device.pushErrorScope('validation');
            const module = device.createShaderModule({code: plain});
            const errors = (await module.getCompilationInfo()).messages.filter((m) => m.type === 'error')
                .map((m) => `${m.lineNum}:${m.linePos} ${m.message}`);
            const err = await device.popErrorScope();
            if (err != null) errors.push(err.message);
            expect(errors, `${pass}${dbias ? ' dBias pass' : ''}`).to.deep.equal([]);
          }
        });
      }
    }
  }

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
