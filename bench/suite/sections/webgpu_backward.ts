/**
 * Section `webgpu-backward` of bench/suite.ts: forward alone, the backward kernel alone (FlashAttentionGrad through runKernel on saved
 * forward outputs), and forward+backward through tf.grads, at B1 H16 fp32; plus the backward under other tilings of
 * its tile passes (setGradTilesOverrideForTests) to pick defaults.
 *
 *   npx tsx bench/suite.ts --section webgpu-backward [--quick] [--out DIR] [--designs split-dq,two-pass]
 *                                                    [--nsplits 4,8,16,32]
 *
 * --designs: the backward designs to time side by side in this run, each problem under each (attention_backward.ts
 * setBackwardDesignForTests; default: only the default design, two-pass). --nsplits: also time split-dq with these
 * forced accumulator counts (default: dq_splits.ts's rule). The tiling variants run under the default design.
 *   node node_modules/tsx/dist/cli.mjs bench/suite.ts --section webgpu-backward --out $OUT   # where there is no npx
 *
 * Timing as in the webgpu-kernel section: `iters` calls back to back, one sync (submit + onSubmittedWorkDone), median per-call
 * time over 5 batches. Determinism is checked on the device: two backward runs must agree bit for bit.
 */
// tfjs's op gradients (tf.grads of the naive composition), as @tensorflow/tfjs users have them: the union package
// registers them on the global engine (tfjs-core's register_all_gradients imports directories, which node's ESM
// loader rejects, so it cannot be imported here under tsx).
import '@tensorflow/tfjs';
import * as tf from '@tensorflow/tfjs-core';
import {mkdirSync, writeFileSync} from 'node:fs';
import * as lib from '../../../src/index.js';
import '../../../kernels/webgpu/register_all_webgpu_kernels.js';
import {
  BackwardDesign, lastBackwardRun, setBackwardDesignForTests, setGradTilesOverrideForTests,
} from '../../../kernels/webgpu/attention_backward.js';
import {chooseGradTiles, GradTiles} from '../../../kernels/webgpu/grad_tiles.js';
import {setupWebGPU} from '../../../test/webgpu_env.js';
import {backwardKernelCall} from '../backward_kernel_call.js';
import {runFolder} from '../machine.js';
import {timeOnQueue} from '../webgpu_timing.js';

const H = 16;
const lines: string[] = [];
const log = (s: string) => {
  console.log(s);
  lines.push(s);
};

const time = (fn: () => tf.Tensor[]) => timeOnQueue(fn, {targetMs: 200, maxIters: 50});

/** Designs (and forced nsplits, null: the rule) each problem is timed under; set by main from the flags. */
let designRuns: Array<[BackwardDesign, number | null]> = [['two-pass', null]];

async function problem(seq: number, d: number, causal: boolean, variants: Array<[string, Partial<Record<'dkdv' | 'dq',
                       GradTiles>>]>) {
  const [q, k, v, dy] = [0, 1, 2, 3].map(() => tf.randomUniform([1, seq, H, d], -1, 1)) as tf.Tensor4D[];
  const fwdMs = await time(() => [lib.flashAttention(q, k, v, {causal}) as tf.Tensor]);
  const call = backwardKernelCall(q, k, v, dy, causal);
  const bwd = call.run;
  // dy passed explicitly: without it tf.grads builds ones(output.shape) as a CPU array and uploads it on every call
  // (measured on the H200: +7.7 ms at seq 1024, +22-30 ms at 4096, +75 ms at d 128 — not attention work).
  const both = () => tf.grads((a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
      lib.flashAttention(a as tf.Tensor4D, b as tf.Tensor4D, c as tf.Tensor4D, {causal}) as tf.Tensor)([q, k, v], dy);
  const tag = `S${seq} D${d} ${causal ? 'causal' : 'dense'}`;
  const limits = (tf.backend() as unknown as {device: GPUDevice}).device.limits;
  const dflt = {dkdv: chooseGradTiles('dkdv', d, limits), dq: chooseGradTiles('dq', d, limits)};
  const fmt = (t: GradTiles) => `${t.resident}x${t.streamed}/T${t.threads}${t.chunk < t.paddedDim ? `/c${t.chunk}` : ''}`;
  for (const [design, nsplits] of designRuns) {
    setBackwardDesignForTests(design, nsplits);
    try {
      const first = await Promise.all(bwd().map((t) => t.data()));
      const ran = lastBackwardRun()!;
      const second = await Promise.all(bwd().map((t) => t.data()));
      const identical = first.every((a, i) => Buffer.from((a as Float32Array).buffer).equals(
          Buffer.from((second[i] as Float32Array).buffer)));
      const bwdMs = await time(bwd);
      const bothMs = await time(both);
      log(`${tag} ${ran.design}${ran.design === 'split-dq' ? ` nsplits ${ran.nsplits}` : ''}: fwd ${fwdMs.toFixed(2)} ms` +
          ` | bwd ${bwdMs.toFixed(2)} ms | fwd+bwd (tf.grads, GPU dy) ${bothMs.toFixed(2)} ms` +
          ` = ${(bothMs / fwdMs).toFixed(2)}x fwd | dkdv ${fmt(dflt.dkdv)} dq ${fmt(dflt.dq)} | bit-identical ${identical}`);
    } finally {
      setBackwardDesignForTests('two-pass');
    }
  }
  for (const [name, o] of variants) {
    setGradTilesOverrideForTests(o);
    try {
      const ms = await time(bwd);
      log(`  ${tag} bwd ${name}: ${ms.toFixed(2)} ms`);
    } catch (e) {
      log(`  ${tag} bwd ${name}: failed ${(e as Error).message.slice(0, 120)}`);
    } finally {
      setGradTilesOverrideForTests(null);
    }
  }
  call.dispose();
  tf.dispose([q, k, v, dy]);
}

export async function main(argv: string[]): Promise<void> {
  const QUICK = argv.includes('--quick');
  const outIndex = argv.indexOf('--out');
  const listFlag = (flag: string) => argv.indexOf(flag) >= 0 ? argv[argv.indexOf(flag) + 1].split(',') : null;
  const designs = (listFlag('--designs') ?? ['two-pass']).map((name) => {
    if (name !== 'split-dq' && name !== 'two-pass') {
      throw new Error(`--designs: expected split-dq and/or two-pass, got ${name}`);
    }
    return name as BackwardDesign;
  });
  designRuns = [...designs.map((x): [BackwardDesign, null] => [x, null]),
                ...(listFlag('--nsplits') ?? []).map((n): [BackwardDesign, number] => {
                  if (!(Number(n) >= 1)) throw new Error(`--nsplits: expected positive integers, got ${n}`);
                  return ['split-dq', Number(n)];
                })];
  const env = await setupWebGPU();
  if (env == null) throw new Error('no WebGPU');
  const OUT_DIR = outIndex >= 0 ? argv[outIndex + 1] :
      process.env.OUT ?? runFolder('.', 'webgpu-backward', env.adapterDescription);
  const limits = env.device.limits;
  log(`adapter ${env.adapterDescription}; workgroup storage ${limits.maxComputeWorkgroupStorageSize}`);
  const t = (resident: number, streamed: number, threads: number, d: number, chunk = 0): GradTiles => {
    const paddedDim = Math.ceil(d / 16) * 16;
    return {resident, streamed, threads, paddedDim, chunk: chunk || paddedDim};
  };
  const v64: Array<[string, Partial<Record<'dkdv' | 'dq', GradTiles>>]> = [
    ['dkdv 48x16/T128', {dkdv: t(48, 16, 128, 64)}], ['dkdv 32x32/T256', {dkdv: t(32, 32, 256, 64)}],
    ['dkdv 32x16/T128', {dkdv: t(32, 16, 128, 64)}], ['dkdv 32x32/T64', {dkdv: t(32, 32, 64, 64)}],
    ['dq 32x32/T128', {dq: t(32, 32, 128, 64)}], ['dq 64x16/T256', {dq: t(64, 16, 256, 64)}],
    ['dq 64x16/T64', {dq: t(64, 16, 64, 64)}], ['dq 32x16/T128', {dq: t(32, 16, 128, 64)}],
    ['dkdv 32x32/T128/ac2', {dkdv: {...t(32, 32, 128, 64), accCols: 2}}],
    ['dkdv 32x32/T64/ac2', {dkdv: {...t(32, 32, 64, 64), accCols: 2}}],
    ['dq 64x16/T128/ac2', {dq: {...t(64, 16, 128, 64), accCols: 2}}],
    ['dq 64x16/T64/ac2', {dq: {...t(64, 16, 64, 64), accCols: 2}}],
  ];
  if (QUICK) {
    await problem(256, 64, false, v64.slice(0, 2));
  } else {
    await problem(4096, 64, false, v64);
    await problem(4096, 64, true, []);
    await problem(1024, 64, false, []);
    await problem(4096, 128, false, [['dkdv 16x16/T128', {dkdv: t(16, 16, 128, 128)}],
                                     ['dq 16x16/T128', {dq: t(16, 16, 128, 128)}]]);
  }
  mkdirSync(OUT_DIR, {recursive: true});
  writeFileSync(`${OUT_DIR}/webgpu_backward.txt`, lines.join('\n') + '\n');
  console.log(`wrote ${OUT_DIR}/webgpu_backward.txt`);
}
