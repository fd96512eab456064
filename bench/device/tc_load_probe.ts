/**
 * The LOAD probe (issue 19, tc_check.ts section 5): what one 16×16 f16 subgroupMatrixLoad costs when it feeds a
 * subgroupMatrixMultiplyAccumulate, by where it reads from. The register tensor-core kernel loads every K (column-
 * major) and V (row-major) matrix straight from the packed storage buffer, all 8 subgroups of a workgroup the same
 * tile; its staged variant loads them from workgroup memory. Each variant runs the same loop — one right-matrix load
 * and one 16×16×16 MMA per iteration, the left matrix held — so the difference to 'no load' (a held right matrix)
 * is the load:
 *   none                    the MMA alone (the roof)
 *   storage row-major       16 rows of 32 bytes, 128 bytes apart: V from the packed buffer at headDim 64
 *   storage col-major       the same memory read transposed: K from the packed buffer
 *   storage col-major, shared   every subgroup of a workgroup reads the same tile (what the register kernel does)
 *   workgroup row-major     stride 72 halves (the staged kernel's Vs at headDim 64)
 *   workgroup col-major     the same, transposed (its Ks)
 * Storage variants walk a 32 MiB buffer (16384 slabs of 16 rows × 64 halves; mostly L2-resident on an H100/H200).
 * Reports ms (median of 5 after a warm-up, wall time around submit → onSubmittedWorkDone), MMA TFLOP/s and load
 * GB/s (512 bytes per load per subgroup). Needs the f16 16×16×16 subgroup-matrix configuration: tc_check skips it
 * otherwise. The WGSL follows bench/device/features_probe.mjs (which ran on the H100), plus subgroup_size.
 */

export type LoadSource = 'none' | 'storage row-major' | 'storage col-major' | 'storage col-major, shared' |
    'workgroup row-major' | 'workgroup col-major';
export const LOAD_SOURCES: LoadSource[] = [
  'none', 'storage row-major', 'storage col-major', 'storage col-major, shared', 'workgroup row-major',
  'workgroup col-major',
];

/** Invocations per workgroup (a multiple of any subgroup size up to 256). */
const THREADS = 256;
/** Row stride (halves) of the storage slabs (headDim 64 in the packed buffer) and of the workgroup tile (KST). */
const STRIDE = 64;
const WG_STRIDE = 72;
const SLAB = 16 * STRIDE;
const BUFFER_HALVES = 1 << 24;
const SLABS = BUFFER_HALVES / SLAB;
/** Output: 1024 result matrices (subgroups store to warp % 1024: the values are not read, only kept alive). */
const OUT_MATRICES = 1024;

/** The load of iteration `it` as a WGSL expression (a right matrix). */
function loadExpression(source: LoadSource): string {
  const right = 'subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>';
  switch (source) {
    case 'none': return 'held';
    case 'storage row-major':
      return `${right}(&src, ((warp * ITERS + it) % ${SLABS}u) * ${SLAB}u + (it % 4u) * 16u, false, ${STRIDE}u)`;
    case 'storage col-major':
      return `${right}(&src, ((warp * ITERS + it) % ${SLABS}u) * ${SLAB}u + (it % 4u) * 16u, true, ${STRIDE}u)`;
    case 'storage col-major, shared':
      return `${right}(&src, ((wg.x * ITERS + it) % ${SLABS}u) * ${SLAB}u + (it % 4u) * 16u, true, ${STRIDE}u)`;
    case 'workgroup row-major':
      return `${right}(&tileW, (it % 2u) * 16u * ${WG_STRIDE}u + ((it / 2u) % 4u) * 16u, false, ${WG_STRIDE}u)`;
    case 'workgroup col-major':
      return `${right}(&tileW, (it % 2u) * 16u * ${WG_STRIDE}u + ((it / 2u) % 4u) * 16u, true, ${WG_STRIDE}u)`;
  }
}

/** The probe shader for one load source: `iters` load + MMA steps per subgroup. */
export function loadProbeSource(source: LoadSource, iters: number): string {
  return `diagnostic(off, subgroup_uniformity);
diagnostic(off, chromium.subgroup_matrix_uniformity);
enable f16;
enable subgroups;
enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read> src: array<f16>;
@group(0) @binding(1) var<storage, read_write> result: array<f32>;
const ITERS = ${iters}u;
// 32 rows × 64 halves of the source, rows ${WG_STRIDE} halves apart (the staged kernel's Ks / Vs at headDim 64).
var<workgroup> tileW: array<f16, ${32 * WG_STRIDE}>;
@compute @workgroup_size(${THREADS})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) lid: u32,
        @builtin(subgroup_size) sgSize: u32) {
  let sg = lid / sgSize;
  let numSg = ${THREADS}u / sgSize;
  let warp = wg.x * numSg + sg;
  for (var e = lid; e < ${32 * STRIDE}u; e += ${THREADS}u) {
    tileW[(e / ${STRIDE}u) * ${WG_STRIDE}u + e % ${STRIDE}u] = src[(wg.x % ${SLABS / 2}u) * ${2 * SLAB}u + e];
  }
  workgroupBarrier();
  let left = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>(&tileW, 0u, false, ${WG_STRIDE}u);
  let held = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&tileW, 16u, false, ${WG_STRIDE}u);
  var acc = subgroup_matrix_result<f32, 16, 16>();
  for (var it = 0u; it < ITERS; it++) {
    let right = ${loadExpression(source)};
    acc = subgroupMatrixMultiplyAccumulate(left, right, acc);
  }
  subgroupMatrixStore(&result, (warp % ${OUT_MATRICES}u) * 256u, acc, false, 16u);
}
`;
}

/**
 * Compiles and times every load source on `device` (which must have shader-f16, subgroups and
 * chromium-experimental-subgroup-matrix). Returns the number of failures (compile / validation errors).
 */
export async function runLoadProbe(device: GPUDevice, subgroupMaxSize: number, quick: boolean): Promise<number> {
  if (subgroupMaxSize > THREADS) {
    console.log(`skipped: subgroups of up to ${subgroupMaxSize} invocations exceed the probe's ${THREADS}`);
    return 0;
  }
  // Full: ~2.3e12 FLOP of MMA (~5 ms at 500 TFLOP/s), long enough that the wall-clock overhead of a submit is noise.
  const iters = quick ? 256 : 4096;
  const groups = quick ? 1056 : 8448;
  const subgroups = groups * (THREADS / subgroupMaxSize);  // at the largest subgroup size (fewest subgroups)
  const src = device.createBuffer({size: 2 * BUFFER_HALVES, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_DST});
  {
    // Small exact f16 values (1/64 steps in [-1, 1]): bits written directly.
    const halves = new Uint16Array(BUFFER_HALVES);
    for (let e = 0; e < halves.length; e++) halves[e] = 0x2000 | ((e * 40503) & 0x83ff);
    device.queue.writeBuffer(src, 0, halves);
  }
  const out = device.createBuffer({size: 4 * 256 * OUT_MATRICES, usage: GPUBufferUsage.STORAGE});
  let failures = 0;
  let baseMs = 0;
  console.log(`${groups} workgroups × ${THREADS} invocations, ${iters} load + MMA steps per subgroup; ` +
      `FLOP and bytes counted at subgroup size ${subgroupMaxSize}`);
  for (const source of LOAD_SOURCES) {
    device.pushErrorScope('validation');
    let ms = NaN;
    try {
      const module = device.createShaderModule({code: loadProbeSource(source, iters), label: `load probe ${source}`});
      for (const m of (await module.getCompilationInfo()).messages) {
        console.log(`  wgsl ${m.type} ${m.lineNum}:${m.linePos}: ${m.message}`);
      }
      const pipeline = await device.createComputePipelineAsync({layout: 'auto', compute: {module, entryPoint: 'main'}});
      const bindGroup = device.createBindGroup({
        layout: pipeline.getBindGroupLayout(0),
        entries: [{binding: 0, resource: {buffer: src}}, {binding: 1, resource: {buffer: out}}],
      });
      const times: number[] = [];
      for (let rep = 0; rep < 6; rep++) {
        const encoder = device.createCommandEncoder();
        const pass = encoder.beginComputePass();
        pass.setPipeline(pipeline);
        pass.setBindGroup(0, bindGroup);
        pass.dispatchWorkgroups(groups);
        pass.end();
        const t0 = performance.now();
        device.queue.submit([encoder.finish()]);
        await device.queue.onSubmittedWorkDone();
        if (rep > 0) times.push(performance.now() - t0);  // the first: warm-up
      }
      ms = times.sort((a, b) => a - b)[times.length >> 1];
    } catch (e) {
      console.log(`  threw: ${(e as Error).message}`);
    }
    const err = await device.popErrorScope();
    if (err != null || Number.isNaN(ms)) {
      console.log(`${source.padEnd(26)}: FAIL ${err?.message ?? ''}`);
      failures++;
      continue;
    }
    if (source === 'none') baseMs = ms;
    const steps = subgroups * iters;
    const tflops = (2 * 16 * 16 * 16 * steps) / ms / 1e9;
    const gbs = source === 'none' ? '' : `, loads ${((512 * steps) / ms / 1e6).toFixed(0)} GB/s`;
    const extra = source === 'none' ? '' : `, +${(ms - baseMs).toFixed(3)} ms over the MMA alone`;
    console.log(`${source.padEnd(26)}: ${ms.toFixed(3)} ms, ${tflops.toFixed(0)} TFLOP/s${gbs}${extra}`);
  }
  src.destroy();
  out.destroy();
  return failures;
}
