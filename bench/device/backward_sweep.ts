/**
 * The fp32 WebGPU backward on a real device (issues 16, 19), in one run of < 150 s: B1 H16, fp32, Dawn.
 *   1. the adapter;
 *   2. per problem (S1024 / S4096 at headDim 64, S4096 at headDim 128; dense and causal): the forward alone, forward +
 *      backward through tf.grads (dy given, on the GPU) and the backward kernel alone (FlashAttentionGrad through
 *      runKernel on saved forward outputs), under the default kernel, plus the backward alone under
 *      'old' (no prefetch, scalar global loads: the kernel before this branch) and the other variants below;
 *      every variant's dq, dk, dv are compared bit for bit with the default's (same arithmetic, only the staging
 *      differs, so they must be identical; other tilings and split-dq sum in another order: 'false' is expected);
 *   3. naive tfjs attention (matMul → softmax → matMul, tf.grads) fwd+bwd at S1024 and S4096, dense and causal
 *      (additive mask), with its max |difference| to ours relative to max |naive| per gradient at S1024;
 *   4. causal given as a boolean [S, S] mask: ours fwd+bwd vs naive with the same mask.
 * Timing: bench/suite/webgpu_timing.ts timeOnQueue (calls back to back, queue sync, median of 5 batches after a
 * warm-up call). Ratios: fwd+bwd / fwd (target ≤ 4.5), naive / ours (target > 1; with the mask ≥ 3).
 *
 *   npm run bench:backward-bundle && node .bench-dist/backward_sweep.mjs [--quick]
 * (the bundle needs only the `webgpu` package beside it; --quick: S128, default and 'old' only: checks the script
 * on lavapipe).
 */
import {adapterName, DAWN_TOGGLES, dawnAdapter} from './dawn_device.js';

const args = new Set(process.argv.slice(2));
const quick = args.has('--quick');
const H = 16;

type Tensor = import('@tensorflow/tfjs-core').Tensor;
type Tensor4D = import('@tensorflow/tfjs-core').Tensor4D;
type GradTiles = import('../../kernels/webgpu/grad_tiles.js').GradTiles;

async function main(): Promise<void> {
  const t0 = performance.now();
  const {gpu, adapter} = await dawnAdapter([DAWN_TOGGLES]);
  if (adapter == null) {
    console.log('no WebGPU adapter');
    return;
  }
  console.log(`adapter: ${adapterName(adapter)}; maxComputeWorkgroupStorageSize ${
      adapter.limits.maxComputeWorkgroupStorageSize}`);

  // The union package registers the gradients of tfjs's own ops (the naive reference's tf.grads).
  await import('@tensorflow/tfjs');
  const tf = await import('@tensorflow/tfjs-core');
  const lib = await import('../../src/index.js');
  await import('../../kernels/webgpu/register_all_webgpu_kernels.js');
  const {setBackwardDesignForTests, setGradTilesOverrideForTests, setGradVec4LoadsForTests} =
      await import('../../kernels/webgpu/attention_backward.js');
  const {chooseGradTiles} = await import('../../kernels/webgpu/grad_tiles.js');
  const {backwardKernelCall} = await import('../suite/backward_kernel_call.js');
  const {additiveMask, naiveAttentionWithBias} = await import('../../src/layers/naive_attention.js');
  const {timeOnQueue} = await import('../suite/webgpu_timing.js');
  await lib.setupWebGPU({gpu});
  await tf.setBackend('webgpu');
  const limits = (tf.backend() as unknown as {device: GPUDevice}).device.limits;

  const time = (fn: () => Tensor[]) => timeOnQueue(fn, {targetMs: 150, maxIters: 40});
  const fmt = (t: GradTiles) => `${t.resident}x${t.streamed}/T${t.threads}${t.chunk < t.paddedDim ? `/c${t.chunk}` : ''}${
      t.accCols != null && t.accCols > 1 ? `/ac${t.accCols}` : ''}${t.prefetch ? '/pf' : ''}`;
  const tile = (d: number, resident: number, streamed: number, threads: number, prefetch: boolean): GradTiles => {
    const paddedDim = Math.ceil(d / 16) * 16;
    return {resident, streamed, threads, paddedDim, chunk: paddedDim, prefetch};
  };
  type Variant = {name: string; tiles: Partial<Record<'dkdv' | 'dq', GradTiles>> | 'noPrefetch' | null; vec4: boolean;
                  splitDq?: number | null};
  const variantsFor = (d: number): Variant[] => [
    {name: 'old: no prefetch, scalar loads', tiles: 'noPrefetch', vec4: false},
    {name: 'no prefetch, vec4 loads', tiles: 'noPrefetch', vec4: true},
    // The split-dQ design (5 matmul-equivalents instead of 7; dq_splits.ts's nsplits, or forced), now prefetched.
    {name: 'split-dq (default tiles, prefetch)', tiles: null, vec4: true, splitDq: null},
    ...(d === 64 ? [
      {name: 'split-dq nsplits 64', tiles: null, vec4: true, splitDq: 64},
      {name: 'pf dkdv 32x32/T256 dq 64x16/T256', tiles: {dkdv: tile(d, 32, 32, 256, true), dq: tile(d, 64, 16, 256, true)},
       vec4: true},
      {name: 'pf dq 32x32/T128', tiles: {dq: tile(d, 32, 32, 128, true)}, vec4: true},
      {name: 'pf dkdv 32x16/T128 dq 32x16/T128', tiles: {dkdv: tile(d, 32, 16, 128, true), dq: tile(d, 32, 16, 128, true)},
       vec4: true},
      {name: 'pf dq 64x16/T64', tiles: {dq: tile(d, 64, 16, 64, true)}, vec4: true},
    ] : [
      {name: 'pf dkdv 16x16/T128 dq 16x16/T128',
       tiles: {dkdv: tile(d, 16, 16, 128, true), dq: tile(d, 16, 16, 128, true)}, vec4: true},
    ]),
  ];
  const rows: string[] = [];
  const row = (cells: Array<string | number>) => {
    const line = cells.map((c) => typeof c === 'number' ? c.toFixed(2).padStart(8) : c).join(' | ');
    rows.push(line);
    console.log(line);
  };
  const bitsEqual = (a: ArrayLike<number>[], b: ArrayLike<number>[]) => a.every((x, i) =>
      Buffer.from((x as Float32Array).buffer).equals(Buffer.from((b[i] as Float32Array).buffer)));

  async function problem(seq: number, d: number, causal: boolean, withVariants: boolean, naive: boolean) {
    const [q, k, v, dy] = [0, 1, 2, 3].map(() => tf.randomUniform([1, seq, H, d], -1, 1)) as Tensor4D[];
    const tag = `S${seq} D${d} ${causal ? 'causal' : 'dense '}`;
    const fwdMs = await time(() => [lib.flashAttention(q, k, v, {causal}) as Tensor]);
    const both = () => tf.grads((a: Tensor, b: Tensor, c: Tensor) =>
        lib.flashAttention(a as Tensor4D, b as Tensor4D, c as Tensor4D, {causal}) as Tensor)([q, k, v], dy);
    const bothMs = await time(both);
    const call = backwardKernelCall(q, k, v, dy, causal);
    const bwd = call.run;
    const plan = call.plan;
    const grads = async () => {
      const gs = bwd();
      const data = await Promise.all(gs.map((g) => g.data()));
      tf.dispose(gs);
      return data as Float32Array[];
    };
    const reference = await grads();
    const bwdMs = await time(bwd);
    const dflt = {dkdv: chooseGradTiles('dkdv', d, limits), dq: chooseGradTiles('dq', d, limits)};
    row([`${tag} default dkdv ${fmt(dflt.dkdv)} dq ${fmt(dflt.dq)}`.padEnd(64), `fwd ${fwdMs.toFixed(2)} ms`,
         `bwd ${bwdMs.toFixed(2)} ms`, `fwd+bwd ${bothMs.toFixed(2)} ms`, `${(bothMs / fwdMs).toFixed(2)}x fwd`]);
    for (const variant of withVariants ? variantsFor(d) : variantsFor(d).slice(0, 1)) {
      const tiles = variant.tiles === 'noPrefetch' ?
          {dkdv: {...dflt.dkdv, prefetch: false}, dq: {...dflt.dq, prefetch: false}} : variant.tiles;
      setGradTilesOverrideForTests(tiles);
      setGradVec4LoadsForTests(variant.vec4);
      if (variant.splitDq !== undefined) setBackwardDesignForTests('split-dq', variant.splitDq);
      try {
        const same = bitsEqual(await grads(), reference);
        const ms = await time(bwd);
        row([`  ${tag} bwd ${variant.name}`.padEnd(64), '', `bwd ${ms.toFixed(2)} ms`,
             `${(ms / bwdMs).toFixed(2)}x default`, `bits == default: ${same}`]);
      } catch (e) {
        row([`  ${tag} bwd ${variant.name}`.padEnd(64), `failed: ${(e as Error).message.slice(0, 100)}`]);
      } finally {
        setGradTilesOverrideForTests(null);
        setGradVec4LoadsForTests(true);
        setBackwardDesignForTests('two-pass');
      }
    }
    if (naive) {
      const mask = causal ? additiveMask(plan) : null;
      const scale = 1 / Math.sqrt(d);
      const naiveBoth = () => tf.grads((a: Tensor, b: Tensor, c: Tensor) =>
          naiveAttentionWithBias(a as Tensor4D, b as Tensor4D, c as Tensor4D, scale, mask))([q, k, v], dy);
      let err = '';
      if (seq <= 1024) {
        const ours = await Promise.all(both().map((t) => t.data()));
        const ref = await Promise.all(naiveBoth().map((t) => t.data()));
        err = ' | rel err dq/dk/dv ' + ['dq', 'dk', 'dv'].map((_, i) => {
          let diff = 0, top = 0;
          for (let e = 0; e < ref[i].length; e++) {
            diff = Math.max(diff, Math.abs((ours[i] as Float32Array)[e] - (ref[i] as Float32Array)[e]));
            top = Math.max(top, Math.abs((ref[i] as Float32Array)[e]));
          }
          return (diff / top).toExponential(1);
        }).join('/');
      }
      const naiveMs = await time(naiveBoth);
      row([`  ${tag} naive tfjs fwd+bwd`.padEnd(64), '', '', `fwd+bwd ${naiveMs.toFixed(2)} ms`,
           `naive/ours ${(naiveMs / bothMs).toFixed(2)}x${err}`]);
      if (causal) {
        // Causal as a boolean mask: ours with the mask option vs naive with the same mask (additive, made once).
        const boolMask = tf.tidy(() => tf.cast(tf.linalg.bandPart(tf.ones([seq, seq]), -1, 0), 'bool'));
        const oursMask = () => tf.grads((a: Tensor, b: Tensor, c: Tensor) =>
            lib.flashAttention(a as Tensor4D, b as Tensor4D, c as Tensor4D, {mask: boolMask}) as Tensor)([q, k, v], dy);
        const fwdMaskMs = await time(() => [lib.flashAttention(q, k, v, {mask: boolMask}) as Tensor]);
        const maskMs = await time(oursMask);
        row([`  ${tag} causal as bool mask: ours`.padEnd(64), `fwd ${fwdMaskMs.toFixed(2)} ms`, '',
             `fwd+bwd ${maskMs.toFixed(2)} ms`, `naive/ours ${(naiveMs / maskMs).toFixed(2)}x (target >= 3)`]);
        boolMask.dispose();
      }
      mask?.dispose();
    }
    call.dispose();
    tf.dispose([q, k, v, dy]);
  }

  console.log('B1 H16 fp32; ms per call (median of 5 batches after warm-up, synchronised on the queue)');
  if (quick) {
    await problem(128, 64, false, false, true);
    await problem(128, 64, true, false, true);
  } else {
    await problem(4096, 64, false, true, true);
    await problem(4096, 64, true, true, true);
    await problem(1024, 64, false, false, true);
    await problem(1024, 64, true, false, true);
    await problem(4096, 128, false, true, false);
  }
  console.log(`total ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

main().then(() => process.exit(0), (e) => {
  console.error(e);
  process.exit(1);
});
