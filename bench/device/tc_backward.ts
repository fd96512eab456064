/**
 * The tensor-core 'medium' backward (kernels/webgpu/flash_attention_grad_tc_webgpu.ts) against the fp32 backward on a
 * real device, B1 H16, in one run of about a minute:
 *   1. the adapter (Dawn toggles allow_unsafe_apis + vulkan_enable_f16_on_nvidia) and its f16 subgroup-matrix
 *      configurations (without them 'medium' runs the fp32 passes: the path column says so);
 *   2. per problem (S4096 headDim 64 and 128, S1024 headDim 64; dense and causal): the backward kernel alone
 *      (FlashAttentionGrad through runKernel on saved forward outputs, bench/suite/backward_kernel_call.ts) in fp32
 *      ('highest') and 'medium', the path each reported (lastAttentionPath), forward + backward through tf.grads in
 *      both, and 'medium''s dq, dk, dv against fp32's: max |difference| / max |fp32| (expected ≈ 1e-3: f16 operands);
 *   3. every node shared case (test/cases.ts) through tf.grads in 'medium' against the float64 reference
 *      (test/check_case.ts): errors of output, lse, dq, dk, dv, dBias, the backward's path, PASS / FAIL against
 *      TENSOR_CORE_TOLERANCES (test/tolerances.ts) — the real MMAs' answer to test/webgpu_tc_grad.test.ts;
 *   --emulate: the MMAs as SIMT code (lavapipe: checks the script; S256 only, timings meaningless; 'quick' cases).
 * Exit code 1 when a case failed or WebGPU reported an error.
 * Timing: bench/suite/webgpu_timing.ts timeOnQueue (calls back to back, queue sync, median of 5 batches after a
 * warm-up call).
 *
 *   npm run bench:tc-backward-bundle && node .bench-dist/tc_backward.mjs [--emulate]
 * (the bundle needs only the `webgpu` package beside it).
 */
import {adapterName, DAWN_TOGGLES, dawnAdapter, tensorCoreBackend} from './dawn_device.js';

const args = new Set(process.argv.slice(2));
const emulate = args.has('--emulate');
const H = 16;

type Tensor = import('@tensorflow/tfjs-core').Tensor;
type Tensor4D = import('@tensorflow/tfjs-core').Tensor4D;

async function main(): Promise<number> {
  const {adapter} = await dawnAdapter([DAWN_TOGGLES]);
  if (adapter == null) {
    console.log('no WebGPU adapter');
    return 0;
  }
  const info = adapter.info as GPUAdapterInfo & {subgroupMatrixConfigs?: unknown[]};
  console.log(`adapter: ${adapterName(adapter)}; subgroupMatrixConfigs ${
      JSON.stringify(info.subgroupMatrixConfigs ?? null)}`);

  const tf = await import('@tensorflow/tfjs-core');
  const lib = await import('../../src/index.js');
  await import('../../kernels/webgpu/register_all_webgpu_kernels.js');
  const {setTensorCoreEmulationForTests} = await import('../../kernels/webgpu/attention_forward_tc.js');
  const {setDecodePathForTests} = await import('../../kernels/webgpu/attention_decode.js');
  const {backwardKernelCall} = await import('../suite/backward_kernel_call.js');
  const {timeOnQueue} = await import('../suite/webgpu_timing.js');
  const {uncaptured} = await tensorCoreBackend(adapter);
  setTensorCoreEmulationForTests(emulate);
  setDecodePathForTests('never');
  // The tensor-core backward is opt-in on real subgroup matrices until this script has passed on a GPU.
  const {TC_BACKWARD_FLAG} = await import('../../kernels/webgpu/attention_backward.js');
  tf.env().set(TC_BACKWARD_FLAG, true);

  const time = (fn: () => Tensor[]) => timeOnQueue(fn, {targetMs: 150, maxIters: 40});
  const problems: Array<[number, number]> = emulate ? [[256, 64]] : [[4096, 64], [4096, 128], [1024, 64]];
  for (const [seq, d] of problems) {
    for (const causal of [false, true]) {
      const [q, k, v, dy] = [0, 1, 2, 3].map(() => tf.randomUniform([1, seq, H, d], -1, 1)) as Tensor4D[];
      const tag = `S${seq} D${d} ${causal ? 'causal' : 'dense '}`;
      const results: Record<string, {ms: number; both: number; path: string; grads: Float32Array[]}> = {};
      for (const precision of ['highest', 'medium'] as const) {
        const call = backwardKernelCall(q, k, v, dy, causal, precision);
        const first = call.run();
        const grads = await Promise.all(first.map((g) => g.data())) as Float32Array[];
        tf.dispose(first);
        const path = lib.lastAttentionPath()?.path ?? '?';
        const ms = await time(call.run);
        const both = await time(() => tf.grads((a: Tensor, b: Tensor, c: Tensor) => lib.flashAttention(
            a as Tensor4D, b as Tensor4D, c as Tensor4D, {causal, precision}) as Tensor)([q, k, v], dy));
        call.dispose();
        results[precision] = {ms, both, path, grads};
      }
      const fp32 = results.highest, medium = results.medium;
      const err = ['dq', 'dk', 'dv'].map((name, i) => {
        let diff = 0, top = 0;
        for (let e = 0; e < fp32.grads[i].length; e++) {
          diff = Math.max(diff, Math.abs(medium.grads[i][e] - fp32.grads[i][e]));
          top = Math.max(top, Math.abs(fp32.grads[i][e]));
        }
        return `${name} ${(diff / top).toExponential(1)}`;
      }).join(' ');
      console.log(`${tag} | bwd fp32 ${fp32.ms.toFixed(2)} ms | bwd medium ${medium.ms.toFixed(2)} ms (${
          medium.path}) | ${(fp32.ms / medium.ms).toFixed(2)}x | fwd+bwd fp32 ${fp32.both.toFixed(2)} ms, medium ${
          medium.both.toFixed(2)} ms | medium vs fp32: ${err}`);
      tf.dispose([q, k, v, dy]);
    }
  }
  const {CASES, hasTag} = await import('../../test/cases.js');
  const {checkCase} = await import('../../test/check_case.js');
  const {TENSOR_CORE_TOLERANCES} = await import('../../test/tolerances.js');
  let failed = 0;
  for (const [index, c] of CASES.entries()) {
    if (hasTag(c, 'browser') || c.forwardOnly || (emulate && !hasTag(c, 'quick'))) continue;
    const r = await checkCase(tf, lib, {...c, precision: 'medium'}, 1000 + index);
    const path = lib.lastAttentionPath()?.path;
    const ok = r.problems.length === 0 && r.leakedTensors === 0 && path === 'subgroup-matrix-f16' &&
        Math.max(r.errors.output, r.errors.lse) <= TENSOR_CORE_TOLERANCES.medium &&
        Math.max(r.errors.dq, r.errors.dk, r.errors.dv, r.errors.dBias) <= TENSOR_CORE_TOLERANCES.mediumGradients;
    if (!ok) failed++;
    console.log(`${ok ? 'PASS' : 'FAIL'} ${c.name.padEnd(60)} ${path} ${Object.entries(r.errors).map(([k, e]) =>
        `${k} ${e.toExponential(1)}`).join(' ')}${r.problems.length > 0 ? ` problems: ${r.problems.join('; ')}` : ''}`);
  }
  console.log(`${failed} of the shared cases failed ('medium' tolerances: forward ${
      TENSOR_CORE_TOLERANCES.medium}, gradients ${TENSOR_CORE_TOLERANCES.mediumGradients})`);
  if (uncaptured.length > 0) {
    console.log(`uncaptured WebGPU errors:\n  ${uncaptured.join('\n  ')}`);
    return 1;
  }
  return failed > 0 ? 1 : 0;
}

main().then((code) => process.exit(code), (e) => {
  console.error(e);
  process.exit(1);
});
