/**
 * The FlashAttention-2 forward program on WebGPU, shared by FlashAttention, SlidingWindowAttention and
 * SparseAttention (they differ only in their plan, hence in the block schedule the kernel walks; attention_forward.ts
 * runs it).
 *
 * One workgroup per (query tile, head, batch). The query tile is staged once in workgroup memory; then, for every key
 * tile the schedule lists for that (mask head, query tile), K and V tiles are staged, the score tile S = Q·Kᵀ is
 * computed in registers (each thread owns `rowsPerThread` rows × `colsPerThread` strided columns), masked per element
 * only in partial tiles, folded into the running max / sum (online softmax), and P·V is accumulated in registers
 * (each thread owns the same rows × a strided set of vec4 columns of the head dimension). O and lse are written once.
 *
 * The WGSL is built from one named piece per phase — declarations, visibility, stage Q, stage K/V, scores, online
 * softmax, P·V, write O and lse — assembled by forwardMain; the program class comes last.
 *
 * Sizes live in uniforms, so one pipeline serves every sequence length; the shader key holds only what changes the
 * code: the tile configuration, the padded head size, vec4 vs scalar global access, and the softcap / keyLengths /
 * layout switches.
 *
 * Per-call options (attention_options.ts) are compiled in only when the plan has them: the side buffer is bound in
 * place of the schedule (and keyLengths); bias and ALiBi add scoreTerm after the softcap in every tile; mask and
 * segment ids are tested per element in partial tiles, and the tile summary skips key tiles they rule out (the
 * prefetch takes the next live tile) and makes tiles they fully allow take the unmasked path; dropout draws one
 * Philox call per 4 keys into keepTile and scales P by Z / (1 - rate) for P·V only (the row sum, hence lse, is P's).
 */
import type {AttentionPlan} from '../../src/plan/plan.js';
import {
  alibiHoistedTerm, alibiInlineTerm, alibiPosition, diagonalOffsetExpr, elementMasked, MASKED_TERM, OPTION_UNIFORMS,
  optionBindings, optionFunctions, OptionFlags, optionKey, tileStateFunction,
} from './attention_options.js';
import {ForwardTileConfig, keyOrPVec4s, paddedHeadDim} from './forward_tiles.js';
import {fillKeepTile, keepTileBit, PhiloxMulhi, philoxWgsl} from './philox_wgsl.js';
import type {MultiOutputProgram, UniformType} from './program_runner.js';
import type {ScheduleBuffer} from './schedule_buffers.js';
import {STABLE_TANH_WGSL} from './wgsl_math.js';

/** Uniform fields of the forward program, in the order attention_forward.ts passes their values. */
export const FORWARD_UNIFORMS: Array<[string, UniformType]> = [
  ['seqQ', 'i32'], ['seqK', 'i32'], ['heads', 'i32'], ['kvHeads', 'i32'], ['groupSize', 'i32'], ['headDim', 'i32'],
  ['scale', 'f32'], ['softcap', 'f32'], ['windowLeft', 'i32'], ['windowRight', 'i32'], ['diagonalOffset', 'i32'],
  ['numQueryTiles', 'i32'], ['scheduleHeads', 'i32'], ['rowRunStartOffset', 'i32'], ['rowRunsOffset', 'i32'],
  ['layoutBitsOffset', 'i32'], ['layoutBlockSize', 'i32'], ['layoutQueryBlocks', 'i32'], ['layoutKeyBlocks', 'i32'],
  ['qBase', 'i32'], ['kBase', 'i32'], ['vBase', 'i32'], ['oBase', 'i32'], ['lseBase', 'i32'],
  ['batchStart', 'i32'], ['queryTileStart', 'i32'], ['queryTileCount', 'i32'], ['rowStart', 'i32'], ['negInf', 'f32'],
  ['headsFastest', 'i32'],
];

/**
 * The values of FORWARD_UNIFORMS that follow from the plan and its uploaded schedule (both forward executors); the
 * executor adds the rest (binding bases, the chunk's batches and query tiles, headsFastest).
 */
export function planUniformValues(plan: AttentionPlan, sched: ScheduleBuffer): Record<string, number> {
  const layout = plan.layout;
  return {
    seqQ: plan.seqQ, seqK: plan.seqK, heads: plan.heads, kvHeads: plan.kvHeads, groupSize: plan.groupSize,
    headDim: plan.headDim, scale: plan.scale, softcap: plan.softcap, windowLeft: plan.windowLeft,
    windowRight: plan.windowRight, diagonalOffset: plan.diagonalOffset,
    numQueryTiles: sched.schedule.numQueryTiles, scheduleHeads: sched.schedule.numHeads,
    rowRunStartOffset: sched.offsets.rowRunStart, rowRunsOffset: sched.offsets.rowRuns,
    layoutBitsOffset: sched.offsets.layoutBits, layoutBlockSize: layout?.blockSize ?? 1,
    layoutQueryBlocks: layout?.numQueryBlocks ?? 1, layoutKeyBlocks: layout?.numKeyBlocks ?? 1,
    negInf: -Infinity,
  };
}

/**
 * How the forward computes its per-element options. 'prefetch' / 'hoisted' / 'hd' are the defaults; the others are
 * the first session's code, kept selectable so that one benchmark process times both (bench/device/options_sweep.ts).
 *   bias   'inline': each score loads its bias element in the score loop (scoreTerm), the load's latency exposed;
 *          'prefetch': each thread loads the bias elements it owns in the next key tile into registers right after
 *          its scores, so the loads overlap softmax, P·V and the next Q·Kᵀ (a warp reads rows of 16 contiguous
 *          floats: whole 32-byte sectors). No workgroup memory (the 64×48 D64 tiles leave 3 KiB of 48 KiB).
 *   alibi  'inline': scoreTerm per element (integer abs, convert, slope load); 'hoisted': the slope (· log2 e) once,
 *          f32 row positions i + offset once, column positions once per tile: per element a subtract and an fma.
 *   philox the mulhi of philox_wgsl.ts.
 */
export interface ForwardOptionCode {
  bias: 'inline' | 'prefetch';
  alibi: 'inline' | 'hoisted';
  philox: PhiloxMulhi;
}

export const DEFAULT_OPTION_CODE: ForwardOptionCode = {bias: 'prefetch', alibi: 'hoisted', philox: 'hd'};
let optionCode: ForwardOptionCode = DEFAULT_OPTION_CODE;

/** Benchmark hook: the option code programs built from now on compile (null: the defaults). */
export function setForwardOptionCodeForBench(code: ForwardOptionCode | null): void {
  optionCode = code ?? DEFAULT_OPTION_CODE;
}

/** Part of the program key: '' for the defaults. */
export function forwardOptionCodeKey(): string {
  return optionCode === DEFAULT_OPTION_CODE ? '' : `:${optionCode.bias}-${optionCode.alibi}-${optionCode.philox}`;
}

/** What every phase builder needs: the tile configuration and the sizes and switches derived from it. */
interface ForwardShape {
  config: ForwardTileConfig;
  /** Query rows × key columns each thread owns. */
  TR: number;
  TC: number;
  /** Column groups: threads sharing a query row. */
  NCG: number;
  /** Padded head size in vec4s, and the vec4s of it each thread accumulates. */
  DP4: number;
  TD4: number;
  threads: number;
  rows: number[];
  cols: number[];
  dcols: number[];
  /** vec4 global loads and stores (headDim % 4 == 0), else scalar ones. */
  v4: boolean;
  hasSoftcap: boolean;
  hasKeyLengths: boolean;
  hasLayout: boolean;
  /** Per-call options (attention_options.ts), or null: then the code is exactly the plain kernel's. */
  opts: OptionFlags | null;
  /**
   * precision 'medium': the Q, K, V and P tiles are vec4<f16> in workgroup memory (half the bytes), each product of
   * two f16 operands is exact in f32 and accumulates in f32; softmax statistics stay f32. False: all f32.
   */
  f16: boolean;
  code: ForwardOptionCode;
}

/** WGSL type of a workgroup tile vec4 (Qs, KPs, Vs) and of the registers that stage K/V. */
function tileVec4(s: ForwardShape): string {
  return s.f16 ? 'vec4<f16>' : 'vec4<f32>';
}

/** An f32 vec4 expression as a tile element (f16 tiles round it there). */
function toTile(s: ForwardShape, f32Value: string): string {
  return s.f16 ? `vec4<f16>(${f32Value})` : f32Value;
}

/** A tile element as f32 operands for the f32 accumulation (exact: an f16·f16 product fits an f32 significand). */
function fromTile(s: ForwardShape, tileValue: string): string {
  return s.f16 ? `vec4<f32>(${tileValue})` : tileValue;
}

/** Reads element row `rowIndex` (a flat [rows, headDim] index into binding `name` from `base`), vec4 column c4. */
function loadRow(s: ForwardShape, name: string, base: string, rowIndex: string, c4: string): string {
  return s.v4 ?
      `${name}[${base} / 4 + (${rowIndex}) * (uniforms.headDim / 4) + ${c4}]` :
      `vec4<f32>(${[0, 1, 2, 3].map((e) => `loadScalar_${name}(${base} + (${rowIndex}) * uniforms.headDim, ${
          c4} * 4 + ${e})`).join(', ')})`;
}

/** Constants, workgroup memory and the scalar loaders (headDim not a multiple of 4). */
function forwardDeclarations(s: ForwardShape): string {
  const {blockQ, blockK} = s.config;
  const scalarLoaders = s.v4 ? '' : ['q', 'k', 'v'].map((name) => `
fn loadScalar_${name}(rowBase: i32, d: i32) -> f32 {
  if (d >= uniforms.headDim) { return 0.0; }
  return ${name}[rowBase + d];
}`).join('\n');
  return `
const BQ = ${blockQ};
const BK = ${blockK};
const NCG = ${s.NCG};
const THREADS = ${s.threads};
const DP4 = ${s.DP4};
const KSTRIDE = ${s.DP4 + 1};
const BK4 = ${blockK / 4};
// Masked scores: finite (no inf arithmetic anywhere), far below any real score; their p is forced to 0.
const MASKED = -3.0e38;
// Scores are kept in base 2 (t·log2(e)), so that p = exp2(x − m): one multiply per score fewer than exp(t − m).
const LOG2E = 1.4426950408889634;
const LN2 = 0.6931471805599453;

var<workgroup> Qs: array<${tileVec4(s)}, ${blockQ * s.DP4}>;
// The K tile, and once S is computed (the barrier after the row-max exchange), the P tile: P·V needs no K.
var<workgroup> KPs: array<${tileVec4(s)}, ${keyOrPVec4s(s.DP4, s.config)}>;
var<workgroup> Vs: array<${tileVec4(s)}, ${blockK * s.DP4}>;
var<workgroup> rowPart: array<f32, ${blockQ * s.NCG}>;
var<workgroup> sharedRange: vec4<i32>;
var<workgroup> sharedRun: vec4<i32>;
${scalarLoaders}

${STABLE_TANH_WGSL}${s.opts == null ? '' : optionFunctions(s.opts, 'schedule')}${
    s.opts != null && elementMasked(s.opts) ? tileStateFunction('schedule', blockQ) + NEXT_LIVE_TILE : ''}${s.opts?.dropout ? `
// Keep bits of the tile, 4 keys per entry: one Philox call per 4 keys, shared by the threads owning those keys.
var<workgroup> keepTile: array<u32, ${blockQ * blockK / 4}>;
${philoxWgsl(s.code.philox)}` : ''}
`;
}

/**
 * With a tile summary: the first scheduled key tile at or after `startTile` of run `startRun` (then the following
 * runs) that the summary does not rule out, or -1.
 */
/**
 * WGSL: `var nextTile` = the key tile after keyTile in this query tile's schedule (the next run's first tile once
 * this run ends), -1 after the last. Needs keyTile, tiles (this run), runIndex, rowRange and schedule in scope; the
 * prefetching kernels (this one, the staged tensor-core kernel) share it.
 */
export const NEXT_SCHEDULED_TILE = `var nextTile = keyTile + 1;
      if (nextTile >= tiles.x + tiles.y) {
        nextTile = -1;
        if (runIndex + 1 < rowRange.y) { nextTile = schedule[uniforms.rowRunsOffset + 3 * (runIndex + 1)]; }
      }`;

const NEXT_LIVE_TILE = `
fn nextLiveTile(b: i32, h: i32, queryTile: i32, startRun: i32, startTile: i32, runEnd: i32) -> i32 {
  var r = startRun;
  var t = startTile;
  loop {
    if (r >= runEnd) { return -1; }
    let first = schedule[uniforms.rowRunsOffset + 3 * r];
    let last = first + schedule[uniforms.rowRunsOffset + 3 * r + 1];
    t = max(t, first);
    if (t >= last) {
      r++;
      continue;
    }
    if (tileState(b, h, queryTile, t) != 0) { return t; }
    t++;
  }
}
`;

/**
 * isVisible(i, j): the per-element mask of partial tiles (keyLengths, window, layout bit). Also the tensor-core
 * forward's (flash_attention_tc_webgpu.ts), which declares the same uniforms and `schedule` binding.
 */
export function visibilityFunction(s: Pick<ForwardShape, 'opts' | 'hasLayout'>): string {
  return `
fn isVisible(i: i32, j: i32, keyLength: i32, maskHead: i32) -> bool {
  if (i >= uniforms.seqQ || j >= keyLength) { return false; }
  let diag = i + ${diagonalOffsetExpr(s.opts)};
  if (uniforms.windowLeft >= 0 && j < diag - uniforms.windowLeft) { return false; }
  if (uniforms.windowRight >= 0 && j > diag + uniforms.windowRight) { return false; }
  ${s.hasLayout ? `
  let bs = uniforms.layoutBlockSize;
  let bit = (maskHead * uniforms.layoutQueryBlocks + i / bs) * uniforms.layoutKeyBlocks + j / bs;
  let word = u32(schedule[uniforms.layoutBitsOffset + (bit >> 5u)]);
  if (((word >> u32(bit & 31)) & 1u) == 0u) { return false; }` : ''}${s.opts != null && elementMasked(s.opts) ? `
  if (!optionVisible(i, j)) { return false; }` : ''}
  return true;
}
`;
}

/**
 * WGSL: thread 0 reads this query tile's schedule row (its runs are rowRange.x .. rowRange.y - 1) and the batch's key
 * length (from the side buffer with options, else keyLengths or seqK) into sharedRange; then every thread holds
 * rowRange and keyLength. Needs tid, maskHead, queryTile, batch and seqK in scope; the tensor-core forward shares it.
 */
export function scheduleRowRange(s: Pick<ForwardShape, 'opts' | 'hasKeyLengths'>): string {
  return `
  if (tid == 0) {
    let scheduleRow = maskHead * uniforms.numQueryTiles + queryTile;
    ${s.opts != null ? 'let kl = schedule[uniforms.sideBatch + 2 * batch];' :
        s.hasKeyLengths ? 'let kl = min(keyLengths[batch], seqK);' : 'let kl = seqK;'}
    sharedRange = vec4<i32>(schedule[uniforms.rowRunStartOffset + scheduleRow],
                            schedule[uniforms.rowRunStartOffset + scheduleRow + 1], kl, 0);
  }
  let rowRange = workgroupUniformLoad(&sharedRange);
  let keyLength = rowRange.z;`;
}

/**
 * WGSL: opens the loop over this query tile's scheduled runs and, inside it, the loop over the run's key tiles (the
 * caller closes both): k0 is the tile's first key, a tile at or past keyLength ends the run, and `full` says the tile
 * needs no per-element mask. `summarized` (a tile summary of the mask and segment ids, tileStateFunction): tiles it
 * rules out are skipped. Shared with the tensor-core forward.
 */
export function keyTileLoops(summarized: boolean): string {
  return `
  for (var runIndex = rowRange.x; runIndex < rowRange.y; runIndex++) {
    if (tid == 0) {
      let at = uniforms.rowRunsOffset + 3 * runIndex;
      sharedRun = vec4<i32>(schedule[at], schedule[at + 1], schedule[at + 2], 0);
    }
    let tiles = workgroupUniformLoad(&sharedRun);
    for (var keyTile = tiles.x; keyTile < tiles.x + tiles.y; keyTile++) {
      let k0 = keyTile * BK;
      if (k0 >= keyLength) { break; }${summarized ? `
      // The tile summary (made on the device from the mask and segment ids): skip tiles they rule out entirely, and
      // take the unmasked path where they hide nothing.
      let state = tileState(batch, h, queryTile, keyTile);
      if (state == 0) { continue; }
      let full = tiles.z == 1 && k0 + BK <= keyLength && state == 2;` : `
      let full = tiles.z == 1 && k0 + BK <= keyLength;`}`;
}

/** Stage tiles, Q: the query tile into Qs, once per workgroup (zeros past seqQ and past headDim). */
function stageQueryTile(s: ForwardShape): string {
  return `
  // Stage the query tile (zeros past seqQ and past headDim).
  for (var e = tid; e < BQ * DP4; e += THREADS) {
    let r = e / DP4;
    let c4 = e % DP4;
    let i = q0 + r;
    var val = vec4<f32>(0.0);
    if (i < seqQ && c4 * 4 < uniforms.headDim) {
      val = ${loadRow(s, 'q', 'uniforms.qBase', '(localBatch * seqQ + i - uniforms.rowStart) * uniforms.heads + h', 'c4')};
    }
    Qs[e] = ${toTile(s, 'val')};
  }
`;
}

/**
 * Stage tiles, K and V: element e = tid + l * THREADS of the [BK, DP4] tile goes through registers kr_l, vr_l.
 * `load(tile)` fills the registers from global memory (tile -1: zeros), `store` moves them to KPs / Vs.
 */
function keyValueStaging(s: ForwardShape): {declare: string; load: (tile: string) => string; store: string} {
  const loads = [...Array(Math.ceil(s.config.blockK * s.DP4 / s.threads)).keys()];
  return {
    declare: loads.map((l) => `var kr${l} = ${tileVec4(s)}(0.0); var vr${l} = ${tileVec4(s)}(0.0);`).join(' '),
    load: (tile: string) => loads.map((l) => `
      {
        let e = tid + ${l} * THREADS;
        let j = ${tile} * BK + e / DP4;
        let c4 = e % DP4;
        kr${l} = ${tileVec4(s)}(0.0);
        vr${l} = ${tileVec4(s)}(0.0);
        if (${tile} >= 0 && e < BK * DP4 && j < seqK && c4 * 4 < uniforms.headDim) {
          let kvRow = (localBatch * seqK + j) * uniforms.kvHeads + kvHead;
          kr${l} = ${toTile(s, loadRow(s, 'k', 'uniforms.kBase', 'kvRow', 'c4'))};
          vr${l} = ${toTile(s, loadRow(s, 'v', 'uniforms.vBase', 'kvRow', 'c4'))};
        }
      }`).join(''),
    store: loads.map((l) => `
      {
        let e = tid + ${l} * THREADS;
        if (e < BK * DP4) {
          KPs[(e / DP4) * KSTRIDE + e % DP4] = kr${l};
          Vs[e] = vr${l};
        }
      }`).join(''),
  };
}

/**
 * Scores: S = Q·Kᵀ for this thread's rows × columns, scaled (and softcapped) into base 2, masked per element in
 * partial tiles, with each row's max over the thread's columns published to rowPart.
 */
function scoreTile(s: ForwardShape): string {
  const {rows, cols, NCG} = s;
  const sDecl = rows.map((r) => cols.map((c) => `var s${r}_${c} = 0.0;`).join(' ')).join('\n      ');
  const sCompute = `
        ${rows.map((r) => `let qv${r} = ${fromTile(s, `Qs[(rowBase + ${r}) * DP4 + d4]`)};`).join('\n        ')}
        ${cols.map((c) => `let kv${c} = ${fromTile(s, `KPs[(tx + ${c * NCG}) * KSTRIDE + d4]`)};`).join('\n        ')}
        ${rows.map((r) => cols.map((c) => `s${r}_${c} = fma(qv${r}.x, kv${c}.x, fma(qv${r}.y, kv${c}.y, fma(qv${
        r}.z, kv${c}.z, fma(qv${r}.w, kv${c}.w, s${r}_${c}))));`).join('\n        ')).join('\n        ')}`;
  const bias = s.opts?.bias === true, alibi = s.opts?.alibi === true;
  // The bias decides: 'inline' takes both terms from scoreTerm; 'prefetch' takes ALiBi as s.code.alibi says.
  const inlineTerm = bias ? s.code.bias === 'inline' : alibi && s.code.alibi === 'inline';
  const capped = (r: number, c: number) =>
      `uniforms.softcap * stableTanh(s${r}_${c} * uniforms.scale / uniforms.softcap)`;
  // The score in base 2 before any term.
  const plain = (r: number, c: number) => s.hasSoftcap ? `${capped(r, c)} * LOG2E` : `s${r}_${c} * scaleLog2`;
  // With a bias or ALiBi the term is added after the softcap, in natural units; -Infinity bias masks.
  const withTerm = (r: number, c: number) => `
          let term = scoreTerm(queryRow0 + ${r}, keyCol0 + ${c * NCG});
          var x = (${s.hasSoftcap ? capped(r, c) : `s${r}_${c} * uniforms.scale`} + term) * LOG2E;
          if (term <= ${MASKED_TERM}) { x = MASKED; }`;
  // Hoisted ALiBi: -slope · |i + offset - j| from f32 positions (exact integers below 2^24).
  const alibiNat = (r: number, c: number) => alibiHoistedTerm('negSlope', `alibiRow${r}`, `alibiCol${c}`);
  // The term from prefetched bias registers (bias{r}_{c}: 0 outside the sequences, where scores are masked or their
  // rows never written) and the hoisted or inline ALiBi term; masking exactly as scoreTerm's.
  const withBiasRegister = (r: number, c: number) => `
          let term = termWithBias(bias${r}_${c}, ${!alibi ? '0.0' : s.code.alibi === 'hoisted' ? alibiNat(r, c) :
              alibiInlineTerm(`queryRow0 + ${r}`, `keyCol0 + ${c * NCG}`, diagonalOffsetExpr(s.opts))});
          var x = fma(term, LOG2E, ${plain(r, c)});
          if (term <= ${MASKED_TERM}) { x = MASKED; }`;
  // Hoisted ALiBi alone: one subtract and one fma. Below MASKED (a huge slope's -Infinity) is MASKED, as the inline
  // term's compare with MASKED_TERM made it; a NaN score stays NaN (max() may drop it).
  const withAlibi = (r: number, c: number) => `
          var x = fma(negSlopeLog2, abs(alibiRow${r} - alibiCol${c}), ${plain(r, c)});
          if (x < MASKED) { x = MASKED; }`;
  const finishScore = (r: number, c: number) => `
        {
          ${inlineTerm ? withTerm(r, c) : bias ? withBiasRegister(r, c) : alibi ? withAlibi(r, c) :
              `var x = ${plain(r, c)};`}
          if (!full && !isVisible(queryRow0 + ${r}, keyCol0 + ${c * NCG}, keyLength, maskHead)) { x = MASKED; }
          s${r}_${c} = x;
          rowMax${r} = max(rowMax${r}, x);
        }`;
  return `
      // S = Q·Kᵀ for this thread's rows × columns.
      ${sDecl}
      for (var d4 = 0; d4 < DP4; d4++) {${sCompute}
      }
      let keyCol0 = k0 + tx;${alibi && s.code.alibi === 'hoisted' && !inlineTerm ? `
      ${s.cols.map((c) => `let alibiCol${c} = ${alibiPosition(`keyCol0 + ${c * NCG}`)};`).join(' ')}` : ''}
      ${rows.map((r) => `var rowMax${r} = MASKED;`).join(' ')}
      ${rows.map((r) => cols.map((c) => finishScore(r, c).replace(/keyCol0 \+ 0\b/g, 'keyCol0')).join('')).join('')}
      ${rows.map((r) => `rowPart[(rowBase + ${r}) * NCG + tx] = rowMax${r};`).join('\n      ')}${
      bias && !inlineTerm && s.config.prefetch ? `
      // This tile's bias registers are used: load the next tile's (tile -1: none).${loadBias(s, 'nextTile')}` : ''}
      workgroupBarrier();
`;
}

/**
 * The bias elements this thread owns in key tile `tile` (rows queryRow0 + r, columns tile·BK + tx + NCG·c) into
 * registers bias{r}_{c}; 0 outside the sequences. Branch-free per element (clamped index), one branch per tile.
 */
function loadBias(s: ForwardShape, tile: string): string {
  return `
      if (${tile} >= 0) {
        let biasCol0 = ${tile} * BK + tx;
        ${s.rows.map((r) => s.cols.map((c) => `
        {
          let inside = queryRow0 + ${r} < seqQ && biasCol0 + ${c * s.NCG} < seqK;
          bias${r}_${c} = select(0.0, bias[select(0, biasRow${r} + biasCol0 + ${c * s.NCG}, inside)], inside);
        }`).join('')).join('')}
      }`;
}

/** Online softmax: the new row max over the NCG threads sharing each row, rescale, and P to KPs (over the K tile). */
function onlineSoftmax(s: ForwardShape): string {
  const {rows, cols, dcols, NCG} = s;
  return `
      // Online softmax: the new row max over the NCG threads sharing each row, rescale, and P to KPs (over the K tile).${
      s.opts?.dropout && NCG % 4 === 0 ? `
      // Keys tx + NCG·c all sit at bit tx % 4 of their keep word (NCG % 4 == 0): one mask for all of them.
      let keepCol = tx / 4;
      let keepBit = 1u << u32(tx % 4);` : ''}
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
          ${s.opts?.dropout ? `// Dropout: P·V takes P ∘ Z / (1 - rate); the row sum (hence lse) takes P.
          ${NCG % 4 === 0 ? `let kept = (keepTile[(rowBase + ${r}) * BK4 + keepCol + ${c * NCG / 4}] & keepBit) != 0u;` :
          `let kept = ${keepTileBit(`rowBase + ${r}`, 'BK4', `tx + ${c * NCG}`)};`}
          ${storeP(s, 'select(0.0, p * uniforms.keepScale, kept)', 'select(0.0, p, kept)')}` : storeP(s, 'p', 'p')}
          sum += p;
        }`).join('')}
        rowSum${r} = rowSum${r} * alpha + sum;
        ${dcols.map((k) => `o${r}_${k} *= alpha;`).join(' ')}
      }`).join('')}
      workgroupBarrier();
`;
}

/**
 * P into the P tile. f16 tiles take P (≤ 1) unscaled, with dropout's 1 / (1 - rate) applied to O at the end instead
 * (writeOutputs): P / (1 - rate) overflows f16 once rate > 1 - 2⁻¹⁶.
 */
function storeP(s: ForwardShape, f32P: string, f16P: string): string {
  return s.f16 ? `KPs[pAt / 4][pAt % 4] = f16(${f16P});` : `KPs[pAt / 4][pAt % 4] = ${f32P};`;
}

/**
 * P·V: O += P·V for this thread's rows × head-dim vec4s tx + NCG * k. In partial tiles a masked key (p == 0) must
 * not contribute even when its v is NaN or Inf (0·NaN = NaN): the guarded form keeps o. Full tiles have no masked
 * keys and run the plain fma.
 */
function accumulatePV(s: ForwardShape): string {
  const {rows, dcols, NCG} = s;
  const accumulate = (o: string, p: string, v: string, guarded: boolean) => guarded ?
      `${o} = select(fma(vec4<f32>(${p}), ${v}, ${o}), ${o}, ${p} == 0.0);` : `${o} = fma(vec4<f32>(${p}), ${v}, ${o});`;
  const pv = (guarded: boolean) => `
      for (var c4 = 0; c4 < BK4; c4++) {
        ${rows.map((r) => `let p${r} = ${fromTile(s, `KPs[(rowBase + ${r}) * BK4 + c4]`)};`).join('\n        ')}
        ${[0, 1, 2, 3].map((comp) => `
        {
          ${dcols.map((k) => `let vv${k} = ${fromTile(s, `Vs[(c4 * 4 + ${comp}) * DP4 + tx + ${k * NCG}]`)};`)
        .join('\n          ')}
          ${rows.map((r) => dcols.map((k) => accumulate(`o${r}_${k}`, `p${r}[${comp}]`, `vv${k}`, guarded))
        .join('\n          ')).join('\n          ')}
        }`).join('')}
      }`;
  return `
      // O += P·V: this thread's rows × head-dim vec4s tx + NCG * k.
      if (full) {${pv(false)}
      } else {${pv(true)}
      }`;
}

/** Write O and lse: the row sums of the NCG threads added up, O = acc / l, lse = m + log(l) (empty rows: 0, -inf). */
function writeOutputs(s: ForwardShape): string {
  const {rows, dcols, NCG, v4} = s;
  return `
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
    let inv = select(${s.f16 && s.opts?.dropout ? 'uniforms.keepScale' : '1.0'} / l, 0.0, l == 0.0);
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
`;
}

/** Whether the bias comes from per-thread registers (loadBias) rather than scoreTerm. */
function biasPrefetched(s: ForwardShape): boolean {
  return s.opts?.bias === true && s.code.bias === 'prefetch';
}

/** Per-thread option state set once per workgroup: bias registers and row starts, the hoisted ALiBi constants. */
function optionRegisters(s: ForwardShape): string {
  const hoistAlibi = s.opts?.alibi === true && s.code.alibi === 'hoisted' && !(s.opts.bias && s.code.bias === 'inline');
  return `${biasPrefetched(s) ? `
  ${s.rows.map((r) => `let biasRow${r} = biasRowStart(queryRow0 + ${r});`).join(' ')}
  ${s.rows.map((r) => s.cols.map((c) => `var bias${r}_${c} = 0.0;`).join(' ')).join('\n  ')}` : ''}${hoistAlibi ? `
  let negSlope = -alibiSlope();
  let negSlopeLog2 = negSlope * LOG2E;
  ${s.rows.map((r) => `let alibiRow${r} = ${alibiPosition(`queryRow0 + ${r} + ${diagonalOffsetExpr(s.opts)}`)};`)
      .join(' ')}` : ''}`;
}

/** The entry point: workgroup coordinates, stage Q, then per scheduled key tile stage K/V, scores, softmax, P·V. */
function forwardMain(s: ForwardShape): string {
  const {TR, rows, dcols} = s;
  const prefetch = s.config.prefetch;
  const kv = keyValueStaging(s);
  // With a tile summary the prefetch takes the next tile the summary does not rule out (nextLiveTile).
  const summarized = s.opts != null && elementMasked(s.opts);
  const oDecl = rows.map((r) => dcols.map((k) => `var o${r}_${k} = vec4<f32>(0.0);`).join(' ')).join('\n  ');
  return `
@compute @workgroup_size(${s.threads})
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
  let scaleLog2 = uniforms.scale * LOG2E;${s.opts != null ? `
  optBatch = batch;
  optHead = h;` : ''}${optionRegisters(s)}
${stageQueryTile(s)}${scheduleRowRange(s)}

  ${rows.map((r) => `var runMax${r} = MASKED; var rowSum${r} = 0.0;`).join('\n  ')}
  ${oDecl}
  ${kv.declare}${prefetch ? `
  {
    ${summarized ? 'let firstTile = nextLiveTile(batch, h, queryTile, rowRange.x, 0, rowRange.y);' : `var firstTile = -1;
    if (rowRange.x < rowRange.y) { firstTile = schedule[uniforms.rowRunsOffset + 3 * rowRange.x]; }`}
    ${kv.load('firstTile')}
    ${kv.store}${biasPrefetched(s) ? loadBias(s, 'firstTile') : ''}
  }` : ''}
${keyTileLoops(summarized)}

${prefetch ? `
      // KPs and Vs (stored at the end of the previous iteration) are visible to all.
      workgroupBarrier();
      // Prefetch the next key tile of the schedule into registers; it lands in KPs/Vs after this tile's P·V.
      ${summarized ? 'let nextTile = nextLiveTile(batch, h, queryTile, runIndex, keyTile + 1, rowRange.y);' :
      NEXT_SCHEDULED_TILE}
      ${kv.load('nextTile')}` : `
      // The previous tile's P·V is done with KPs and Vs.
      workgroupBarrier();
      ${kv.load('keyTile')}
      ${kv.store}${biasPrefetched(s) ? loadBias(s, 'keyTile') : ''}
      workgroupBarrier();`}
${s.opts?.dropout ? `
      // Keep bits of this tile (read after the barrier that ends the scores; the previous tile's reads ended at the
      // barrier after its online softmax).${fillKeepTile('BQ * BK4', 'BK4', 'THREADS', 'batch')}` : ''}${scoreTile(s)}${onlineSoftmax(s)}${accumulatePV(s)}${prefetch ? `
      // Everyone is done with KPs and Vs: put the prefetched tile there.
      workgroupBarrier();
      ${kv.store}` : ''}
    }
  }
${writeOutputs(s)}}
`;
}

export class AttentionForwardProgram implements MultiOutputProgram {
  outputNames = ['result', 'lse'];
  outputTypes: string[];
  variableNames = ['q', 'k', 'v', 'keyLengths', 'schedule'];
  variableTypes: string[];
  uniformFields = FORWARD_UNIFORMS;
  shaderKey: string;
  enables?: string[];
  readonly workgroupSize: number;
  private readonly shape: ForwardShape;

  /** f16: precision 'medium' on a device with shader-f16 (ForwardShape.f16). */
  constructor(
      readonly headDim: number, readonly config: ForwardTileConfig, readonly hasSoftcap: boolean,
      readonly hasKeyLengths: boolean, readonly hasLayout: boolean, readonly opts: OptionFlags | null = null,
      readonly f16 = false) {
    const c = config;
    const vec4Access = headDim % 4 === 0;
    const dp4 = paddedHeadDim(headDim, c) / 4;
    this.workgroupSize = (c.blockQ / c.rowsPerThread) * (c.blockK / c.colsPerThread);
    const elem = vec4Access ? 'vec4<f32>' : 'f32';
    this.outputTypes = [elem, 'f32'];
    this.variableTypes = [elem, elem, elem, 'i32', 'i32'];
    if (opts != null) {
      // keyLengths (and everything small) come in the side buffer, bound as `schedule`: 8 bindings at most.
      const extra = optionBindings(opts);
      this.variableNames = ['q', 'k', 'v', 'schedule', ...extra.map(([n]) => n)];
      this.variableTypes = [elem, elem, elem, 'i32', ...extra.map(([, t]) => t)];
      this.uniformFields = [...FORWARD_UNIFORMS, ...OPTION_UNIFORMS];
    }
    this.shaderKey = `AttentionForward:${c.blockQ}x${c.blockK}:${c.rowsPerThread}x${c.colsPerThread}${
        c.prefetch ? 'p' : ''}:d${
        dp4 * 4}:${vec4Access ? 'v4' : 's'}:${headDim % 4 === 0 ? '' : headDim}:${
        hasSoftcap ? 'cap' : ''}:${hasKeyLengths ? 'len' : ''}:${hasLayout ? 'lay' : ''}${optionKey(opts)}${
        opts != null ? forwardOptionCodeKey() : ''}${f16 ? ':f16' : ''}`;
    if (f16) this.enables = ['f16'];
    const NCG = c.blockK / c.colsPerThread;
    const range = (n: number) => [...Array(n).keys()];
    this.shape = {
      config: c, TR: c.rowsPerThread, TC: c.colsPerThread, NCG, DP4: dp4, TD4: dp4 / NCG,
      threads: this.workgroupSize, rows: range(c.rowsPerThread), cols: range(c.colsPerThread),
      dcols: range(dp4 / NCG), v4: vec4Access, hasSoftcap, hasKeyLengths, hasLayout, opts, f16, code: optionCode,
    };
  }

  getUserCode(): string {
    return forwardDeclarations(this.shape) + visibilityFunction(this.shape) + forwardMain(this.shape);
  }
}
