/**
 * What the adapter offers through Dawn (issue 19 §1), with and without the toggles that unhide f16 and subgroup
 * matrices on NVIDIA's Vulkan driver; then, where f16 subgroup-matrix configs exist, a 16×16×16 f16→f32
 * subgroupMatrixMultiplyAccumulate correctness check and a throughput loop.
 *   bash .gpu/run.sh node bench/device/features_probe.mjs
 */
import {create, globals} from 'webgpu';
Object.assign(globalThis, globals);
const TOGGLES = 'enable-dawn-features=allow_unsafe_apis,vulkan_enable_f16_on_nvidia';
let dev = null, adapterUsed = null;
for (const toggles of [[], [TOGGLES]]) {
  const gpu = create(toggles);
  const adapter = await gpu.requestAdapter({powerPreference: 'high-performance'});
  const i = adapter.info;
  console.log(`\n== toggles: ${toggles.join(' ') || '(none)'}\nadapter: ${[i.vendor, i.architecture, i.device, i.description].join(' / ')}`);
  console.log(`subgroup size ${i.subgroupMinSize}..${i.subgroupMaxSize}; maxComputeWorkgroupStorageSize ${adapter.limits.maxComputeWorkgroupStorageSize}; maxStorageBufferBindingSize ${adapter.limits.maxStorageBufferBindingSize}`);
  console.log('features: ' + [...adapter.features].sort().join(' '));
  console.log('subgroupMatrixConfigs: ' + JSON.stringify((i.subgroupMatrixConfigs ?? []).map((c) =>
    ({M: c.M, N: c.N, K: c.K, componentType: c.componentType, resultComponentType: c.resultComponentType}))));
  if (toggles.length) adapterUsed = adapter;
}
const a = adapterUsed;
const want = ['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix', 'timestamp-query'].filter((f) => a.features.has(f));
dev = await a.requestDevice({requiredFeatures: want, requiredLimits: {maxComputeWorkgroupStorageSize: a.limits.maxComputeWorkgroupStorageSize}});
console.log('device features: ' + [...dev.features].sort().join(' '));
console.log('device.adapterInfo configs: ' + JSON.stringify((dev.adapterInfo?.subgroupMatrixConfigs ?? null)?.map?.((c) => [c.M, c.N, c.K, c.componentType, c.resultComponentType]) ?? null));
if (!dev.features.has('chromium-experimental-subgroup-matrix') || !dev.features.has('shader-f16')) process.exit(0);
const errs = [];
dev.onuncapturederror = (e) => errs.push(e.error.message);
const sg = a.info.subgroupMaxSize;
// correctness: C = A(16x16, row-major) * B(16x16, row-major), and with B read column-major (= A * B^T).
const code = (iters) => `
enable f16;
enable chromium_experimental_subgroup_matrix;
@group(0) @binding(0) var<storage, read> A: array<f16>;
@group(0) @binding(1) var<storage, read> B: array<f16>;
@group(0) @binding(2) var<storage, read_write> C: array<f32>;
var<workgroup> wa: array<f16, 256>;
var<workgroup> wb: array<f16, 256>;
@compute @workgroup_size(${sg})
fn main(@builtin(local_invocation_index) li: u32, @builtin(workgroup_id) wg: vec3u) {
  for (var e = li; e < 256u; e += ${sg}u) { wa[e] = A[e]; wb[e] = B[e]; }
  workgroupBarrier();
  let l = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>(&wa, 0u, false, 16u);
  let r = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&wb, 0u, false, 16u);
  let rt = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&wb, 0u, true, 16u);
  var c = subgroup_matrix_result<f32, 16, 16>();
  var d = subgroup_matrix_result<f32, 16, 16>();
  for (var it = 0u; it < ${iters}u; it++) {
    c = subgroupMatrixMultiplyAccumulate(l, r, c);
    d = subgroupMatrixMultiplyAccumulate(l, rt, d);
  }
  if (wg.x == 0u) {
    subgroupMatrixStore(&C, 0u, c, false, 16u);
    subgroupMatrixStore(&C, 256u, d, false, 16u);
  }
}`;
dev.pushErrorScope('validation');
const buf = (data, usage) => { const b = dev.createBuffer({size: Math.max(16, data.byteLength), usage: usage | GPUBufferUsage.COPY_DST}); dev.queue.writeBuffer(b, 0, data); return b; };
const Af = new Float32Array(256).map(() => Math.round((Math.random() * 2 - 1) * 64) / 64);
const Bf = new Float32Array(256).map(() => Math.round((Math.random() * 2 - 1) * 64) / 64);
const toF16 = (f) => { const o = new Uint16Array(f.length); const t = new Float32Array(1), u = new Uint32Array(t.buffer);
  for (let k = 0; k < f.length; k++) { t[0] = f[k]; const x = u[0]; const s = (x >>> 16) & 0x8000; let e = ((x >>> 23) & 0xff) - 127 + 15; const m = (x >>> 13) & 0x3ff;
    o[k] = f[k] === 0 ? s : s | (e << 10) | m; } return o; };
const bA = buf(toF16(Af), GPUBufferUsage.STORAGE), bB = buf(toF16(Bf), GPUBufferUsage.STORAGE);
const bC = dev.createBuffer({size: 2048, usage: GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC});
const rd = dev.createBuffer({size: 2048, usage: GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST});
async function pipe(iters) {
  const m = dev.createShaderModule({code: code(iters)});
  const info = await m.getCompilationInfo();
  for (const msg of info.messages) console.log(`wgsl ${msg.type}: ${msg.message}`);
  return dev.createComputePipelineAsync({layout: 'auto', compute: {module: m, entryPoint: 'main'}});
}
const p1 = await pipe(1);
const run = (p, groups) => { const bg = dev.createBindGroup({layout: p.getBindGroupLayout(0), entries: [bA, bB, bC].map((b, k) => ({binding: k, resource: {buffer: b}}))});
  const enc = dev.createCommandEncoder(); const pass = enc.beginComputePass(); pass.setPipeline(p); pass.setBindGroup(0, bg); pass.dispatchWorkgroups(groups); pass.end(); return enc; };
let enc = run(p1, 1); enc.copyBufferToBuffer(bC, 0, rd, 0, 2048); dev.queue.submit([enc.finish()]);
await rd.mapAsync(GPUMapMode.READ); const C = new Float32Array(rd.getMappedRange().slice(0)); rd.unmap();
let e1 = 0, e2 = 0;
for (let r = 0; r < 16; r++) for (let c = 0; c < 16; c++) {
  let s = 0, t = 0; for (let k = 0; k < 16; k++) { s += Af[r * 16 + k] * Bf[k * 16 + c]; t += Af[r * 16 + k] * Bf[c * 16 + k]; }
  e1 = Math.max(e1, Math.abs(s - C[r * 16 + c])); e2 = Math.max(e2, Math.abs(t - C[256 + r * 16 + c]));
}
console.log(`subgroup-matrix 16x16x16 f16->f32: max|err| A*B = ${e1}, A*B^T (col-major load) = ${e2}`);
const iters = 4096, groups = 132 * 64;
const p2 = await pipe(iters);
for (let rep = 0; rep < 3; rep++) {
  const t0 = performance.now(); dev.queue.submit([run(p2, groups).finish()]); await dev.queue.onSubmittedWorkDone();
  const ms = performance.now() - t0; console.log(`mma loop: ${ms.toFixed(2)} ms, ${(2 * 2 * 4096 * iters * groups / ms / 1e9).toFixed(0)} TFLOP/s`);
}
console.log('validation: ' + ((await dev.popErrorScope())?.message ?? 'none') + '; uncaptured: ' + (errs.join(' | ') || 'none'));
process.exit(0);
