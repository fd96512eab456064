/**
 * The fp32 forward's tile configurations on a real device (issue 19: fp32 forward ≤ 2.8 ms at B1 H16 D64 S4096 on
 * the H200; causal ≤ 0.55× dense): every candidate of kernels/webgpu/forward_tiles.ts (and a few that are not in its
 * list yet) forced with setForwardConfigOverride, timed back to back on the queue (bench/suite/webgpu_timing.ts), and
 * checked against the default configuration's output (max |diff|: tiles change only the order of the sums).
 *
 *   npm run bench:forward-bundle && node .bench-dist/forward_sweep.mjs [--quick]
 */
import * as tf from '@tensorflow/tfjs-core';
import {flashAttention, setupWebGPU} from '../../src/index.js';
import '../../kernels/webgpu/register_all_webgpu_kernels.js';
import {ForwardTileConfig, setForwardConfigOverride} from '../../kernels/webgpu/forward_tiles.js';
import {timeOnQueue} from '../suite/webgpu_timing.js';
import {adapterName, dawnAdapter} from './dawn_device.js';

const quick = process.argv.includes('--quick');
const c = (blockQ: number, blockK: number, rowsPerThread: number, colsPerThread: number, prefetch = true):
    ForwardTileConfig => ({blockQ, blockK, rowsPerThread, colsPerThread, prefetch});

const D64: ForwardTileConfig[] = [
  c(64, 48, 4, 3), c(64, 48, 4, 3, false), c(64, 32, 4, 2), c(64, 32, 4, 4), c(96, 32, 6, 2), c(96, 32, 6, 4),
  c(48, 48, 3, 3), c(32, 64, 2, 4), c(64, 16, 4, 1), c(64, 32, 8, 2), c(128, 16, 8, 1), c(96, 16, 6, 1),
];
const D128: ForwardTileConfig[] = [
  c(48, 16, 3, 1), c(32, 16, 2, 1), c(64, 16, 4, 1), c(32, 32, 4, 4), c(64, 32, 4, 4), c(32, 32, 2, 2),
];

async function main(): Promise<void> {
  const {gpu, adapter} = await dawnAdapter();
  if (adapter == null) throw new Error('no WebGPU adapter');
  console.log(`adapter: ${adapterName(adapter)}`);
  await setupWebGPU({gpu});
  await tf.ready();
  const device = (tf.backend() as unknown as {device: GPUDevice}).device;
  const errors: string[] = [];
  device.onuncapturederror = (e: GPUUncapturedErrorEvent) => errors.push(e.error.message);

  const [B, H] = [1, 16];
  const problems: Array<[number, number, boolean, ForwardTileConfig[]]> = quick ?
      [[256, 64, false, D64.slice(0, 3)]] :
      [[4096, 64, false, D64], [4096, 64, true, D64], [1024, 64, false, D64.slice(0, 6)], [4096, 128, false, D128]];
  for (const [S, D, causal, configs] of problems) {
    const q = tf.randomNormal([B, S, H, D]) as tf.Tensor4D;
    const k = tf.randomNormal([B, S, H, D]) as tf.Tensor4D;
    const v = tf.randomNormal([B, S, H, D]) as tf.Tensor4D;
    setForwardConfigOverride(null);
    const ref = flashAttention(q, k, v, {causal});
    const refData = await ref.data();
    const flops = 4 * S * S * D * H * B * (causal ? 0.5 : 1);
    const run = () => [flashAttention(q, k, v, {causal}) as tf.Tensor];
    const defaultMs = await timeOnQueue(run);
    console.log(`\n== B${B} H${H} S${S} D${D} ${causal ? 'causal' : 'dense'}: default ${defaultMs.toFixed(3)} ms (${
        (flops / defaultMs / 1e9).toFixed(1)} TFLOP/s)`);
    for (const config of configs) {
      const name = `${config.blockQ}x${config.blockK} ${config.rowsPerThread}x${config.colsPerThread}${
          config.prefetch ? ' p' : ''}`;
      try {
        setForwardConfigOverride(config);
        errors.length = 0;
        const out = flashAttention(q, k, v, {causal});
        const d = await out.data();
        out.dispose();
        let diff = 0;
        for (let i = 0; i < d.length; i++) diff = Math.max(diff, Math.abs(d[i] - refData[i]));
        const ms = await timeOnQueue(run);
        console.log(`${name.padEnd(16)} ${ms.toFixed(3)} ms  ${(flops / ms / 1e9).toFixed(1)} TFLOP/s  max|diff| ${
            diff.toExponential(1)}${errors.length > 0 ? `  GPU ERRORS: ${errors.join('; ').slice(0, 200)}` : ''}`);
      } catch (e) {
        console.log(`${name.padEnd(16)} skipped: ${(e as Error).message.slice(0, 120)}`);
      }
    }
    setForwardConfigOverride(null);
    tf.dispose([q, k, v, ref]);
  }
}

main().then(() => process.exit(0), (e) => {
  console.error(e);
  process.exit(1);
});
