/**
 * The one tolerance table: max relative error (max |actual − float64 reference| / max |reference|, see
 * check_case.ts) that each backend's kernels may show against test/reference.ts. The shared-case runners, the fuzz
 * runners and the semantics checks all read it, so a backend has one number per quantity, everywhere.
 */
export interface Tolerances {
  /** output and lse */
  forward: number;
  /** dq, dk, dv and dBias */
  gradients: number;
}

export type BackendName = 'cpu' | 'cpu-composite' | 'wasm' | 'webgpu' | 'webgpu-chromium' | 'webgl';

export const TOLERANCES: Record<BackendName, Tolerances> = {
  // Dedicated cpu kernels accumulate in float64: ~3e-7 measured over 300 long fuzz cases.
  cpu: {forward: 1e-5, gradients: 1e-5},
  // The composite (tfjs-ops) kernels on the cpu backend: the same arithmetic as tfjs's matMul / softmax, per chunk.
  'cpu-composite': {forward: 1e-5, gradients: 1e-5},
  // Composite kernels on wasm (XNNPACK matMul): the shared cases stay under 1e-5; the fuzz's wider draws (headDim
  // 256, long key ranges, dLse) reach ~5e-5 in gradients, hence 1e-4 there (FUZZ below).
  wasm: {forward: 1e-5, gradients: 1e-5},
  // fp32 compute shaders, Dawn in node. The dedicated backward kernels on the whole shared table (lavapipe,
  // 2026-12-07): output 4.7e-7, lse 1.6e-7, dq 6.4e-7, dk 7.1e-7, dv 8.8e-7; on the H200, 1,500 fuzz cases: ≤ 8.6e-6.
  // The old 2e-4 (test/webgpu.test.ts) dated from the composite grad kernels (single-key rows: 1.2e-4); the
  // dedicated kernels' 1e-5 (test/webgpu_grad.test.ts) holds on every case, so both runners use it.
  webgpu: {forward: 1e-5, gradients: 1e-5},
  // The same WGSL in Chromium (SwiftShader's Vulkan): not re-measured at 1e-5, so the Chromium runner keeps 2e-4.
  'webgpu-chromium': {forward: 1e-5, gradients: 2e-4},
  // WebGL fragment programs: forward 2e-5 for long key ranges (6e-6 measured at 70,000 keys); gradients 2e-4 in the
  // shared table (single-key rows, as webgpu) and 1e-4 in the fuzz (webgl measured 6e-5 there).
  webgl: {forward: 2e-5, gradients: 2e-4},
};

/** The fuzz runners' tolerances (test/fuzz.ts): random shapes and options beyond the shared table's. */
export const FUZZ_TOLERANCES: Record<string, Tolerances> = {
  cpu: TOLERANCES.cpu,
  wasm: {forward: 1e-5, gradients: 1e-4},
  // Wider draws than the table (headDim 256, long key ranges, dLse): the H200's first long run reached dk 1.7e-4.
  webgpu: {forward: 1e-5, gradients: 2e-4},
  webgl: {forward: 2e-5, gradients: 1e-4},
};

/**
 * precision 'medium' (f16 operands, f32 accumulation and softmax statistics): the forward's error is f16 rounding of
 * q, k, v and P (2⁻¹¹ relative each). Measured on lavapipe (Dawn, the vec4<f16> path, 2026-12-07), 23 shared cases:
 * output ≤ 4.1e-4, lse ≤ 3.0e-4 (RELIABILITY.md), hence 1e-3. The 'medium' runs check the forward only
 * (gradients: Infinity = not compared): the backward is the fp32 kernel, checked by the fp32 runners; fed the f16
 * forward's output it measured dq/dk ≈ 5e-4, but 0.17 relative (1.7e-4 absolute against the 1e-3 floor) on
 * single-key rows, whose exact dq is 0 and whose dP − D cancels only when O is v exactly.
 */
export const MEDIUM_TOLERANCES: Record<'webgpu', Tolerances> = {
  // 2e-3 (as the tensor-core 'medium' below): 'flash single token S1 D40' measured lse 1.2e-3, the lse of one score
  // whose q·k terms cancel, which amplifies the f16 rounding of q and k.
  webgpu: {forward: 2e-3, gradients: Infinity},
};

/**
 * The tensor-core forward (kernels/webgpu/attention_forward_tc.ts), forward only, per precision: 'medium' rounds q,
 * k, v and P to f16 (2^-11 relative); 'high' splits each into hi + lo f16 parts (~22 bits kept) and meets the fp32
 * table value. Measured on the shared table with emulated MMAs on lavapipe (test/webgpu_tc.test.ts, 2026-12-07):
 * 'quick' cases max medium 4.7e-4, high 1.0e-6 (fp32 kernel 5.5e-7); bench/device/tc_check.ts measures the real MMAs.
 * mediumGradients: dq, dk, dv, dBias of the tensor-core 'medium' backward (q, k, v, dO, P, dS rounded to f16; f32
 * accumulation, elementwise phase and δ in f32). Measured with emulated MMAs on lavapipe (test/webgpu_tc_grad.test.ts,
 * 2026-12-08): every node shared case, dq ≤ 8.7e-4, dk ≤ 8.3e-4, dv ≤ 5.2e-4, dBias ≤ 4.2e-4 (five seeds) — about 1.6× the
 * forward's output error; 3e-3 keeps a margin like the forward's (3.4×). bench/device/tc_backward.ts measures the real MMAs.
 */
export const TENSOR_CORE_TOLERANCES = {medium: 2e-3, high: 1e-5, mediumGradients: 3e-3};
