/**
 * The forward kernel's tile configurations and how one is chosen for a device (flash_attention_webgpu.ts is the
 * program they configure; attention_forward.ts asks chooseForwardConfig once per call).
 */
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {getLimits} from './program_runner.js';

/** Tile shape of the forward kernel. blockK / colsPerThread threads share a query row. */
export interface ForwardTileConfig {
  blockQ: number;
  blockK: number;
  rowsPerThread: number;
  colsPerThread: number;
  /** Load the next K/V tile into registers while this one is computed (hides global-memory latency). */
  prefetch?: boolean;
}

/**
 * Among the configurations that fit the device's workgroup memory and invocation limits, sparse plans first take
 * those whose tiles never straddle two layout blocks (else a tile is visited, and masked per element, for one on block
 * among off ones: 64×48 tiles over 64-blocks visit ~2× the work at 10% density); then the one that pads headDim
 * least is used, the earlier one on a tie. Measured on an H200 through Dawn/Vulkan (bench/NOTES.md, webgpu): 64×48
 * tiles with 4×3 per thread (256 invocations) are fastest at headDim 64 (48 KiB workgroup memory), 48×16 with 3×1 at
 * headDim 128; 32 KiB devices (lavapipe), headDims that 16 column groups would pad a lot (16, 80, 96) and headDim 256
 * fall through to the smaller tiles.
 */
// Frozen, as the override below: a config object stands for its contents (attention_forward.ts keys on it).
const FORWARD_CONFIGS: readonly ForwardTileConfig[] = [
  {blockQ: 64, blockK: 48, rowsPerThread: 4, colsPerThread: 3, prefetch: true},
  {blockQ: 48, blockK: 16, rowsPerThread: 3, colsPerThread: 1, prefetch: true},
  {blockQ: 64, blockK: 32, rowsPerThread: 4, colsPerThread: 2, prefetch: true},
  {blockQ: 64, blockK: 32, rowsPerThread: 4, colsPerThread: 4, prefetch: true},
  {blockQ: 32, blockK: 32, rowsPerThread: 4, colsPerThread: 4, prefetch: true},
  {blockQ: 32, blockK: 16, rowsPerThread: 2, colsPerThread: 2, prefetch: true},
  {blockQ: 16, blockK: 16, rowsPerThread: 2, colsPerThread: 2, prefetch: true},
  {blockQ: 16, blockK: 8, rowsPerThread: 2, colsPerThread: 1, prefetch: true},
  {blockQ: 8, blockK: 8, rowsPerThread: 1, colsPerThread: 1, prefetch: true},
].map((c) => Object.freeze(c));

let configOverride: ForwardTileConfig | null = null;

/** Benchmark/test hook: force a tile configuration (null restores automatic choice). */
export function setForwardConfigOverride(config: ForwardTileConfig | null): void {
  configOverride = config == null ? null : Object.freeze({...config});
}

/** Head size padded so that every thread owns whole vec4s of it. */
export function paddedHeadDim(headDim: number, c: ForwardTileConfig): number {
  const groups = c.blockK / c.colsPerThread;
  return Math.ceil(headDim / (4 * groups)) * 4 * groups;
}

/** P shares the K tile's workgroup memory (K is done with once S is computed): vec4s for the larger of the two. */
export function keyOrPVec4s(dp4: number, c: ForwardTileConfig): number {
  return Math.max(c.blockK * (dp4 + 1), c.blockQ * c.blockK / 4);
}

function workgroupBytes(headDim: number, c: ForwardTileConfig, dropout: boolean, f16: boolean): number {
  const dp4 = paddedHeadDim(headDim, c) / 4;
  const groups = c.blockK / c.colsPerThread;
  // Q, K/P and V tiles: vec4<f32> (16 bytes), or vec4<f16> (8) in precision 'medium'.
  // With dropout, one u32 of keep bits per 4 keys of the tile (keepTile).
  return (f16 ? 8 : 16) * (c.blockQ * dp4 + keyOrPVec4s(dp4, c) + c.blockK * dp4) + 4 * c.blockQ * groups + 32 +
      (dropout ? c.blockQ * c.blockK : 0);
}

/** f16: the tiles are vec4<f16> (precision 'medium'): half the workgroup memory, so larger tiles may fit. */
export function chooseForwardConfig(
    backend: WebGPUBackend, headDim: number, layoutBlockSize?: number, dropout = false, f16 = false):
    ForwardTileConfig {
  const limits = getLimits(backend);
  const fits = (c: ForwardTileConfig) =>
      workgroupBytes(headDim, c, dropout, f16) <= limits.maxComputeWorkgroupStorageSize &&
      (c.blockQ / c.rowsPerThread) * (c.blockK / c.colsPerThread) <= limits.maxComputeInvocationsPerWorkgroup;
  if (configOverride != null) {
    if (!fits(configOverride)) throw new Error(`forward tile config ${JSON.stringify(configOverride)} does not fit`);
    return configOverride;
  }
  const misaligned = (c: ForwardTileConfig) =>
      layoutBlockSize != null && (layoutBlockSize % c.blockQ !== 0 || layoutBlockSize % c.blockK !== 0);
  const better = (c: ForwardTileConfig, than: ForwardTileConfig) => misaligned(c) !== misaligned(than) ?
      !misaligned(c) : paddedHeadDim(headDim, c) < paddedHeadDim(headDim, than);
  let config: ForwardTileConfig | undefined;
  for (const c of FORWARD_CONFIGS) {
    if (fits(c) && (config == null || better(c, config))) config = c;
  }
  if (config == null) {
    throw new Error(`attention: headDim ${headDim} needs more workgroup memory than this device allows (${
        limits.maxComputeWorkgroupStorageSize} bytes)`);
  }
  return config;
}
