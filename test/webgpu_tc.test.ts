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
import {
  chooseFastTcTile, FastTileShape, setTensorCoreKernelForTests,
} from '../kernels/webgpu/attention_forward_tc.js';
import {EMULATED_SUBGROUP, tcWorkgroupBytes} from '../kernels/webgpu/flash_attention_tc_webgpu.js';
import {getLimits} from '../kernels/webgpu/program_runner.js';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {CASES, hasTag} from './cases.js';
import {checkCase, randomArray} from './check_case.js';
import {referenceForward} from './reference.js';

/**
 * The staged kernel's variants: two row blocks per subgroup, two K / V buffers, both — at 64×32, which fits
 * lavapipe's 32 KiB of workgroup memory with both (the H100's 128×32 would not: 35 KiB at headDim 16).
 */
const STAGED_VARIANTS: FastTileShape[] = [
  {blockQ: 64, blockK: 32, rowBlocks: 2}, {blockQ: 64, blockK: 32, kvBuffers: 2},
  {blockQ: 64, blockK: 32, rowBlocks: 2, kvBuffers: 2},
];
import {TENSOR_CORE_TOLERANCES} from './tolerances.js';
import {emulatedTensorCoreBackendOrSkip, restoreTensorCoreSwitches} from './tc_env.js';
import {LOAD_SOURCES, loadProbeSource} from '../bench/device/tc_load_probe.js';
import {withGPUErrorCheck} from './webgpu_env.js';


let device: GPUDevice;

describe('webgpu tensor-core forward (emulated MMAs)', function() {
  this.timeout(1_800_000);
  before(async function() {
    device = await emulatedTensorCoreBackendOrSkip(this, 'webgpu-tc');
  });
  after(() => {
    restoreTensorCoreSwitches();
    tf.env().set(lib.PRECISION_FLAG, 'highest');
  });

  // The register kernel's lazy rescale (TAU = 8 log2 units): head 0's keys ramp up, so its row maxima grow by ~4.6
  // log2 units per 32-key tile (O rescaled every other tile); head 1's ramp down (never after its first tile). Also
  // the memory kernel, and small tiles so that several subgroups and query tiles take part. The staged variant (K / V
  // through workgroup memory, prefetched a tile ahead) at its default tile, 64×64 and 32×32; in 'high' (TAU 4: O
  // rescaled more often) at its default tile (64×32 here), 64×16 and 32×16. A staged tile that does not fit the
  // device's workgroup memory (lavapipe: 32 KiB, so 64×64 and 128×16 — H100 defaults at other head sizes) must be
  // refused by the tile choice (never run silently on another kernel): that is what such a test checks here.
  for (const [precision, kernel, tile] of [
    ['medium', 'registers', null], ['medium', 'registers', {blockQ: 32, blockK: 32}], ['medium', 'memory', null],
    ['medium', 'staged', null], ['medium', 'staged', {blockQ: 64, blockK: 64}],
    ['medium', 'staged', {blockQ: 32, blockK: 32}], ['high', 'staged', null], ['high', 'staged', {blockQ: 64, blockK: 16}],
    ['high', 'staged', {blockQ: 32, blockK: 16}],
    ...STAGED_VARIANTS.map((v) => ['medium', 'staged', v] as const),
  ] as const) {
    for (const causal of [false, true]) {
      it(`${precision} ${kernel} ${JSON.stringify(tile)}${causal ? ' causal' : ''}: growing scores (lazy rescale)${
          kernel === 'staged' && tile != null ? ', or refused where the tile does not fit' : ''}`, async function() {
        const [S, H, D] = [200, 2, 16];
        if (kernel === 'staged') {
          setTensorCoreKernelForTests(kernel, tile);
          const limits = getLimits(tf.backend() as unknown as WebGPUBackend);
          const fits = chooseFastTcTile(D, limits, EMULATED_SUBGROUP, true, precision) != null;
          setTensorCoreKernelForTests(null);
          if (!fits) {
            // Refused because it needs more workgroup memory than the device has (lavapipe: 32 KiB), nothing else.
            const t = tile as FastTileShape;
            const threads = Math.max((t.blockQ / (16 * (t.rowBlocks ?? 1))) * EMULATED_SUBGROUP, t.blockQ);
            expect(tcWorkgroupBytes({...t, threads}, D, precision, true, true), JSON.stringify(tile))
                .to.be.above(limits.maxComputeWorkgroupStorageSize);
            return;
          }
        }
        const noise = randomArray(2 * S * H * D, 5), va = randomArray(S * H * D, 6);
        const qa = new Float32Array(S * H * D), ka = new Float32Array(S * H * D);
        for (let j = 0; j < S; j++) {
          for (let h = 0; h < H; h++) {
            for (let d = 0; d < D; d++) {
              const at = (j * H + h) * D + d;
              qa[at] = 0.5 + 0.3 * noise[at];
              ka[at] = 0.05 * (h === 0 ? j : S - j) + 0.1 * noise[S * H * D + at];
            }
          }
        }
        setTensorCoreKernelForTests(kernel, tile);
        tf.env().set(lib.PRECISION_FLAG, precision);
        try {
          const [q, k, v] = [qa, ka, va].map((a) => tf.tensor4d(a, [1, S, H, D]));
          const r = lib.flashAttention(q, k, v, {causal, returnLse: true});
          const [out, lse] = await Promise.all([r.output.data(), r.lse.data()]);
          tf.dispose([q, k, v, r.output, r.lse]);
          const ref = referenceForward({batch: 1, seqQ: S, seqK: S, heads: H, kvHeads: H, headDim: D, scale: 1 / 4,
                                        softcap: 0, causal, window: null, layout: null,
                                        keyLengths: null}, qa, ka, va);
          const rel = (a: ArrayLike<number>, b: Float64Array) => {
            let err = 0, max = 1e-3;
            for (let e = 0; e < b.length; e++) {
              err = Math.max(err, Math.abs(a[e] - b[e]));
              max = Math.max(max, Math.abs(b[e]));
            }
            return err / max;
          };
          expect(lib.lastAttentionPath()?.path).to.equal(
              precision === 'high' ? 'subgroup-matrix-f16x3' : 'subgroup-matrix-f16');
          expect(rel(out, ref.output), 'output').to.be.at.most(TENSOR_CORE_TOLERANCES[precision]);
          expect(rel(lse, ref.lse), 'lse').to.be.at.most(TENSOR_CORE_TOLERANCES[precision]);
        } finally {
          setTensorCoreKernelForTests(null);
        }
      });
    }
  }

  // bench/device/tc_load_probe.ts cannot compile here (no subgroup matrices): its WGSL with every subgroup-matrix call
  // replaced by a scalar stand-in of the same argument types, so that everything else (bindings, builtins, offsets,
  // strides, colMajor flags) is validated by Dawn.
  it('the LOAD probe WGSL validates with its subgroup-matrix calls stubbed', async () => {
    const stubs = `
fn stubLoadS(offset: u32, colMajor: bool, stride: u32) -> f32 { return f32(src[offset + select(0u, stride, colMajor)]); }
fn stubLoadW(offset: u32, colMajor: bool, stride: u32) -> f32 {
  return f32(tileW[offset + select(0u, stride, colMajor)]);
}
fn stubMma(left: f32, right: f32, acc: f32) -> f32 { return left * right + acc; }
fn stubStore(offset: u32, value: f32, colMajor: bool, stride: u32) { result[offset + select(0u, stride, colMajor)] = value; }
`;
    for (const source of LOAD_SOURCES) {
      const code = loadProbeSource(source, 8)
          .replace(/^diagnostic\(off, chromium.*\n/m, '').replace(/^enable chromium_experimental_subgroup_matrix;\n/m, '')
          .replace(/subgroupMatrixLoad<subgroup_matrix_(left|right)<f16, 16, 16>>\(&src, /g, 'stubLoadS(')
          .replace(/subgroupMatrixLoad<subgroup_matrix_(left|right)<f16, 16, 16>>\(&tileW, /g, 'stubLoadW(')
          .replace(/subgroup_matrix_result<f32, 16, 16>\(\)/g, '0.0')
          .replace(/subgroupMatrixMultiplyAccumulate\(/g, 'stubMma(')
          .replace(/subgroupMatrixStore\(&result, /g, 'stubStore(') + stubs;
      expect(code, source).to.not.match(/subgroup_?[mM]atrix/);
      device.pushErrorScope('validation');
      const module = device.createShaderModule({code});
      const errors = (await module.getCompilationInfo()).messages.filter((m) => m.type === 'error')
          .map((m) => `${m.lineNum}:${m.linePos} ${m.message}`);
      await device.createComputePipelineAsync({layout: 'auto', compute: {module, entryPoint: 'main'}}).catch(
          (e: Error) => errors.push(e.message));
      const err = await device.popErrorScope();
      if (err != null) errors.push(err.message);
      expect(errors, source).to.deep.equal([]);
    }
  });

  const cases = CASES.filter((c) => !hasTag(c, 'browser') && (process.env.WEBGPU_LONG === '1' || !hasTag(c, 'long')));
  // 'medium' on every kernel (registers: the default; staged: K / V through workgroup memory; memory: the fallback),
  // 'high' on its two (staged: the default where a tile fits; memory: the fallback); the staged kernel's variants
  // both at once (two row blocks per subgroup with one thread per row, two K / V buffers; each alone runs the
  // lazy-rescale cases above). A forced tile that does not fit lavapipe's 32 KiB runs another kernel: those cases
  // check only the fallback here (tc_check runs them on a GPU).
  const runs: Array<readonly ['medium' | 'high', 'memory' | 'registers' | 'staged', FastTileShape | null]> = [
    ['medium', 'memory', null], ['medium', 'registers', null], ['medium', 'staged', null], ['high', 'memory', null],
    ['high', 'staged', null], ['medium', 'staged', STAGED_VARIANTS[2]],
  ];
  for (const [precision, kernel, tile] of runs) {
    for (const c of cases) {
      it(`${precision}${kernel == null ? '' : ` ${kernel}`}${tile == null ? '' : ` ${JSON.stringify(tile)}`}: ${
          c.name}`, async () => {
        tf.env().set(lib.PRECISION_FLAG, precision);
        setTensorCoreKernelForTests(kernel, tile);
        const r = await withGPUErrorCheck(device, () => checkCase(tf, lib, {...c, forwardOnly: true}, 1))
            .finally(() => setTensorCoreKernelForTests(null));
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
