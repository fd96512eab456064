/**
 * The FlashAttention-2 forward pass on WebGPU, shared by FlashAttention, SlidingWindowAttention and SparseAttention
 * (they differ only in their plan, hence in the block schedule the kernel walks).
 *
 * One workgroup per (query tile, head, batch). The query tile is staged once in workgroup memory; then, for every key
 * tile the schedule lists for that (mask head, query tile), K and V tiles are staged, the score tile S = Q·Kᵀ is
 * computed in registers (each thread owns `rowsPerThread` rows × `colsPerThread` strided columns), masked per element
 * only in partial tiles, folded into the running max / sum (online softmax), and P·V is accumulated in registers
 * (each thread owns the same rows × a strided set of vec4 columns of the head dimension). O and lse are written once.
 *
 * Sizes live in uniforms, so one pipeline serves every sequence length; the shader key holds only what changes the
 * code: the tile configuration, the padded head size, vec4 vs scalar global access, and the softcap / keyLengths /
 * layout switches.
 *
 * Tensors larger than one storage binding (maxStorageBufferBindingSize) are split by batch, then by query tiles,
 * binding sub-ranges of the buffers; dispatches larger than maxComputeWorkgroupsPerDimension are split the same way.
 */
import * as tf from '@tensorflow/tfjs-core';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {AttentionPlan} from '../../src/plan/plan.js';
import {unevenWork} from '../../src/plan/schedule.js';
import {
  Binding, bindElements, createOutput, getLimits, MultiOutputProgram, runProgram, UniformType,
} from './program_runner_webgpu.js';
import {getScheduleBuffer} from './schedule_webgpu.js';
import {STABLE_TANH_WGSL} from './wgsl_math_webgpu.js';

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
const FORWARD_CONFIGS: ForwardTileConfig[] = [
  {blockQ: 64, blockK: 48, rowsPerThread: 4, colsPerThread: 3, prefetch: true},
  {blockQ: 48, blockK: 16, rowsPerThread: 3, colsPerThread: 1, prefetch: true},
  {blockQ: 64, blockK: 32, rowsPerThread: 4, colsPerThread: 2, prefetch: true},
  {blockQ: 64, blockK: 32, rowsPerThread: 4, colsPerThread: 4, prefetch: true},
  {blockQ: 32, blockK: 32, rowsPerThread: 4, colsPerThread: 4, prefetch: true},
  {blockQ: 32, blockK: 16, rowsPerThread: 2, colsPerThread: 2, prefetch: true},
  {blockQ: 16, blockK: 16, rowsPerThread: 2, colsPerThread: 2, prefetch: true},
  {blockQ: 16, blockK: 8, rowsPerThread: 2, colsPerThread: 1, prefetch: true},
  {blockQ: 8, blockK: 8, rowsPerThread: 1, colsPerThread: 1, prefetch: true},
];

let configOverride: ForwardTileConfig | null = null;

/** Benchmark/test hook: force a tile configuration (null restores automatic choice). */
export function setForwardConfigOverride(config: ForwardTileConfig | null): void {
  configOverride = config;
}

/** Head size padded so that every thread owns whole vec4s of it. */
function paddedHeadDim(headDim: number, c: ForwardTileConfig): number {
  const groups = c.blockK / c.colsPerThread;
  return Math.ceil(headDim / (4 * groups)) * 4 * groups;
}

/** P shares the K tile's workgroup memory (K is done with once S is computed): vec4s for the larger of the two. */
function keyOrPVec4s(dp4: number, c: ForwardTileConfig): number {
  return Math.max(c.blockK * (dp4 + 1), c.blockQ * c.blockK / 4);
}

function workgroupBytes(headDim: number, c: ForwardTileConfig): number {
  const dp4 = paddedHeadDim(headDim, c) / 4;
  const groups = c.blockK / c.colsPerThread;
  return 16 * (c.blockQ * dp4 + keyOrPVec4s(dp4, c) + c.blockK * dp4) + 4 * c.blockQ * groups + 32;
}

export function chooseForwardConfig(
    backend: WebGPUBackend, headDim: number, layoutBlockSize?: number): ForwardTileConfig {
  const limits = getLimits(backend);
  const fits = (c: ForwardTileConfig) => workgroupBytes(headDim, c) <= limits.maxComputeWorkgroupStorageSize &&
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

const UNIFORMS: Array<[string, UniformType]> = [
  ['seqQ', 'i32'], ['seqK', 'i32'], ['heads', 'i32'], ['kvHeads', 'i32'], ['groupSize', 'i32'], ['headDim', 'i32'],
  ['scale', 'f32'], ['softcap', 'f32'], ['windowLeft', 'i32'], ['windowRight', 'i32'], ['diagonalOffset', 'i32'],
  ['numQueryTiles', 'i32'], ['scheduleHeads', 'i32'], ['rowRunStartOffset', 'i32'], ['rowRunsOffset', 'i32'],
  ['layoutBitsOffset', 'i32'], ['layoutBlockSize', 'i32'], ['layoutQueryBlocks', 'i32'], ['layoutKeyBlocks', 'i32'],
  ['qBase', 'i32'], ['kBase', 'i32'], ['vBase', 'i32'], ['oBase', 'i32'], ['lseBase', 'i32'],
  ['batchStart', 'i32'], ['queryTileStart', 'i32'], ['queryTileCount', 'i32'], ['rowStart', 'i32'], ['negInf', 'f32'],
  ['headsFastest', 'i32'],
];

export class AttentionForwardProgram implements MultiOutputProgram {
  outputNames = ['result', 'lse'];
  outputTypes: string[];
  variableNames = ['q', 'k', 'v', 'keyLengths', 'schedule'];
  variableTypes: string[];
  uniformFields = UNIFORMS;
  shaderKey: string;
  readonly workgroupSize: number;
  private readonly vec4Access: boolean;
  private readonly dp4: number;

  constructor(
      readonly headDim: number, readonly config: ForwardTileConfig, readonly hasSoftcap: boolean,
      readonly hasKeyLengths: boolean, readonly hasLayout: boolean) {
    const c = config;
    this.vec4Access = headDim % 4 === 0;
    this.dp4 = paddedHeadDim(headDim, c) / 4;
    this.workgroupSize = (c.blockQ / c.rowsPerThread) * (c.blockK / c.colsPerThread);
    const elem = this.vec4Access ? 'vec4<f32>' : 'f32';
    this.outputTypes = [elem, 'f32'];
    this.variableTypes = [elem, elem, elem, 'i32', 'i32'];
    this.shaderKey = `AttentionForward:${c.blockQ}x${c.blockK}:${c.rowsPerThread}x${c.colsPerThread}${
        c.prefetch ? 'p' : ''}:d${
        this.dp4 * 4}:${this.vec4Access ? 'v4' : 's'}:${headDim % 4 === 0 ? '' : headDim}:${
        hasSoftcap ? 'cap' : ''}:${hasKeyLengths ? 'len' : ''}:${hasLayout ? 'lay' : ''}`;
  }

  getUserCode(): string {
    const {blockQ, blockK, rowsPerThread: TR, colsPerThread: TC} = this.config;
    const NCG = blockK / TC;
    const DP4 = this.dp4;
    const TD4 = DP4 / NCG;
    const rows = [...Array(TR).keys()], cols = [...Array(TC).keys()], dcols = [...Array(TD4).keys()];
    const v4 = this.vec4Access;

    // Reads element row `row` (a flat [rows, headDim] index into binding `name` from `base`), vec4 column c4.
    const loadRow = (name: string, base: string, rowIndex: string, c4: string) => v4 ?
        `${name}[${base} / 4 + (${rowIndex}) * (uniforms.headDim / 4) + ${c4}]` :
        `vec4<f32>(${[0, 1, 2, 3].map((e) => `loadScalar_${name}(${base} + (${rowIndex}) * uniforms.headDim, ${
            c4} * 4 + ${e})`).join(', ')})`;
    const scalarLoaders = v4 ? '' : ['q', 'k', 'v'].map((name) => `
fn loadScalar_${name}(rowBase: i32, d: i32) -> f32 {
  if (d >= uniforms.headDim) { return 0.0; }
  return ${name}[rowBase + d];
}`).join('\n');

    const sDecl = rows.map((r) => cols.map((c) => `var s${r}_${c} = 0.0;`).join(' ')).join('\n      ');
    const sCompute = `
        ${rows.map((r) => `let qv${r} = Qs[(rowBase + ${r}) * DP4 + d4];`).join('\n        ')}
        ${cols.map((c) => `let kv${c} = KPs[(tx + ${c * NCG}) * KSTRIDE + d4];`).join('\n        ')}
        ${rows.map((r) => cols.map((c) => `s${r}_${c} = fma(qv${r}.x, kv${c}.x, fma(qv${r}.y, kv${c}.y, fma(qv${
        r}.z, kv${c}.z, fma(qv${r}.w, kv${c}.w, s${r}_${c}))));`).join('\n        ')).join('\n        ')}`;
    const finishScore = (r: number, c: number) => `
        {
          ${this.hasSoftcap ? `var x = uniforms.softcap * stableTanh(s${r}_${c} * uniforms.scale / uniforms.softcap) * LOG2E;` :
              `var x = s${r}_${c} * scaleLog2;`}
          if (!full && !isVisible(queryRow0 + ${r}, keyCol0 + ${c * NCG}, keyLength, maskHead)) { x = MASKED; }
          s${r}_${c} = x;
          rowMax${r} = max(rowMax${r}, x);
        }`;
    const oDecl = rows.map((r) => dcols.map((k) => `var o${r}_${k} = vec4<f32>(0.0);`).join(' '))
        .join('\n  ');
    // K/V tile staging: element e = tid + l * THREADS of the [BK, DP4] tile goes through registers kr_l, vr_l.
    const loads = [...Array(Math.ceil(blockK * DP4 / this.workgroupSize)).keys()];
    const regDecl = loads.map((l) => `var kr${l} = vec4<f32>(0.0); var vr${l} = vec4<f32>(0.0);`).join(' ');
    const loadRegs = (tile: string) => loads.map((l) => `
      {
        let e = tid + ${l} * THREADS;
        let j = ${tile} * BK + e / DP4;
        let c4 = e % DP4;
        kr${l} = vec4<f32>(0.0);
        vr${l} = vec4<f32>(0.0);
        if (${tile} >= 0 && e < BK * DP4 && j < seqK && c4 * 4 < uniforms.headDim) {
          let kvRow = (localBatch * seqK + j) * uniforms.kvHeads + kvHead;
          kr${l} = ${loadRow('k', 'uniforms.kBase', 'kvRow', 'c4')};
          vr${l} = ${loadRow('v', 'uniforms.vBase', 'kvRow', 'c4')};
        }
      }`).join('');
    const storeRegs = loads.map((l) => `
      {
        let e = tid + ${l} * THREADS;
        if (e < BK * DP4) {
          KPs[(e / DP4) * KSTRIDE + e % DP4] = kr${l};
          Vs[e] = vr${l};
        }
      }`).join('');

    // o += p·v. In partial tiles a masked key (p == 0) must not contribute even when its v is NaN or Inf
    // (0·NaN = NaN): the guarded form keeps o. Full tiles have no masked keys and run the plain fma.
    const accumulate = (o: string, p: string, v: string, guarded: boolean) => guarded ?
        `${o} = select(fma(vec4<f32>(${p}), ${v}, ${o}), ${o}, ${p} == 0.0);` : `${o} = fma(vec4<f32>(${p}), ${v}, ${o});`;
    const fullOrPartial = (code: (guarded: boolean) => string) => `
      if (full) {${code(false)}
      } else {${code(true)}
      }`;

    return `
const BQ = ${blockQ};
const BK = ${blockK};
const NCG = ${NCG};
const THREADS = ${this.workgroupSize};
const DP4 = ${DP4};
const KSTRIDE = ${DP4 + 1};
const BK4 = ${blockK / 4};
// Masked scores: finite (no inf arithmetic anywhere), far below any real score; their p is forced to 0.
const MASKED = -3.0e38;
// Scores are kept in base 2 (t·log2(e)), so that p = exp2(x − m): one multiply per score fewer than exp(t − m).
const LOG2E = 1.4426950408889634;
const LN2 = 0.6931471805599453;

var<workgroup> Qs: array<vec4<f32>, ${blockQ * DP4}>;
// The K tile, and once S is computed (the barrier after the row-max exchange), the P tile: P·V needs no K.
var<workgroup> KPs: array<vec4<f32>, ${keyOrPVec4s(DP4, this.config)}>;
var<workgroup> Vs: array<vec4<f32>, ${blockK * DP4}>;
var<workgroup> rowPart: array<f32, ${blockQ * NCG}>;
var<workgroup> sharedRange: vec4<i32>;
var<workgroup> sharedRun: vec4<i32>;
${scalarLoaders}

${STABLE_TANH_WGSL}

fn isVisible(i: i32, j: i32, keyLength: i32, maskHead: i32) -> bool {
  if (i >= uniforms.seqQ || j >= keyLength) { return false; }
  let diag = i + uniforms.diagonalOffset;
  if (uniforms.windowLeft >= 0 && j < diag - uniforms.windowLeft) { return false; }
  if (uniforms.windowRight >= 0 && j > diag + uniforms.windowRight) { return false; }
  ${this.hasLayout ? `
  let bs = uniforms.layoutBlockSize;
  let bit = (maskHead * uniforms.layoutQueryBlocks + i / bs) * uniforms.layoutKeyBlocks + j / bs;
  let word = u32(schedule[uniforms.layoutBitsOffset + (bit >> 5u)]);
  if (((word >> u32(bit & 31)) & 1u) == 0u) { return false; }` : ''}
  return true;
}

@compute @workgroup_size(${this.workgroupSize})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let tid = i32(lid);
  let tx = tid % NCG;          // column group: owns key columns tx + NCG * c and head-dim vec4s tx + NCG * k
  let ty = tid / NCG;          // row group: owns query rows ty * ${TR} .. + ${TR - 1}
  let rowBase = ty * ${TR};
  // Last query tiles first: under causal masks they have the most key tiles, and starting the longest workgroups
  // first shortens the tail of the dispatch. Workgroups start in x-fastest order: with uneven work (headsFastest)
  // heads are x, so the longest tiles of every head start first; else a head's tiles stay together (caches).
  let headsFastest = uniforms.headsFastest == 1;
  let queryTile = uniforms.queryTileStart + uniforms.queryTileCount - 1 - i32(select(wg.x, wg.y, headsFastest));
  let h = i32(select(wg.y, wg.x, headsFastest));
  let localBatch = i32(wg.z);
  let batch = uniforms.batchStart + localBatch;
  let kvHead = h / uniforms.groupSize;
  let maskHead = h % uniforms.scheduleHeads;
  let q0 = queryTile * BQ;
  let queryRow0 = q0 + rowBase;
  let seqQ = uniforms.seqQ;
  let seqK = uniforms.seqK;
  let scaleLog2 = uniforms.scale * LOG2E;

  // Stage the query tile (zeros past seqQ and past headDim).
  for (var e = tid; e < BQ * DP4; e += THREADS) {
    let r = e / DP4;
    let c4 = e % DP4;
    let i = q0 + r;
    var val = vec4<f32>(0.0);
    if (i < seqQ && c4 * 4 < uniforms.headDim) {
      val = ${loadRow('q', 'uniforms.qBase', '(localBatch * seqQ + i - uniforms.rowStart) * uniforms.heads + h', 'c4')};
    }
    Qs[e] = val;
  }

  if (tid == 0) {
    let row = maskHead * uniforms.numQueryTiles + queryTile;
    ${this.hasKeyLengths ? 'let kl = min(keyLengths[batch], seqK);' : 'let kl = seqK;'}
    sharedRange = vec4<i32>(schedule[uniforms.rowRunStartOffset + row],
                            schedule[uniforms.rowRunStartOffset + row + 1], kl, 0);
  }
  let rowRange = workgroupUniformLoad(&sharedRange);
  let keyLength = rowRange.z;

  ${rows.map((r) => `var runMax${r} = MASKED; var rowSum${r} = 0.0;`).join('\n  ')}
  ${oDecl}
  ${regDecl}${this.config.prefetch ? `
  {
    var firstTile = -1;
    if (rowRange.x < rowRange.y) { firstTile = schedule[uniforms.rowRunsOffset + 3 * rowRange.x]; }
    ${loadRegs('firstTile')}
    ${storeRegs}
  }` : ''}

  for (var runIndex = rowRange.x; runIndex < rowRange.y; runIndex++) {
    if (tid == 0) {
      let at = uniforms.rowRunsOffset + 3 * runIndex;
      sharedRun = vec4<i32>(schedule[at], schedule[at + 1], schedule[at + 2], 0);
    }
    let tiles = workgroupUniformLoad(&sharedRun);
    for (var keyTile = tiles.x; keyTile < tiles.x + tiles.y; keyTile++) {
      let k0 = keyTile * BK;
      if (k0 >= keyLength) { break; }
      let full = tiles.z == 1 && k0 + BK <= keyLength;

${this.config.prefetch ? `
      // KPs and Vs (stored at the end of the previous iteration) are visible to all.
      workgroupBarrier();
      // Prefetch the next key tile of the schedule into registers; it lands in KPs/Vs after this tile's P·V.
      var nextTile = keyTile + 1;
      if (nextTile >= tiles.x + tiles.y) {
        nextTile = -1;
        if (runIndex + 1 < rowRange.y) { nextTile = schedule[uniforms.rowRunsOffset + 3 * (runIndex + 1)]; }
      }
      ${loadRegs('nextTile')}` : `
      // The previous tile's P·V is done with KPs and Vs.
      workgroupBarrier();
      ${loadRegs('keyTile')}
      ${storeRegs}
      workgroupBarrier();`}

      // S = Q·Kᵀ for this thread's rows × columns.
      ${sDecl}
      for (var d4 = 0; d4 < DP4; d4++) {${sCompute}
      }
      let keyCol0 = k0 + tx;
      ${rows.map((r) => `var rowMax${r} = MASKED;`).join(' ')}
      ${rows.map((r) => cols.map((c) => finishScore(r, c).replace(/keyCol0 \+ 0\b/g, 'keyCol0')).join('')).join('')}
      ${rows.map((r) => `rowPart[(rowBase + ${r}) * NCG + tx] = rowMax${r};`).join('\n      ')}
      workgroupBarrier();

      // Online softmax: the new row max over the NCG threads sharing each row, rescale, and P to KPs (over the K tile).
      ${rows.map((r) => `
      {
        var m = runMax${r};
        for (var g = 0; g < NCG; g++) { m = max(m, rowPart[(rowBase + ${r}) * NCG + g]); }
        let alpha = exp2(runMax${r} - m);
        runMax${r} = m;
        var sum = 0.0;
        ${cols.map((c) => `
        {
          let p = select(exp2(s${r}_${c} - m), 0.0, s${r}_${c} == MASKED);
          let pAt = (rowBase + ${r}) * BK + tx + ${c * NCG};
          KPs[pAt / 4][pAt % 4] = p;
          sum += p;
        }`).join('')}
        rowSum${r} = rowSum${r} * alpha + sum;
        ${dcols.map((k) => `o${r}_${k} *= alpha;`).join(' ')}
      }`).join('')}
      workgroupBarrier();

      // O += P·V: this thread's rows × head-dim vec4s tx + NCG * k.${fullOrPartial((guarded) => `
      for (var c4 = 0; c4 < BK4; c4++) {
        ${rows.map((r) => `let p${r} = KPs[(rowBase + ${r}) * BK4 + c4];`).join('\n        ')}
        ${[0, 1, 2, 3].map((comp) => `
        {
          ${dcols.map((k) => `let vv${k} = Vs[(c4 * 4 + ${comp}) * DP4 + tx + ${k * NCG}];`).join('\n          ')}
          ${rows.map((r) => dcols.map((k) => accumulate(`o${r}_${k}`, `p${r}[${comp}]`, `vv${k}`, guarded))
        .join('\n          ')).join('\n          ')}
        }`).join('')}
      }`)}${this.config.prefetch ? `
      // Everyone is done with KPs and Vs: put the prefetched tile there.
      workgroupBarrier();
      ${storeRegs}` : ''}
    }
  }

  // Row sums are per thread (each over its own columns, all rescaled by the same shared max): add them up.
  workgroupBarrier();
  ${rows.map((r) => `rowPart[(rowBase + ${r}) * NCG + tx] = rowSum${r};`).join('\n  ')}
  workgroupBarrier();
  ${rows.map((r) => `
  {
    let i = queryRow0 + ${r};
    var l = 0.0;
    for (var g = 0; g < NCG; g++) { l += rowPart[(rowBase + ${r}) * NCG + g]; }
    // A row that saw no key has l == 0: output exactly 0 and lse = -Infinity (a NaN l stays NaN in both).
    let inv = select(1.0 / l, 0.0, l == 0.0);
    if (i < seqQ) {
      let outRow = (localBatch * seqQ + i - uniforms.rowStart) * uniforms.heads + h;
      ${dcols.map((k) => `
      {
        let c4 = tx + ${k * NCG};
        ${v4 ? `if (c4 * 4 < uniforms.headDim) { result[uniforms.oBase / 4 + outRow * (uniforms.headDim / 4) + c4] = o${
        r}_${k} * inv; }` : `
        let val = o${r}_${k} * inv;
        for (var e = 0; e < 4; e++) {
          let d = c4 * 4 + e;
          if (d < uniforms.headDim) { result[uniforms.oBase + outRow * uniforms.headDim + d] = val[e]; }
        }`}
      }`).join('')}
      if (tx == 0) {
        lse[uniforms.lseBase + (localBatch * uniforms.heads + h) * seqQ + i] =
            select((runMax${r} + log2(l)) * LN2, uniforms.negInf, l == 0.0);
      }
    }
  }`).join('')}
}
`;
  }
}

const programCache = new Map<string, AttentionForwardProgram>();

function getProgram(plan: AttentionPlan, config: ForwardTileConfig): AttentionForwardProgram {
  const key = `${plan.headDim}|${JSON.stringify(config)}|${plan.softcap > 0}|${plan.hasKeyLengths}|${
      plan.layout != null}`;
  let p = programCache.get(key);
  if (p == null) {
    p = new AttentionForwardProgram(plan.headDim, config, plan.softcap > 0, plan.hasKeyLengths, plan.layout != null);
    programCache.set(key, p);
  }
  return p;
}

/** One dispatch's share of the work: batches [batch0, batch0 + batches), query tiles [tile0, tile0 + tiles). */
interface Chunk {
  batch0: number;
  batches: number;
  tile0: number;
  tiles: number;
}

/**
 * Splits (batch, query tile) work so that every binding fits maxStorageBufferBindingSize and every dispatch fits
 * maxComputeWorkgroupsPerDimension. Whole batches first; a batch too large for one binding is split by query tiles
 * (its K/V must still fit one binding, else this throws).
 */
export function planForwardChunks(
    plan: AttentionPlan, blockQ: number, limits: {maxStorageBufferBindingSize: number;
                                                  maxComputeWorkgroupsPerDimension: number}): Chunk[] {
  const {batch, seqQ, seqK, heads, kvHeads, headDim} = plan;
  const maxBytes = limits.maxStorageBufferBindingSize - 256;  // room for the offset alignment remainder
  const maxDim = limits.maxComputeWorkgroupsPerDimension;
  const numTiles = Math.ceil(seqQ / blockQ);
  const qBatchBytes = seqQ * heads * headDim * 4;
  const kvBatchBytes = seqK * kvHeads * headDim * 4;
  const lseBatchBytes = heads * seqQ * 4;
  if (heads > maxDim) throw new Error(`attention: ${heads} heads exceed maxComputeWorkgroupsPerDimension ${maxDim}`);
  if (kvBatchBytes > maxBytes || lseBatchBytes > maxBytes) {
    throw new Error(`attention: one batch's keys/values (${kvBatchBytes} bytes) exceed this device's ` +
        `maxStorageBufferBindingSize (${limits.maxStorageBufferBindingSize}); use fewer keys or heads`);
  }
  const chunks: Chunk[] = [];
  const perBatch = Math.max(0, Math.min(
      Math.floor(maxBytes / Math.max(qBatchBytes, kvBatchBytes, lseBatchBytes, 1)), maxDim));
  if (perBatch >= 1 && numTiles <= maxDim) {
    for (let b = 0; b < batch; b += perBatch) {
      chunks.push({batch0: b, batches: Math.min(perBatch, batch - b), tile0: 0, tiles: numTiles});
    }
    return chunks;
  }
  const tileBytes = blockQ * heads * headDim * 4;
  const tilesPerChunk = Math.min(Math.floor(maxBytes / tileBytes), maxDim);
  if (tilesPerChunk < 1) throw new Error(`attention: one query tile exceeds maxStorageBufferBindingSize`);
  for (let b = 0; b < batch; b++) {
    for (let t = 0; t < numTiles; t += tilesPerChunk) {
      chunks.push({batch0: b, batches: 1, tile0: t, tiles: Math.min(tilesPerChunk, numTiles - t)});
    }
  }
  return chunks;
}

/** Runs the forward kernel for `plan`: returns [output [B,Sq,H,D], lse [B,H,Sq]] (engine takes ownership). */
export function runAttentionForward(
    backend: WebGPUBackend, plan: AttentionPlan, q: tf.TensorInfo, k: tf.TensorInfo, v: tf.TensorInfo,
    keyLengths: tf.TensorInfo): [tf.TensorInfo, tf.TensorInfo] {
  const {batch, seqQ, seqK, heads, kvHeads, headDim} = plan;
  // Everything that can throw (limits, tile choice) runs before the outputs exist, so a rejection leaks nothing.
  const empty = batch * seqQ * heads * headDim === 0;
  if (!empty && seqK === 0) throw new Error('attention: seqK must be at least 1');
  const config = empty ? null : chooseForwardConfig(backend, headDim, plan.layout?.blockSize);
  const limits = getLimits(backend);
  const chunks = config == null ? [] : planForwardChunks(plan, config.blockQ, limits);
  if (config == null) {
    return [createOutput(backend, [batch, seqQ, heads, headDim]), createOutput(backend, [batch, heads, seqQ])];
  }
  const program = getProgram(plan, config);
  const sched = getScheduleBuffer(backend, plan, config.blockQ, config.blockK);
  const layout = plan.layout;
  const scheduleBinding = bindElements(backend, sched.tensor, 0, sched.tensor.shape[0], 'attention schedule');
  const headsFastest = unevenWork(sched.schedule);
  const output = createOutput(backend, [batch, seqQ, heads, headDim]);
  const lse = createOutput(backend, [batch, heads, seqQ]);

  for (const chunk of chunks) {
    const rowStart = chunk.tile0 * config.blockQ;
    const rowEnd = Math.min(seqQ, (chunk.tile0 + chunk.tiles) * config.blockQ);
    const wholeBatches = chunk.tile0 === 0 && rowEnd === seqQ;
    const qStart = (chunk.batch0 * seqQ + rowStart) * heads * headDim;
    const qCount = wholeBatches ? chunk.batches * seqQ * heads * headDim : (rowEnd - rowStart) * heads * headDim;
    const kvStart = chunk.batch0 * seqK * kvHeads * headDim, kvCount = chunk.batches * seqK * kvHeads * headDim;
    const lseStart = chunk.batch0 * heads * seqQ, lseCount = chunk.batches * heads * seqQ;
    const qb = bindElements(backend, q, qStart, qCount, 'attention q');
    const ob = bindElements(backend, output, qStart, qCount, 'attention output');
    const kb = bindElements(backend, k, kvStart, kvCount, 'attention k');
    const vb = bindElements(backend, v, kvStart, kvCount, 'attention v');
    const lb = bindElements(backend, lse, lseStart, lseCount, 'attention lse');
    const values: Record<string, number> = {
      seqQ, seqK, heads, kvHeads, groupSize: plan.groupSize, headDim, scale: plan.scale, softcap: plan.softcap,
      windowLeft: plan.windowLeft, windowRight: plan.windowRight, diagonalOffset: plan.diagonalOffset,
      numQueryTiles: sched.schedule.numQueryTiles, scheduleHeads: sched.schedule.numHeads,
      rowRunStartOffset: sched.offsets.rowRunStart, rowRunsOffset: sched.offsets.rowRuns,
      layoutBitsOffset: sched.offsets.layoutBits, layoutBlockSize: layout?.blockSize ?? 1,
      layoutQueryBlocks: layout?.numQueryBlocks ?? 1, layoutKeyBlocks: layout?.numKeyBlocks ?? 1,
      qBase: qb.base, kBase: kb.base, vBase: vb.base, oBase: ob.base, lseBase: lb.base,
      batchStart: chunk.batch0, queryTileStart: chunk.tile0, queryTileCount: chunk.tiles,
      rowStart: wholeBatches ? 0 : rowStart,
      negInf: -Infinity,
      headsFastest: headsFastest ? 1 : 0,
    };
    // Without keyLengths the shader never reads its binding: bind the (cached) schedule there instead of the op's
    // per-call tensor of seqK values, whose upload would end the compute pass with a copy between two attention
    // dispatches (a barrier that drained the GPU between back-to-back calls: 3.47 ms per call vs 3.28 ms of kernel
    // time at seq 4096 on the H200).
    const keyLengthsBinding = plan.hasKeyLengths ? keyLengths : scheduleBinding.binding;
    const inputs: Binding[] = [qb.binding, kb.binding, vb.binding, keyLengthsBinding, scheduleBinding.binding];
    runProgram(backend, program, {
      outputs: [ob.binding, lb.binding], inputs,
      uniforms: UNIFORMS.map(([name]) => values[name]),
      dispatch: headsFastest ? [heads, chunk.tiles, chunk.batches] : [chunk.tiles, heads, chunk.batches],
    });
  }
  return [output, lse];
}
