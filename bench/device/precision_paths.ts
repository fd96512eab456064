/**
 * Times each precision path of the webgpu forward side by side on one device (issue 19): fp32 ('highest'),
 * vec4<f16> ('medium' on a device created without subgroup matrices) and the tensor-core path ('medium' and 'high'
 * with f16 subgroup-matrix configurations). B1 H16 S4096, D64 and D128, dense and causal; median ms per call.
 *   npm run bench:paths-bundle && node .bench-dist/precision_paths.mjs     (on a GPU; Dawn toggles are set here)
 */
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import * as lib from '../../src/index.js';
import {timeOnQueue} from '../suite/webgpu_timing.js';
import {DAWN_TOGGLES, dawnGpu} from './dawn_device.js';

const [B, H, S] = [1, 16, 4096];

async function timeAll(label: string, precisions: lib.AttentionPrecision[]): Promise<void> {
  for (const headDim of [64, 128]) {
    const [q, k, v] = [0, 1, 2].map(() => tf.randomNormal([B, S, H, headDim]) as tf.Tensor4D);
    for (const causal of [false, true]) {
      for (const precision of precisions) {
        const ms = await timeOnQueue(() => [lib.flashAttention(q, k, v, {causal, precision}) as tf.Tensor]);
        const flops = 4 * S * S * headDim * H * B * (causal ? 0.5 : 1);
        console.log(`${label.padEnd(22)} D${headDim} ${causal ? 'causal' : 'dense '} ${precision.padEnd(7)} [${
            lib.lastAttentionPath()?.path}]: ${ms.toFixed(3)} ms, ${(flops / ms / 1e9).toFixed(1)} TFLOP/s`);
      }
    }
    tf.dispose([q, k, v]);
  }
}

async function main(): Promise<void> {
  const gpu = dawnGpu([DAWN_TOGGLES]);
  const caps = await lib.setupWebGPU({gpu, features: ['shader-f16', 'subgroups']});
  console.log(`device without subgroup matrices: ${JSON.stringify(caps)}`);
  await timeAll('shader-f16 only', ['highest', 'medium']);
  const all = await lib.setupWebGPU({gpu});
  console.log(`device with every feature: ${JSON.stringify(all)}`);
  await timeAll('f16 subgroup matrices', ['medium', 'high']);
}

main().then(() => process.exit(0), (e) => {
  console.error(e);
  process.exit(1);
});
