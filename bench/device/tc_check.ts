/**
 * The tensor-core forward (issue 19 §2: precision 'medium' and 'high', kernels/webgpu/attention_forward_tc.ts) on a
 * real device, in one self-explanatory run:
 *   1. the adapter (Dawn toggles allow_unsafe_apis + vulkan_enable_f16_on_nvidia), its features and f16
 *      subgroup-matrix configurations; exits 0 here when there are none;
 *   2. WGSL compile messages and pipeline validation errors of the forward program for 'medium' (every kernel:
 *      `registers`, O and Q in subgroup-matrix registers; `staged`, the same with K / V staged in workgroup memory;
 *      `memory`, O in workgroup memory) / 'high' (`staged`: the staged kernel on split operands, default tile and
 *      128×16; `memory`) × headDim 64 / 128 × no options / every option;
 *   3. every shared case (test/cases.ts) forward in 'highest', 'medium' (registers, staged and memory kernels) and
 *      'high' (staged and memory kernels) against the float64 reference (test/reference.ts): max |error| / max
 *      |reference| of output and lse, the path that ran, PASS / FAIL against TENSOR_CORE_TOLERANCES
 *      (test/tolerances.ts), and 'high' / fp32 error ratios (issue 19's target: ≤ 2; the worst per 'high' kernel); a
 *      failing row names its kernel (e.g. 'medium/registers', 'high/staged');
 *   4. timing (bench/suite/webgpu_timing.ts timeOnQueue), B1 H16 S4096, headDim 64 and 128, dense and causal:
 *      fp32, 'medium' registers (default tile 128×32 and 64×64), 'medium' staged (same two tiles), 'medium'
 *      memory, 'high' staged (default tile and 128×16), 'high' memory: ms and TFLOP/s (4·S²·D·H per forward, half
 *      under causal). 'medium staged' vs 'medium registers' decides the 'medium' default (DEFAULT_TC_KERNEL in
 *      kernels/webgpu/attention_forward_tc.ts), 'high staged' vs 'high memory' the 'high' one
 *      (DEFAULT_HIGH_TC_KERNEL; issue 19's target: ≤ 1.5 ms at D64 dense);
 *   5. the LOAD probe (tc_load_probe.ts): what one 16×16 f16 subgroupMatrixLoad feeding an MMA costs from a storage
 *      buffer / workgroup memory, row- / column-major (skipped without f16 subgroup matrices, i.e. under --emulate).
 * Exit code 1 when a compile, validation or case failed.
 *
 *   npm run bench:tc-bundle && node .bench-dist/tc_check.mjs [--emulate] [--quick] [--lean]
 * (the bundle needs only the `webgpu` package beside it). --emulate runs the MMAs as SIMT code (any device with
 * shader-f16, e.g. lavapipe: a check of this script and of everything but the MMAs); --quick: the 'quick' cases, no
 * timing.
 */
import {adapterName, DAWN_TOGGLES, dawnAdapter, tensorCoreBackend} from './dawn_device.js';

const args = new Set(process.argv.slice(2));
const emulate = args.has('--emulate');
const quick = args.has('--quick');
/**
 * --lean (a short device lease): the 'quick' cases in section 3, only the kernels not yet measured there (the staged
 * 'medium' default, its variants, both 'high' kernels) in sections 3 and 4, no load probe.
 */
const lean = args.has('--lean');
/**
 * The staged kernel's variants, checked and timed next to its default tile: two row blocks per subgroup (one thread
 * per row, one barrier fewer), two K / V buffers (one barrier fewer), both; and 64×32 (smaller causal steps).
 */
const STAGED_VARIANTS: Record<string, FastTileShape> = {
  'medium/staged r2': {blockQ: 128, blockK: 32, rowBlocks: 2},
  'medium/staged kv2': {blockQ: 128, blockK: 32, kvBuffers: 2},
  'medium/staged r2 kv2': {blockQ: 128, blockK: 32, rowBlocks: 2, kvBuffers: 2},
  'medium/staged 64x32': {blockQ: 64, blockK: 32},
  'medium/staged 64x32 kv2': {blockQ: 64, blockK: 32, kvBuffers: 2},
};

type WebGPUBackend = import('@tensorflow/tfjs-backend-webgpu').WebGPUBackend;
type Tensor = import('@tensorflow/tfjs-core').Tensor;
type Tensor4D = import('@tensorflow/tfjs-core').Tensor4D;
type FastTileShape = import('../../kernels/webgpu/attention_forward_tc.js').FastTileShape;

async function main(): Promise<number> {
  const {adapter} = await dawnAdapter([DAWN_TOGGLES]);
  if (adapter == null) {
    console.log('no WebGPU adapter: nothing to check');
    return 0;
  }
  const info = adapter.info as GPUAdapterInfo & {subgroupMinSize?: number; subgroupMaxSize?: number;
                                                subgroupMatrixConfigs?: unknown[]};
  console.log(`== adapter (Dawn toggles ${DAWN_TOGGLES})`);
  console.log(adapterName(adapter));
  console.log(`subgroup size ${info.subgroupMinSize}..${info.subgroupMaxSize}; maxComputeWorkgroupStorageSize ${
      adapter.limits.maxComputeWorkgroupStorageSize}`);
  console.log(`features: ${[...adapter.features].sort().join(' ')}`);
  console.log(`subgroupMatrixConfigs: ${JSON.stringify(info.subgroupMatrixConfigs ?? null)}`);

  const tf = await import('@tensorflow/tfjs-core');
  const lib = await import('../../src/index.js');
  await import('../../kernels/webgpu/register_all_webgpu_kernels.js');
  const {setTensorCoreEmulationForTests, setTensorCoreKernelForTests, chooseTcTile, chooseFastTcTile} =
      await import('../../kernels/webgpu/attention_forward_tc.js');
  const {webgpuCapabilities, hasSubgroupMatrixF16} = await import('../../kernels/webgpu/device_capabilities.js');
  const {TcForwardProgram, tcWorkgroupBytes} = await import('../../kernels/webgpu/flash_attention_tc_webgpu.js');
  const {programSource, getLimits} = await import('../../kernels/webgpu/program_runner.js');
  const {CASES, hasTag} = await import('../../test/cases.js');
  const {checkCase} = await import('../../test/check_case.js');
  const {TENSOR_CORE_TOLERANCES} = await import('../../test/tolerances.js');
  const {timeOnQueue} = await import('../suite/webgpu_timing.js');

  const {device, uncaptured} = await tensorCoreBackend(adapter);
  const backend = tf.backend() as unknown as WebGPUBackend;
  const caps = webgpuCapabilities(backend);
  console.log(`device: shader-f16 ${caps.shaderF16}, subgroups ${caps.subgroups}, f16 subgroup-matrix configs ${
      JSON.stringify(caps.subgroupMatrixF16)}`);
  if (emulate) {
    if (!caps.shaderF16) {
      console.log('--emulate needs shader-f16, absent: nothing to check');
      return 0;
    }
    setTensorCoreEmulationForTests(true);
    console.log('EMULATED subgroup-matrix operations (SIMT code): this checks everything but the MMAs');
  } else if (!hasSubgroupMatrixF16(caps, {M: 16, N: 16, K: 16})) {
    console.log('subgroup matrices absent (no f16 16x16x16 configuration on this device): nothing to check');
    return 0;
  }

  let failures = 0;
  const precisions = ['medium', 'high'] as const;

  /** Runs fn inside validation and out-of-memory error scopes; returns the error messages. */
  async function scoped<T>(fn: () => Promise<T>): Promise<{value?: T; errors: string[]}> {
    device.pushErrorScope('validation');
    device.pushErrorScope('out-of-memory');
    let value: T | undefined;
    const errors: string[] = [];
    try {
      value = await fn();
    } catch (e) {
      errors.push(`threw: ${(e as Error).message}`);
    }
    for (const scope of ['out-of-memory', 'validation']) {
      const err = await device.popErrorScope();
      if (err != null) errors.push(`${scope}: ${err.message}`);
    }
    errors.push(...uncaptured.splice(0));
    return {value, errors};
  }

  /** Compiles `program` and creates its pipeline: prints WGSL messages and the verdict, counts a failure. */
  async function compileCheck(program: InstanceType<typeof TcForwardProgram>, label: string): Promise<void> {
    const {errors} = await scoped(async () => {
      const module = device.createShaderModule({code: programSource(program), label});
      const messages = (await module.getCompilationInfo()).messages;
      for (const m of messages) console.log(`  wgsl ${m.type} ${m.lineNum}:${m.linePos}: ${m.message}`);
      await device.createComputePipelineAsync({layout: 'auto', compute: {module, entryPoint: 'main'}, label});
    });
    console.log(`${label}: ${errors.length === 0 ? 'compiled' : 'FAIL\n  ' + errors.join('\n  ')}`);
    if (errors.length > 0) failures++;
  }

  console.log('\n== 2. forward program: WGSL compilation and pipeline creation');
  const allOptions =
      {queryOffsets: true, mask: 'f32' as const, bias: true, alibi: true, segments: false, dropout: true};
  const sgMax = emulate ? 32 : caps.subgroupMaxSize;
  for (const kernel of ['registers', 'staged'] as const) {
    const staged = kernel === 'staged';
    for (const headDim of [64, 128]) {
      for (const tileShape of [null, {blockQ: 64, blockK: 64}]) {
        setTensorCoreKernelForTests(kernel, tileShape);
        const tile = chooseFastTcTile(headDim, getLimits(backend), sgMax, staged);
        setTensorCoreKernelForTests(null);
        if (tile == null) {
          // A forced staged tile may need more workgroup memory than the device has (64×64 staged: 45 KiB at
          // headDim 64, 64 KiB at 128); the default shapes must fit.
          const bytes = tileShape == null ? 0 : tcWorkgroupBytes(
              {...tileShape, threads: Math.max((tileShape.blockQ / 16) * sgMax, tileShape.blockQ)}, headDim, 'medium',
              true, staged);
          const expected = staged && bytes > getLimits(backend).maxComputeWorkgroupStorageSize;
          console.log(`medium/${kernel} d${headDim} ${JSON.stringify(tileShape)}: no tile fits this device${
              expected ? ` (expected: ${bytes} bytes of workgroup memory)` : ' — FAIL'}`);
          if (!expected) failures++;
          continue;
        }
        for (const opts of [null, allOptions]) {
          const program =
              new TcForwardProgram(headDim, tile, 'medium', false, false, false, opts, emulate, true, staged);
          const label = `medium/${kernel} d${headDim} tile ${tile.blockQ}x${tile.blockK}x${tile.threads}${
              opts ? ' +options' : ''}`;
          await compileCheck(program, label);
        }
      }
    }
  }
  // 'high' on the staged kernel: its default tile and 128×16 (the default at headDim 128).
  for (const headDim of [64, 128]) {
    for (const tileShape of [null, {blockQ: 128, blockK: 16}]) {
      setTensorCoreKernelForTests('staged', tileShape);
      const tile = chooseFastTcTile(headDim, getLimits(backend), sgMax, true, 'high');
      setTensorCoreKernelForTests(null);
      if (tile == null) {
        // A forced 128×16 needs more than lavapipe's 32 KiB; on 48 KiB every default and 128×16 fit up to headDim 128.
        const bytes = tileShape == null ? 0 :
            tcWorkgroupBytes({...tileShape, threads: (tileShape.blockQ / 16) * sgMax}, headDim, 'high', true, true);
        const expected = bytes > getLimits(backend).maxComputeWorkgroupStorageSize;
        console.log(`high/staged d${headDim} ${JSON.stringify(tileShape)}: no tile fits this device${
            expected ? ` (expected: ${bytes} bytes of workgroup memory)` : ' — FAIL'}`);
        if (!expected) failures++;
        continue;
      }
      for (const opts of [null, allOptions]) {
        const program = new TcForwardProgram(headDim, tile, 'high', false, false, false, opts, emulate, true, true);
        await compileCheck(program, `high/staged d${headDim} tile ${tile.blockQ}x${tile.blockK}x${tile.threads}${
            opts ? ' +options' : ''}`);
      }
    }
  }
  for (const precision of precisions) {
    for (const headDim of [64, 128]) {
      const tile = chooseTcTile(headDim, precision, getLimits(backend), emulate ? 1 : caps.subgroupMaxSize);
      if (tile == null) {
        console.log(`${precision} d${headDim}: no tile fits this device — FAIL`);
        failures++;
        continue;
      }
      for (const opts of [null, allOptions]) {
        const program = new TcForwardProgram(headDim, tile, precision, false, false, false, opts, emulate);
        const label = `${precision}/memory d${headDim} tile ${tile.blockQ}x${tile.blockK}x${tile.threads}${
            opts ? ' +options' : ''}`;
        await compileCheck(program, label);
      }
    }
  }

  console.log('\n== 3. shared cases, forward, vs the float64 reference (max |err| / max |ref|)');
  console.log(`tolerances: medium ${TENSOR_CORE_TOLERANCES.medium}, high ${TENSOR_CORE_TOLERANCES.high}`);
  const fmt = (x: number) => x.toExponential(1);
  const cases = CASES.filter((c) => !hasTag(c, 'browser') && (!(quick || lean) || hasTag(c, 'quick')));
  const worstHighRatio = {staged: 0, memory: 0};
  const failed: string[] = [];
  for (const c of cases) {
    const row: string[] = [];
    let fp32 = 0;
    const kernels = lean ? ['highest', 'medium/staged', 'high/staged', 'high/memory'] :
        ['highest', 'medium/registers', 'medium/staged', 'medium/memory', 'high/staged', 'high/memory'];
    for (const variant of [...kernels, ...Object.keys(STAGED_VARIANTS)]) {
      const [precision, kernel] =
          variant.split('/') as ['highest' | 'medium' | 'high', ('registers' | 'staged' | 'memory')?];
      tf.env().set(lib.PRECISION_FLAG, precision);
      setTensorCoreKernelForTests(kernel == null ? null : STAGED_VARIANTS[variant] != null ? 'staged' : kernel,
                                  STAGED_VARIANTS[variant] ?? null);
      const {value: r, errors} = await scoped(() => checkCase(tf, lib, {...c, forwardOnly: true}, 1));
      setTensorCoreKernelForTests(null);
      const path = lib.lastAttentionPath()?.path ?? '?';
      if (r == null || errors.length > 0) {
        row.push(`${variant} FAIL ${errors.join('; ')}`);
        failures++;
        continue;
      }
      const err = Math.max(r.errors.output, r.errors.lse);
      const tolerance = precision === 'highest' ? 1e-5 : TENSOR_CORE_TOLERANCES[precision];
      const ok = err <= tolerance && r.problems.length === 0 && r.leakedTensors === 0;
      if (!ok) {
        failures++;
        failed.push(`${variant}: ${c.name}`);
      }
      if (precision === 'highest') fp32 = err;
      const ratio = precision === 'high' ? ` (${(err / Math.max(fp32, 1e-9)).toFixed(1)}× fp32)` : '';
      if (precision === 'high' && path === 'subgroup-matrix-f16x3') {
        const k = kernel as 'staged' | 'memory';
        worstHighRatio[k] = Math.max(worstHighRatio[k], err / Math.max(fp32, 1e-9));
      }
      const problems = r.problems.length ? ' problems: ' + r.problems.join('; ') : '';
      const leaks = r.leakedTensors ? ` leaked ${r.leakedTensors}` : '';
      row.push(`${variant} [${path}] out ${fmt(r.errors.output)} lse ${fmt(r.errors.lse)}${ratio} ${
          ok ? 'PASS' : 'FAIL'}${problems}${leaks}`);
    }
    console.log(`${c.name}\n  ${row.join('\n  ')}`);
  }
  if (failed.length > 0) console.log(`FAILED (kernel: case):\n  ${failed.join('\n  ')}`);
  console.log(`worst 'high' error / fp32 error: staged ${worstHighRatio.staged.toFixed(2)}, memory ${
      worstHighRatio.memory.toFixed(2)} (issue 19 target: <= 2)`);
  tf.env().set(lib.PRECISION_FLAG, 'highest');

  if (!quick) {
    console.log('\n== 4. timing: B1 H16 S4096 (median ms per call on the queue)');
    const [B, H, S] = [1, 16, 4096];
    for (const headDim of [64, 128]) {
      const q = tf.randomNormal([B, S, H, headDim]) as Tensor4D;
      const k = tf.randomNormal([B, S, H, headDim]) as Tensor4D;
      const v = tf.randomNormal([B, S, H, headDim]) as Tensor4D;
      for (const causal of [false, true]) {
        const variants = [
          ['highest', 'fp32', null, null], ['medium', 'registers', 'registers', null],
          ['medium', 'registers 64x64', 'registers', {blockQ: 64, blockK: 64}], ['medium', 'staged', 'staged', null],
          ['medium', 'staged 64x64', 'staged', {blockQ: 64, blockK: 64}], ['medium', 'memory', 'memory', null],
          ['high', 'staged', 'staged', null], ['high', 'staged 128x16', 'staged', {blockQ: 128, blockK: 16}],
          ['high', 'memory', 'memory', null],
          ...Object.entries(STAGED_VARIANTS).map(([name, tile]) => ['medium', name.slice(7), 'staged', tile] as const),
        ] as const;
        const leanRows = new Set(['fp32', 'staged', 'staged 128x16', 'memory']);
        for (const [precision, name, kernel, tileShape] of variants) {
          if (lean && (precision === 'medium' ? !name.startsWith('staged') || name === 'staged 64x64' :
                           !leanRows.has(name))) {
            continue;
          }
          const label = `${precision} ${name}`.padEnd(24);
          if (kernel != null && kernel !== 'memory') {
            // A register tile that does not fit would silently run the memory kernel: say so instead.
            setTensorCoreKernelForTests(kernel, tileShape);
            const tile = chooseFastTcTile(headDim, getLimits(backend), sgMax, kernel === 'staged', precision);
            setTensorCoreKernelForTests(null);
            if (tile == null) {
              console.log(`D${headDim} ${causal ? 'causal' : 'dense '} ${label}: tile does not fit this device`);
              continue;
            }
          }
          const run = () => [lib.flashAttention(q, k, v, {causal, precision}) as Tensor];
          setTensorCoreKernelForTests(kernel, tileShape);
          const {value: ms, errors} = await scoped(() => timeOnQueue(run));
          setTensorCoreKernelForTests(null);
          const flops = 4 * S * S * headDim * H * B * (causal ? 0.5 : 1);
          const path = lib.lastAttentionPath()?.path ?? '?';
          if (ms == null || errors.length > 0) {
            console.log(`D${headDim} ${causal ? 'causal' : 'dense '} ${label}: FAIL ${errors.join('; ')}`);
            failures++;
            continue;
          }
          console.log(`D${headDim} ${causal ? 'causal' : 'dense '} ${label} [${path}]: ${
              ms.toFixed(3)} ms, ${
              (flops / ms / 1e9).toFixed(1)} TFLOP/s`);
        }
      }
      tf.dispose([q, k, v]);
    }
  }

  console.log('\n== 5. LOAD probe: 16x16 f16 subgroupMatrixLoad feeding subgroupMatrixMultiplyAccumulate');
  if (lean) {
    console.log('skipped (--lean)');
  } else if (emulate || !hasSubgroupMatrixF16(caps, {M: 16, N: 16, K: 16})) {
    console.log('skipped: needs the f16 16x16x16 subgroup-matrix configuration (not emulated)');
  } else {
    const {runLoadProbe} = await import('./tc_load_probe.js');
    failures += await runLoadProbe(device, caps.subgroupMaxSize, quick);
  }

  console.log(`\n${failures === 0 ? 'ALL PASS' : `${failures} FAILURE(S)`}`);
  return failures === 0 ? 0 : 1;
}

main().then((code) => process.exit(code), (e) => {
  console.error(e);
  process.exit(1);
});
