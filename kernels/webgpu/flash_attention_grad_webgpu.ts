/**
 * WebGPU programs of the attention backward pass (FlashAttention-2 backward, without atomics: WGSL has no float
 * atomics, and owning every output element in exactly one invocation also makes the result bit-identical run to run).
 * attention_backward.ts runs them; grad_tiles.ts chooses their tilings.
 *
 *   AttentionGradStatsProgram  (pass 1)  per query row: lseEff = lse (a huge finite value where lse = -Infinity, so
 *                                        exp(t − lseEff) is exactly 0 with no infinity arithmetic) and
 *                                        delta = rowsum(dO∘O) − dLse (summed like the tile passes sum dP, see
 *                                        there); keyLengths[b] is stored bit-cast at the start of batch b's block,
 *                                        so the tile passes read it without one more storage binding (tfjs's device
 *                                        allows 8 storage buffers per stage; pass 2 uses all 8).
 *   AttentionGradTileProgram   (pass 2, 'dkdv') one workgroup per (key tile, kv head, batch) keeps K and V resident
 *                                        and streams the query tiles of the schedule's column runs (every query head
 *                                        of the GQA group), accumulating dV += Pᵀ·dO and dK += dSᵀ·Q in registers;
 *                              (pass 3, 'dq')   one workgroup per (query tile, head, batch) keeps Q and dO resident
 *                                        and streams the key tiles of the row runs, accumulating dQ += dS·K.
 *                              (split-dQ, the default design: 'dkdv' with splitDq, no pass 3) one workgroup per
 *                                        (split, kv head, batch) runs pass 2 for each of its key tiles and adds
 *                                        dS·K (phase D, dqPartial) into dQ accumulator `split`, which only it writes;
 *                                        elementwise_webgpu.ts's DqReduceProgram sums the accumulators. 5
 *                                        matmul-equivalents instead of 7 (S and dP are computed once).
 * (About 800 lines, over our ~500-line guide, on purpose: the phase builders below are shared by the dK/dV, dQ and
 * dBias passes and by their option variants; one file keeps them private instead of exporting every phase.)
 * Both tile passes are the same program: "resident" rows R (the workgroup's tile) meet "streamed" rows S. Scores
 * are dot(R1[r], S1[s]) = q·k and dot(R2[r], S2[s]) = dO·v either way, and both accumulate dS[r][s]·S1[s] (dK or
 * dQ); 'dkdv' also accumulates P[r][s]·S2[s] (dV). Only which rows are queries and which are keys differs.
 *
 * The tile pass's WGSL is built from one named piece per phase — stage rows (stageRows, stageStats), scores
 * (q·k and dO·v), probabilities (P and dS), accumulate (dS·S1, P·S2), write results — put together per streamed tile
 * by streamedTile and per workgroup by tileLoop and tileMain; the program classes come last.
 *
 * Streamed tiles are prefetched (tiles.prefetch, whole streamed rows): the schedule's next tile is loaded into
 * registers while this one computes and stored to workgroup memory after its phase C, as the forward does with K/V;
 * with headDim % 4 == 0, q, k, v, dy (and split-dQ's `work`) are bound as vec4s. Neither changes the arithmetic:
 * results are bit-identical to the plain staging.
 *
 * Sequence lengths, heads, window and offsets are uniforms: one pipeline per (pass, padded headDim, tiles, flags)
 * serves every problem size. headDim is padded to a multiple of 16 in workgroup memory (zero-filled, so padding
 * adds nothing to any dot product). When a streamed tile does not fit whole in workgroup memory it is streamed in
 * chunks of headDim columns (reloaded for the accumulation phase).
 *
 * Per-call options (attention_options.ts) are compiled in only when the plan has them: the side buffer (schedules,
 * per-batch keyLengths / query offsets, ALiBi slopes, segment ids, tile summaries, and pass 1's statistics) is bound
 * as `sched` in place of `stats` and `sched`, and mask / bias follow; optionProbabilities applies bias, ALiBi, masks
 * and dropout; with both a mask and a bias the dK/dV pass writes one `dkv` output (8 bindings at most) that the
 * executor splits. dBias has its own pass (dbiasMain, 'dq' tiling) that sums over the bias's broadcast axes in a
 * fixed order.
 */
import {
  alibiHoistedTerm, alibiInlineTerm, alibiPosition, diagonalOffsetExpr, elementMasked, MASKED_TERM, OPTION_UNIFORMS,
  optionBindings, optionFunctions, OptionFlags, optionKey, tileStateFunction,
} from './attention_options.js';
import {GradPass, GradThreadMap, gradThreadMap, GradTiles} from './grad_tiles.js';
import {fillKeepTile, keepTileBit, PHILOX_WGSL} from './philox_wgsl.js';
import type {MultiOutputProgram, UniformType} from './program_runner.js';
import {STABLE_TANH_WGSL} from './wgsl_math.js';

/** Stands in for -Infinity (lse of an empty row, or a padding row): exp(t − LSE_EMPTY) is exactly 0. */
export const LSE_EMPTY = 3.0e38;
const LSE_EMPTY_BITS = new Uint32Array(new Float32Array([LSE_EMPTY]).buffer)[0];

/** Uniform fields of the tile passes, in the order the executor passes their values. `*Base` fields are the
 *  element offset of batch 0 of the dispatch inside each binding (non-zero when work is split by batch). */
export const TILE_UNIFORMS: Array<[string, UniformType]> = [
  ['seqQ', 'i32'], ['seqK', 'i32'], ['heads', 'i32'], ['kvHeads', 'i32'], ['groupSize', 'i32'], ['headDim', 'i32'],
  ['diagonalOffset', 'i32'], ['windowLeft', 'i32'], ['windowRight', 'i32'], ['numQueryTiles', 'i32'],
  ['numKeyTiles', 'i32'], ['numMaskHeads', 'i32'], ['runStartOffset', 'i32'], ['runsOffset', 'i32'],
  ['layoutOffset', 'i32'], ['layoutBlockSize', 'i32'], ['layoutQueryBlocks', 'i32'], ['layoutKeyBlocks', 'i32'],
  ['qBase', 'i32'], ['kBase', 'i32'], ['vBase', 'i32'], ['dyBase', 'i32'], ['statsBase', 'i32'],
  ['out0Base', 'i32'], ['out1Base', 'i32'], ['scale', 'f32'], ['softcap', 'f32'], ['headsFastest', 'i32'],
  // The split-dQ dK/dV pass only (0 elsewhere): dQ accumulators, batch stride of its `work` output, where they start.
  ['nsplits', 'i32'], ['workStride', 'i32'], ['dqAccBase', 'i32'],
];

/**
 * How the tile passes compute the per-element bias and ALiBi terms. Defaults: bias 'staged', ALiBi 'inline' — on an
 * H100 (bench/results/2026-12-08-h100-session5/options_sweep.log) the staged bias took fwd+bwd from 32.5 to 26.5 ms,
 * while the hoisted ALiBi was slower than inline (22.8 vs 21.0 ms; more registers live across the tile loop).
 * 'inline' is the first session's code (scoreTerm per score element), kept selectable so that one benchmark process times
 * both (bench/device/options_sweep.ts), as the forward's ForwardOptionCode.
 *   bias   'inline': each score element loads its bias element inside phase B's math (in the dK/dV pass neighbouring
 *          invocations own neighbouring query rows, so a warp's loads are strided by seqK); 'staged': the
 *          workgroup loads the (query tile, key tile) of the bias cooperatively, consecutive invocations reading
 *          consecutive keys of one query row ('dkdv'; 'dq' reads runs of NS keys), with the streamed tile's
 *          prefetch one tile ahead where the pass prefetches, into the slots of the tile array phase B writes
 *          (tileP for dK/dV, tileDS for dQ and dBias) in phase B's ownership layout: each invocation reads its
 *          terms from the very slots it then overwrites with P (dS), so no workgroup memory is added and no barrier.
 *   alibi  'inline': scoreTerm per element; 'hoisted': the slope once per tile, positions once per row and column
 *          (attention_options.ts alibiPosition / alibiHoistedTerm, shared with the forward): bit-identical terms.
 */
export interface GradOptionCode {
  bias: 'inline' | 'staged';
  alibi: 'inline' | 'hoisted';
}

export const DEFAULT_GRAD_OPTION_CODE: GradOptionCode = {bias: 'staged', alibi: 'inline'};
let gradOptionCode: GradOptionCode = DEFAULT_GRAD_OPTION_CODE;

/** Benchmark / test hook: the option code tile programs built from now on compile (null: the defaults). */
export function setGradOptionCodeForBench(code: GradOptionCode | null): void {
  gradOptionCode = code ?? DEFAULT_GRAD_OPTION_CODE;
}

/** Part of the program key: '' for the defaults. */
export function gradOptionCodeKey(code: GradOptionCode): string {
  return code.bias === DEFAULT_GRAD_OPTION_CODE.bias && code.alibi === DEFAULT_GRAD_OPTION_CODE.alibi ? '' :
      `:${code.bias}-${code.alibi}`;
}

export interface TileFlags {
  softcap: boolean;
  layout: boolean;
  keyLengths: boolean;
  /** q, k, v, dy bound as vec4<f32> (headDim a multiple of 4): one load per vec4 instead of four. */
  vec4: boolean;
}

/** Floats of pass 1's output per batch: keyLengths[b] (bit-cast) and a pad, then (lseEff, delta) per (head, row). */
export function statsPerBatch(heads: number, seqQ: number): number {
  return 2 + 2 * heads * seqQ;
}

interface RowSource {
  /** Binding names of the two tensors (q/dy or k/v) and their `*Base` uniforms. */
  a: string;
  b: string;
  aBase: string;
  bBase: string;
  seq: string;
  heads: string;
  head: string;
}

const QUERIES: RowSource = {a: 'q', b: 'dy', aBase: 'qBase', bBase: 'dyBase', seq: 'uniforms.seqQ',
                            heads: 'uniforms.heads', head: 'h'};
const KEYS: RowSource = {a: 'k', b: 'v', aBase: 'kBase', bBase: 'vBase', seq: 'uniforms.seqK',
                         heads: 'uniforms.kvHeads', head: 'hk'};

/** What every phase builder of a tile pass needs: the tiling, the thread map and the flags, with short names. */
export interface TileShape {
  dkdv: boolean;
  flags: TileFlags;
  /** Resident rows, streamed rows, invocations. */
  BR: number;
  BS: number;
  T: number;
  /** Padded headDim and chunk in vec4s; chunks per headDim. */
  DP4: number;
  C4: number;
  NCH: number;
  /** Row strides of the resident and streamed arrays (+1: consecutive rows start on different banks). */
  RS: number;
  SS: number;
  /** Score entries per invocation (resident × streamed) and invocations along each axis. */
  TR: number;
  TS: number;
  NR: number;
  NS: number;
  /** Accumulators: row groups, rows per invocation, vec4 columns per invocation, column groups. */
  NRG: number;
  MR: number;
  AC: number;
  NC: number;
  /**
   * tileP / tileDS hold one vecTS per (resident row, streamed thread): element [r * NS + sg] is entries
   * (r, sg + n·NS), n < TS — exactly one invocation's streamed entries of row r, so each element is written whole by
   * one invocation (stores to different components of one vector may race) and phase C reads TS entries per load.
   */
  vecT: string;
  /** Which rows are resident (keys for 'dkdv', queries for 'dq') and which are streamed. */
  res: RowSource;
  str: RowSource;
  /**
   * Per-call options (attention_options.ts), or null: then the code is exactly the plain kernel's. With options the
   * statistics and the schedule live in the side buffer, bound as `sched`.
   */
  opts: OptionFlags | null;
  /** dK and dV written into one output `dkv` (mask and bias both bound: 8 storage bindings at most). */
  combined: boolean;
  /** The dBias pass: a 'dq'-shaped tile program that sums dS over the (batch, head) each bias element covers. */
  dbias: boolean;
  /** The dQ pass (or, split-dQ, the dK/dV pass) also writes dBias (a bias element covers one (batch, head)). */
  directBias: boolean;
  /**
   * The split-dQ design (dkdv only): each workgroup owns the key tiles split, split + nsplits, … of one kv head and
   * also adds dS·K into dQ accumulator `split` (see dqPartial); dK, dV and the accumulators share one `work` output.
   */
  splitDq: boolean;
  /** The next streamed tile is loaded into registers while this one computes (prefetchStaging). */
  prefetch: boolean;
  /** How bias and ALiBi terms are computed (GradOptionCode). */
  code: GradOptionCode;
  /**
   * The tensor-core 'medium' pass (flash_attention_grad_tc_webgpu.ts), or null: phase B stores each P / dS entry as
   * f16 into row-major tiles Pt / DSt (row stride `stride`; P times `pScale`) for the MMAs, instead of tileP / tileDS.
   */
  f16Tiles: F16Tiles | null;
}

/** Where the tensor-core pass's phase B puts P and dS (TileShape.f16Tiles). */
export interface F16Tiles {
  stride: number;
  /** P is stored times this power of two (kept out of f16's subnormals; divided out when dV is written). */
  pScale: number;
}

export function tileShape(
    pass: GradPass, t: GradTiles, flags: TileFlags, map: GradThreadMap, opts: OptionFlags | null, combined: boolean,
    dbias: boolean, directBias: boolean, splitDq: boolean, f16Tiles: F16Tiles | null = null): TileShape {
  const dkdv = pass === 'dkdv';
  const DP4 = t.paddedDim / 4, C4 = t.chunk / 4;
  const TS = map.colsPerThread;
  return {
    dkdv, flags, BR: t.resident, BS: t.streamed, T: t.threads, DP4, C4, NCH: t.paddedDim / t.chunk,
    RS: DP4 + 1, SS: C4 + 1, TR: map.rowsPerThread, TS, NR: map.residentThreads, NS: map.streamedThreads,
    NRG: map.rowGroups, MR: map.accRows, AC: map.accCols, NC: map.colGroups,
    vecT: TS === 1 ? 'f32' : `vec${TS}<f32>`, res: dkdv ? KEYS : QUERIES, str: dkdv ? QUERIES : KEYS,
    opts, combined, dbias, directBias, splitDq,
    prefetch: f16Tiles == null && t.prefetch === true && t.chunk === t.paddedDim && !dbias,
    // The tensor-core pass has no tileP / tileDS to stage the bias in: it loads each element inline.
    code: f16Tiles == null ? gradOptionCode : {...gradOptionCode, bias: 'inline'}, f16Tiles,
  };
}

export const range = (n: number) => Array.from({length: n}, (_, i) => i);
/** Component n of an invocation's vecTS of tileP / tileDS, and the vecTS of its TS entries. */
const comp = (g: TileShape, x: string, n: number) => g.TS === 1 ? x : `${x}[${n}]`;
const pack = (g: TileShape, xs: string[]) => g.TS === 1 ? xs[0] : `${g.vecT}(${xs.join(', ')})`;
const accIndex = (g: TileShape, c: string, m: number, a: number) => `(${c} * ${g.MR} + ${m}) * ${g.AC} + ${a}`;
export const resRow = (g: TileShape, m: number) => `(rIdx + ${m * g.NR})`;
export const strRow = (g: TileShape, n: number) => `(sIdx + ${n * g.NS})`;
/** Entry (resident row r, streamed row s) of a tile as query row i and key j. */
const entryQ = (g: TileShape, r: string, s: string) => g.dkdv ? `q0 + ${s}` : `q0 + ${r}`;
const entryK = (g: TileShape, r: string, s: string) => g.dkdv ? `k0 + ${r}` : `k0 + ${s}`;

/**
 * Stage rows, one element: vec4 column d/4 of row `row` of head `head` of src.a and src.b into the registers va, vb
 * (declared and zeroed by the caller: zeros past the sequence end and past headDim). With vec4 bindings (headDim a
 * multiple of 4, so every row and *Base starts on a vec4) one load each, else four scalar loads.
 */
function loadPair(g: TileShape, src: RowSource, row: string, d: string, head: string): string {
  const body = g.flags.vec4 ? `
            va = ${src.a}[ia / 4];
            vb = ${src.b}[ib / 4];` : `
          if (${d} + 4 <= uniforms.headDim) {
            va = vec4<f32>(${src.a}[ia], ${src.a}[ia + 1], ${src.a}[ia + 2], ${src.a}[ia + 3]);
            vb = vec4<f32>(${src.b}[ib], ${src.b}[ib + 1], ${src.b}[ib + 2], ${src.b}[ib + 3]);
          } else {
            for (var e = 0; e < uniforms.headDim - ${d}; e++) {
              va[e] = ${src.a}[ia + e];
              vb[e] = ${src.b}[ib + e];
            }
          }`;
  return `
        if (${row} < ${src.seq} && ${d} < uniforms.headDim) {
          let base = ((b * ${src.seq} + ${row}) * ${src.heads} + ${head}) * uniforms.headDim + ${d};
          let ia = uniforms.${src.aBase} + base;
          let ib = uniforms.${src.bBase} + base;${body}
        }`;
}

/** Stage rows: rows row0 .. row0+rows-1, vec4 columns col0 .. col0+cols-1 of src.a and src.b into two shared
 *  arrays (zeros past the sequence end and past headDim). */
function stageRows(
    g: TileShape, src: RowSource, dstA: string, dstB: string, rows: number, row0: string, cols: number,
    col0: string, stride: number): string {
  return `
      for (var idx = tid; idx < ${rows * cols}; idx += ${g.T}) {
        let r = idx / ${cols};
        let col = idx - r * ${cols};
        let row = ${row0} + r;
        var va = vec4<f32>(0.0);
        var vb = vec4<f32>(0.0);
        let d = (${col0} + col) * 4;${loadPair(g, src, 'row', 'd', src.head)}
        ${dstA}[r * ${stride} + col] = va;
        ${dstB}[r * ${stride} + col] = vb;
      }`;
}

/** Element `index` of pass 1's statistics (in the side buffer when the plan has options). */
function statAt(g: TileShape, index: string): string {
  return g.opts == null ? `stats[${index}]` : `bitcast<f32>(sched[${index}])`;
}

/** Stage rows, statistics of one query row: (lseEff, delta) of row i of head `head` into l, dl (declared by the
 *  caller as LSE_EMPTY, 0: padding rows get P = 0). */
function loadStat(g: TileShape, i: string, head: string): string {
  return `
        if (${i} < uniforms.seqQ) {
          let si = statsRow + 2 + 2 * (${head} * uniforms.seqQ + ${i});
          l = ${statAt(g, 'si')};
          dl = ${statAt(g, 'si + 1')};
        }`;
}

/** Stage rows, statistics: (lseEff, delta) of query rows q0 .. q0+n-1 of head h into rowLse / rowDelta (padding
 *  rows: P = 0). */
export function stageStats(g: TileShape, n: number, q0: string): string {
  return `
      for (var s = tid; s < ${n}; s += ${g.T}) {
        let i = ${q0} + s;
        var l = ${LSE_EMPTY};
        var dl = 0.0;${loadStat(g, 'i', 'h')}
        rowLse[s] = l;
        rowDelta[s] = dl;
      }`;
}

/**
 * Stage rows, prefetched (tiles.prefetch, whole streamed rows only): each invocation holds its elements
 * tid + l·T of a streamed tile (and, for dK/dV, of its query statistics) in registers pa_l, pb_l (pl_l, pd_l).
 * `load` fills them with the tile at rows row0 of head `head` while the current tile computes (the forward's K/V
 * prefetch); `store` moves them to strA / strB (rowLse / rowDelta) once the previous tile's phase C is done.
 */
function prefetchStaging(g: TileShape): {declare: string; load: (row0: string, head: string) => string;
                                         store: string} {
  const n = g.BS * g.DP4;
  const loads = range(Math.ceil(n / g.T));
  const statLoads = g.dkdv ? range(Math.ceil(g.BS / g.T)) : [];
  return {
    declare: loads.map((l) => `
      var pa${l} = vec4<f32>(0.0);
      var pb${l} = vec4<f32>(0.0);`).join('') + statLoads.map((l) => `
      var pl${l} = ${LSE_EMPTY};
      var pd${l} = 0.0;`).join(''),
    load: (row0, head) => loads.map((l) => `
      {
        let idx = tid + ${l * g.T};
        let row = ${row0} + idx / ${g.DP4};
        let d = (idx % ${g.DP4}) * 4;
        var va = vec4<f32>(0.0);
        var vb = vec4<f32>(0.0);
        if (idx < ${n}) {${loadPair(g, g.str, 'row', 'd', head)}
        }
        pa${l} = va;
        pb${l} = vb;
      }`).join('') + statLoads.map((l) => `
      {
        let s = tid + ${l * g.T};
        var l = ${LSE_EMPTY};
        var dl = 0.0;
        if (s < ${g.BS}) {${loadStat(g, `${row0} + s`, head)}
        }
        pl${l} = l;
        pd${l} = dl;
      }`).join(''),
    store: loads.map((l) => `
      {
        let idx = tid + ${l * g.T};
        if (idx < ${n}) {
          strA[(idx / ${g.DP4}) * ${g.SS} + idx % ${g.DP4}] = pa${l};
          strB[(idx / ${g.DP4}) * ${g.SS} + idx % ${g.DP4}] = pb${l};
        }
      }`).join('') + statLoads.map((l) => `
      if (tid + ${l * g.T} < ${g.BS}) {
        rowLse[tid + ${l * g.T}] = pl${l};
        rowDelta[tid + ${l * g.T}] = pd${l};
      }`).join(''),
  };
}

/** Whether phase B reads the bias from a staged tile (GradOptionCode 'staged'). */
function biasStaged(g: TileShape): boolean {
  return g.opts?.bias === true && g.code.bias === 'staged';
}

/** The tile array the bias is staged in: the one phase B writes, free from the barrier that ends phase C. */
function biasSlots(g: TileShape): string {
  return g.dkdv ? 'tileP' : 'tileDS';
}

/**
 * Stage the bias (GradOptionCode 'staged'): the bias of the (query tile, key tile) into the slots of biasSlots in
 * phase B's layout — slot r·NS + sg holds entries (resident r, streamed sg + n·NS), n < TS, as one vecTS, which the
 * invocation owning those entries reads in phase B and then overwrites with its P (dS). Each invocation fills TR
 * whole slots (whole vectors: stores to different components of one vector may race). dK/dV: slot index
 * tid + j·T → key r = index % BR (consecutive invocations read consecutive keys of one query row: coalesced), query
 * sg = index / BR; dQ: key sg = index % NS, query r = index / NS. 0 outside the sequences.
 * `load(row0, head)` fills registers bst_j with the tile whose streamed rows start at row0, `store` puts them in the
 * slots (after the barrier that ends the previous tile's phase C), `direct` does both at once.
 */
function biasStaging(g: TileShape): {declare: string; load: (row0: string, head: string) => string; store: string;
                                     direct: (row0: string, head: string) => string} {
  if (!biasStaged(g)) return {declare: '', load: () => '', store: '', direct: () => ''};
  const {BR, NS, T} = g;
  const slots = range(g.TR);
  const where = (j: number) => g.dkdv ? `
        let slot = tid + ${j * T};
        let br = slot % ${BR};
        let bs = slot / ${BR};` : `
        let slot = tid + ${j * T};
        let bs = slot % ${NS};
        let br = slot / ${NS};`;
  const value = (row0: string, head: string) => pack(g, range(g.TS).map((n) => g.dkdv ?
      `biasElement(optBatch, ${head}, ${row0} + bs + ${n * NS}, k0 + br)` :
      `biasElement(optBatch, ${head}, q0 + br, ${row0} + bs + ${n * NS})`));
  const at = `${biasSlots(g)}[br * ${NS} + bs]`;
  return {
    declare: slots.map((j) => `
      var bst${j} = ${g.vecT}(0.0);`).join(''),
    load: (row0, head) => slots.map((j) => `
      {${where(j)}
        bst${j} = ${value(row0, head)};
      }`).join(''),
    store: slots.map((j) => `
      {${where(j)}
        ${at} = bst${j};
      }`).join(''),
    direct: (row0, head) => `
      // Stage the bias tile (phase B reads its entries from the slots it then overwrites).` + slots.map((j) => `
      {${where(j)}
        ${at} = ${value(row0, head)};
      }`).join(''),
  };
}

/** The (resident, streamed) entries of this invocation's share of the score tile. */
export function scoreIds(g: TileShape): number[][] {
  return range(g.TR).flatMap((m) => range(g.TS).map((n) => [m, n]));
}

/** Scores, the registers: q·k (sc) and dO·v (dp) of this invocation's entries, zeroed per streamed tile. */
function scoreDeclarations(g: TileShape): string {
  return scoreIds(g).map(([m, n]) => `
      var sc${m}_${n} = 0.0;
      var dp${m}_${n} = 0.0;`).join('');
}

/** Scores (phase A): partial scores q·k and dO·v of this invocation's entries over chunk `c` of headDim. */
function scores(g: TileShape, c: string): string {
  const {C4, RS, SS} = g;
  return `
      for (var d4 = 0; d4 < min(${C4}, dimVec4 - ${c} * ${C4}); d4++) {${range(g.TR).map((m) => `
        let xa${m} = resA[${resRow(g, m)} * ${RS} + ${c} * ${C4} + d4];
        let xb${m} = resB[${resRow(g, m)} * ${RS} + ${c} * ${C4} + d4];`).join('')}${range(g.TS).map((n) => `
        let ya${n} = strA[${strRow(g, n)} * ${SS} + d4];
        let yb${n} = strB[${strRow(g, n)} * ${SS} + d4];`).join('')}${scoreIds(g).map(([m, n]) => `
        sc${m}_${n} = sc${m}_${n} + dot(xa${m}, ya${n});
        dp${m}_${n} = dp${m}_${n} + dot(xb${m}, yb${n});`).join('')}
      }`;
}

/**
 * Phase B's store of row r's entries (`values`, one per streamed n): one vecTS into tileP / tileDS, or (tensor-core
 * pass, f16Tiles) each entry as f16 at (r, sIdx + n·NS) of the row-major Pt / DSt, P times pScale.
 */
function storeTile(g: TileShape, tile: 'tileP' | 'tileDS', values: string[]): string {
  if (g.f16Tiles == null) return `
        ${tile}[r * ${g.NS} + sIdx] = ${pack(g, values)};`;
  const {stride, pScale} = g.f16Tiles;
  const scaled = (v: string) => tile === 'tileP' && pScale !== 1 ? `${v} * ${pScale}.0` : v;
  return values.map((v, n) => `
        ${tile === 'tileP' ? 'Pt' : 'DSt'}[u32(r) * ${stride}u + u32(${strRow(g, n)})] = f16(${scaled(v)});`).join('');
}

/** Probabilities (phase B): P and dS of each entry into workgroup memory, one vecTS per resident row. */
export function probabilities(g: TileShape): string {
  const {dkdv, flags} = g;
  const stat = dkdv ? 's' : 'r';
  if (g.opts != null) return optionProbabilities(g);
  return range(g.TR).map((m) => `
      {
        let r = ${resRow(g, m)};${range(g.TS).map((n) => `
        var p${n} = 0.0;
        var ds${n} = 0.0;
        {
          let s = ${strRow(g, n)};
          var tt = sc${m}_${n} * uniforms.scale;
          var dtds = 1.0;${flags.softcap ? `
          let th = stableTanh(tt / uniforms.softcap);
          tt = uniforms.softcap * th;
          dtds = 1.0 - th * th;` : ''}
          p${n} = exp(tt - rowLse[${stat}]);
          ds${n} = p${n} * (dp${m}_${n} - rowDelta[${stat}]) * dtds;
          // A masked entry is exactly 0, whatever its dO·v (0·NaN would be NaN).
          if (partial && !isVisible(${entryQ(g, 'r', 's')}, ${entryK(g, 'r', 's')}, lh, keyLen)) {
            p${n} = 0.0;
            ds${n} = 0.0;
          }
        }`).join('')}${dkdv ? storeTile(g, 'tileP', range(g.TS).map((n) => `p${n}`)) : ''}${
        storeTile(g, 'tileDS', range(g.TS).map((n) => `ds${n}`))}
      }`).join('');
}

/** Keep bit (dropout) of entry (resident r, streamed s) from keepTile, as a WGSL bool. */
function keptAt(g: TileShape, r: string, s: string): string {
  const kg = (g.dkdv ? g.BR : g.BS) / 4;
  const [qL, kL] = g.dkdv ? [s, r] : [r, s];
  return keepTileBit(qL, kg, kL);
}

/**
 * Probabilities with the plan's options: the score gets the bias / ALiBi term after the softcap (a -Infinity bias
 * masks), mask and segments act in isVisible (every tile is partial then), and dropout scales dP and P by Z / (1-rate):
 * dS = P ∘ (dP ∘ Z·keepScale − delta), dV takes P ∘ Z·keepScale. dBias = P ∘ (dP∘Z·keepScale − delta) (before the
 * softcap and scale chain) is summed into registers db (dBias pass).
 */
function optionProbabilities(g: TileShape): string {
  const {dkdv, flags, NS} = g;
  const opts = g.opts!;
  const stat = dkdv ? 's' : 'r';
  const hasTerm = opts.bias || opts.alibi;
  const staged = biasStaged(g);
  const hoisted = opts.alibi && g.code.alibi === 'hoisted';
  // Both terms inline: scoreTerm exactly as the first session's code. Else the bias from the staged slots (or loaded
  // inline) and the hoisted (or inline) ALiBi term, masked exactly as scoreTerm's.
  const termOf = (m: number, n: number) => {
    const i = entryQ(g, 'r', 's'), j = entryK(g, 'r', 's');
    if (!staged && !hoisted) return `scoreTerm(${i}, ${j})`;
    const [qPos, kPos] = dkdv ? [`alibiS${n}`, `alibiR${m}`] : [`alibiR${m}`, `alibiS${n}`];
    const alibi = !opts.alibi ? '0.0' : hoisted ? alibiHoistedTerm('negSlope', qPos, kPos) :
        alibiInlineTerm(i, j, diagonalOffsetExpr(opts));
    if (!opts.bias) return alibi;
    return `termWithBias(${staged ? comp(g, 'biasSlot', n) : `biasElement(optBatch, optHead, ${i}, ${j})`}, ${alibi})`;
  };
  // Hoisted ALiBi: the slope once per tile, f32 positions of this invocation's resident and streamed rows.
  const alibiHoist = !hoisted ? '' : `
      let negSlope = -alibiSlope();
      let alibiOffset = ${diagonalOffsetExpr(opts)};${range(g.TR).map((m) => `
      let alibiR${m} = ${alibiPosition(dkdv ? `k0 + ${resRow(g, m)}` : `q0 + ${resRow(g, m)} + alibiOffset`)};`).join('')}${
      range(g.TS).map((n) => `
      let alibiS${n} = ${alibiPosition(dkdv ? `q0 + ${strRow(g, n)} + alibiOffset` : `k0 + ${strRow(g, n)}`)};`)
      .join('')}`;
  // dBias written by the dQ pass: the values are gathered here and stored by one loop after the unrolled blocks
  // (a conditional store per unrolled element made SwiftShader's shader compiler take tens of minutes).
  const directStores = !g.directBias ? '' : `
      for (var e = 0; e < ${g.TR * g.TS}; e++) {
        let bi = ${entryQ(g, `(rIdx + (e / ${g.TS}) * ${g.NR})`, `(sIdx + (e % ${g.TS}) * ${g.NS})`)};
        let bj = ${entryK(g, `(rIdx + (e / ${g.TS}) * ${g.NR})`, `(sIdx + (e % ${g.TS}) * ${g.NS})`)};
        if (bi < uniforms.seqQ && bj < uniforms.seqK) {
          dBias[optBatch * uniforms.biasBatchStride + optHead * uniforms.biasHeadStride + bi * uniforms.seqK + bj] =
              directDb[e];
        }
      }`;
  return alibiHoist + (g.directBias ? `
      var directDb = array<f32, ${g.TR * g.TS}>();` : '') + range(g.TR).map((m) => `
      {
        let r = ${resRow(g, m)};${staged ? `
        // This row's staged bias terms (the slot is overwritten with P / dS below).
        let biasSlot = ${biasSlots(g)}[r * ${NS} + sIdx];` : ''}${range(g.TS).map((n) => `
        var p${n} = 0.0;
        var ds${n} = 0.0;${dkdv && opts.dropout ? `
        var pz${n} = 0.0;` : ''}
        {
          let s = ${strRow(g, n)};
          var tt = sc${m}_${n} * uniforms.scale;
          var dtds = 1.0;${flags.softcap ? `
          let th = stableTanh(tt / uniforms.softcap);
          tt = uniforms.softcap * th;
          dtds = 1.0 - th * th;` : ''}${hasTerm ? `
          let term = ${termOf(m, n)};
          tt = tt + term;` : ''}
          p${n} = exp(tt - rowLse[${stat}]);${hasTerm ? `
          if (term <= ${MASKED_TERM}) { p${n} = 0.0; }` : ''}
          // A masked entry is exactly 0, whatever its dO·v (0·NaN would be NaN).
          if (partial && !isVisible(${entryQ(g, 'r', 's')}, ${entryK(g, 'r', 's')}, lh, keyLen)) {
            p${n} = 0.0;
          }${opts.dropout ? `
          let kept = ${keptAt(g, 'r', 's')};
          let dpz = select(0.0, dp${m}_${n} * uniforms.keepScale, kept);${dkdv ? `
          pz${n} = select(0.0, p${n} * uniforms.keepScale, kept);` : ''}` : `
          let dpz = dp${m}_${n};`}
          var dsb = p${n} * (dpz - rowDelta[${stat}]);
          if (p${n} == 0.0) { dsb = 0.0; }
          ds${n} = dsb * dtds;${g.dbias ? `
          db${m}_${n} = db${m}_${n} + dsb;` : ''}${g.directBias ? `
          directDb[${m * g.TS + n}] = dsb;` : ''}
        }`).join('')}${dkdv ? storeTile(g, 'tileP', range(g.TS).map((n) => opts.dropout ? `pz${n}` : `p${n}`)) : ''}${
          g.dbias ? '' : storeTile(g, 'tileDS', range(g.TS).map((n) => `ds${n}`))}
      }`).join('') + directStores;
}

/** Dropout: the keep bits of the (query, key) tile, one Philox call per 4 keys, shared through keepTile. */
export function keepStage(g: TileShape): string {
  if (!g.opts?.dropout) return '';
  const qn = g.dkdv ? g.BS : g.BR, kg = (g.dkdv ? g.BR : g.BS) / 4;
  return fillKeepTile(qn * kg, kg, g.T, 'optBatch');
}

/**
 * Accumulate (phase C): acc += dS[r][s]·S1[s] (dK or dQ) and, for dkdv, accP += P[r][s]·S2[s] (dV), for chunk `c`;
 * dS and P are read TS streamed rows per shared-memory load. Streamed rows past the sequence end hold zeros and
 * have P = dS = 0, so the padding entries of a partly filled group add exactly 0. In partial tiles a masked entry
 * adds nothing at all: a masked key's NaN/Inf k (or a masked query's q, dO) must not reach the row (0·NaN = NaN), as
 * in the forward's guarded P·V, while a visible entry with dS = 0 still multiplies (0·Inf = NaN, as the reference
 * does for a -Infinity score), except in an empty row (every score -Infinity: gradients 0, no contribution).
 * Masked entries have dS = 0 (phase B), so visibility is only evaluated for zeros (a -0.0 marker would be cheaper,
 * but Vulkan does not promise to preserve the sign of zero). The tests compare bits: Vulkan compilers may assume
 * no NaN in float compares (a NaN dS or lse must count as "not zero", "not empty"). Full tiles have no masked
 * entries and run the plain sums (known limit: an empty row inside a full tile, with an infinite k or q there,
 * gets 0·Infinity = NaN).
 * Resident rows past BR (when rowGroups do not divide BR) read row BR - 1 and accumulate into registers that are
 * never written out.
 */
function accumulate(g: TileShape, c: string): string {
  return `
      if (accActive && partial) {${accumulateLoop(g, c, true)}
      } else if (accActive) {${accumulateLoop(g, c, false)}
      }`;
}

function accumulateLoop(g: TileShape, c: string, guarded: boolean): string {
  const {dkdv, BR, NS, NRG, SS, NC} = g;
  const add = (target: string, w: string, y: string, keep: string | null) => keep != null ?
      `${target} = select(${target}, ${target} + ${w} * ${y}, ${keep});` : `${target} = ${target} + ${w} * ${y};`;
  return `
        for (var sg = 0; sg < min(${NS}, streamedRows); sg++) {${range(g.MR).map((m) => {
          const r = (m + 1) * NRG > BR ? `min(rowGroup + ${m * NRG}, ${BR - 1})` : `(rowGroup + ${m * NRG})`;
          return `
          let ds${m} = tileDS[${r} * ${NS} + sg];${dkdv ? `
          let p${m} = tileP[${r} * ${NS} + sg];` : ''}${guarded ? range(g.TS).map((n) => `
          let keep${m}_${n} = (bitcast<u32>(${comp(g, `ds${m}`, n)}) & 0x7fffffffu) != 0u ||
              (bitcast<u32>(rowLse[${dkdv ? `sg + ${n * NS}` : r}]) != ${LSE_EMPTY_BITS}u &&
              isVisible(${entryQ(g, r, `sg + ${n * NS}`)}, ${entryK(g, r, `sg + ${n * NS}`)}, lh, keyLen));`).join('') : ''}`;
        }).join('')}${range(g.TS).map((n) => `${range(g.AC).map((a) => `
          {
            let ya = strA[(sg + ${n * NS}) * ${SS} + accCol + ${a * NC}];${dkdv ? `
            let yb = strB[(sg + ${n * NS}) * ${SS} + accCol + ${a * NC}];` : ''}${range(g.MR).map((m) => `
            ${add(`acc[${accIndex(g, c, m, a)}]`, comp(g, `ds${m}`, n), 'ya', guarded ? `keep${m}_${n}` : null)}${dkdv ? `
            ${add(`accP[${accIndex(g, c, m, a)}]`, comp(g, `p${m}`, n), 'yb', guarded ? `keep${m}_${n}` : null)}` : ''}`).join('')}
          }`).join('')}`).join('')}
        }`;
}

/**
 * One streamed tile: scores (chunk by chunk when headDim is streamed in chunks), then P and dS, then the
 * accumulation, chunks in reverse order so that the chunk still loaded from the score phase is used first. Chunks
 * are WGSL loops, not unrolled copies: every barrier appears once in the code (software drivers lower barriers
 * to coroutines, at a compile cost that grows quickly with their number).
 */
function streamedTile(g: TileShape, pf: Prefetch | null = null): string {
  const {dkdv, BS, NCH} = g;
  if (g.prefetch && pf != null) {
    const ps = prefetchStaging(g);
    const bs = biasStaging(g);
    return `
      let streamedRows = min(${BS}, ${g.str.seq} - s0);
      // Not prefetched (the workgroup's first tile, or one after a tile the summary skipped): load it now.
      if (pfTile != ${pf.id}) {${ps.load('s0', g.str.head)}${bs.load('s0', 'h')}
      }
      // The previous tile's phase C is done with strA / strB (and tileP / tileDS).
      workgroupBarrier();${ps.store}${bs.store}${keepStage(g)}${pf.next}
      if (nextId >= 0) {${ps.load('nextRow0', 'nextHead')}${bs.load('nextRow0', pf.biasHead)}
      }
      pfTile = nextId;${scoreDeclarations(g)}
      workgroupBarrier();${scores(g, '0')}${probabilities(g)}
      workgroupBarrier();${accumulate(g, '0')}${dqPartial(g)}`;
  }
  const streamedChunk = (c: string) => stageRows(g, g.str, 'strA', 'strB', BS, 's0', g.C4, `${c} * ${g.C4}`, g.SS);
  const stats = (dkdv ? stageStats(g, BS, 'q0') : '') + keepStage(g) + biasStaging(g).direct('s0', 'h');
  // Phases A and B: the statistics and the tile staged, the scores, P and dS (the dBias pass's whole tile).
  const scorePhases = NCH === 1 ? `
      workgroupBarrier();${stats}${scoreDeclarations(g)}${streamedChunk('0')}
      workgroupBarrier();${scores(g, '0')}${probabilities(g)}` : `
      workgroupBarrier();${stats}${scoreDeclarations(g)}
      for (var c = 0; c < ${NCH}; c++) {
        if (c > 0) {
          workgroupBarrier();
        }${streamedChunk('c')}
        workgroupBarrier();${scores(g, 'c')}
      }${probabilities(g)}`;
  if (g.dbias) return scorePhases;
  // Phase C: the chunk still staged from the scores first, then the others reloaded.
  const accumulatePhase = NCH === 1 ? `
      workgroupBarrier();${accumulate(g, '0')}` : `
      workgroupBarrier();
      for (var cc = 0; cc < ${NCH}; cc++) {
        let c = ${NCH - 1} - cc;
        if (cc > 0) {
          workgroupBarrier();${streamedChunk('c')}
          workgroupBarrier();
        }${accumulate(g, 'c')}
      }`;
  return `
      let streamedRows = min(${BS}, ${g.str.seq} - s0);${scorePhases}${accumulatePhase}${dqPartial(g)}`;
}

/** What a prefetching streamedTile needs from the loop: the current tile's id (pfTile's value once it is loaded),
 *  and statements that set nextId (-1: none), nextRow0 and nextHead to the schedule's next tile. */
export interface Prefetch {
  id: string;
  next: string;
  /** The head of the next tile's bias (its query head). */
  biasHead: string;
}

/**
 * The streamed tiles a workgroup visits: the column runs of every query head of its GQA group ('dkdv') or the row
 * runs of its query tile ('dq'), each through streamedTile. With prefetch, the next tile is predicted from the
 * schedule alone (tile summaries may skip it); a tile is used from the registers only when pfTile names it, so a
 * wrong prediction costs a load, never a result.
 */
export function tileLoop(
    g: TileShape, tileBody: (g: TileShape, pf: Prefetch | null) => string = streamedTile): string {
  const {BR, BS} = g;
  const dkdvNext = `
              var nextId = -1;
              var nextHead = h;
              var nextQt = 0;
              if (qt + 1 < last) {
                nextQt = qt + 1;
                nextId = h * uniforms.numQueryTiles + nextQt;
              } else if (run + 1 < runEnd) {
                nextQt = sched[uniforms.runsOffset + 3 * (run + 1)];
                nextId = h * uniforms.numQueryTiles + nextQt;
              } else if (g + 1 < uniforms.groupSize) {
                let col2 = ((h + 1) % uniforms.numMaskHeads) * uniforms.numKeyTiles + kt;
                let run2 = sched[uniforms.runStartOffset + col2];
                if (run2 < sched[uniforms.runStartOffset + col2 + 1]) {
                  nextHead = h + 1;
                  nextQt = sched[uniforms.runsOffset + 3 * run2];
                  nextId = nextHead * uniforms.numQueryTiles + nextQt;
                }
              }
              let nextRow0 = nextQt * ${BS};`;
  const dqNext = `
          var nextId = -1;
          if (kt + 1 < last) {
            nextId = kt + 1;
          } else if (run + 1 < runEnd) {
            let f = sched[uniforms.runsOffset + 3 * (run + 1)];
            if (f < keyTileEnd) {
              nextId = f;
            }
          }
          let nextRow0 = nextId * ${BS};
          let nextHead = hk;`;
  const processTile = tileBody(g, g.dkdv ?
      {id: 'h * uniforms.numQueryTiles + qt', next: dkdvNext, biasHead: 'nextHead'} :
      {id: 'kt', next: dqNext, biasHead: 'h'});
  const pfDeclare = g.prefetch ? `
      var pfTile = -1;${prefetchStaging(g).declare}${biasStaging(g).declare}` : '';
  return g.dkdv ? `
      if (k0 < keyLen) {${pfDeclare}
        let keyPartial = k0 + ${BR} > keyLen;
        for (var g = 0; g < uniforms.groupSize; g++) {
          let h = hk * uniforms.groupSize + g;${g.opts != null ? `
          optHead = h;` : ''}
          let lh = h % uniforms.numMaskHeads;
          let col = lh * uniforms.numKeyTiles + kt;
          let runEnd = sched[uniforms.runStartOffset + col + 1];
          for (var run = sched[uniforms.runStartOffset + col]; run < runEnd; run++) {
            let first = sched[uniforms.runsOffset + 3 * run];
            let last = first + sched[uniforms.runsOffset + 3 * run + 1];
            ${summarized(g) ? 'let runPartial' : 'let partial'} = sched[uniforms.runsOffset + 3 * run + 2] == 0 || keyPartial;
            for (var qt = first; qt < last; qt++) {
              let q0 = qt * ${BS};
              let s0 = q0;${summarized(g) ? `
              // The tile summary: skip tiles the mask and segments rule out, no per-element mask where they hide none.
              let state = tileState(uniforms.optBatchStart + b, h, qt, kt);
              if (state == 0) {
                continue;
              }
              let partial = runPartial || state != 2;` : ''}${processTile}
            }
          }
        }
      }` : `
      let lh = h % uniforms.numMaskHeads;
      let rowIndex = lh * uniforms.numQueryTiles + qt;
      let runEnd = sched[uniforms.runStartOffset + rowIndex + 1];
      // Key tiles at or past keyLengths[b] are skipped (runs ascend, so clipping last is enough).
      let keyTileEnd = (keyLen + ${BS - 1}) / ${BS};${pfDeclare}
      for (var run = sched[uniforms.runStartOffset + rowIndex]; run < runEnd; run++) {
        let first = sched[uniforms.runsOffset + 3 * run];
        let last = min(first + sched[uniforms.runsOffset + 3 * run + 1], keyTileEnd);
        let full = sched[uniforms.runsOffset + 3 * run + 2] == 1;
        for (var kt = first; kt < last; kt++) {
          let k0 = kt * ${BS};
          let s0 = k0;
          ${summarized(g) ? `let state = tileState(uniforms.optBatchStart + b, h, qt, kt);
          if (state == 0) {
            continue;
          }
          let partial = !full || k0 + ${BS} > keyLen || state != 2;` : `let partial = !full || k0 + ${BS} > keyLen;`}${
            processTile}
        }
      }`;
}

/** Whether the plan's mask / segments are summarized per tile (tileState) and checked per element. */
export function summarized(g: TileShape): boolean {
  return g.opts != null && elementMasked(g.opts);
}

/** Write results: the accumulators of this invocation's resident rows (dq, or dk and dv), dS·S1 times scale. */
function writeResults(g: TileShape): string {
  const {dkdv, BR, C4, NRG, NC, res} = g;
  const stores = (target: string, base: string, value: string) => target === 'work' && g.flags.vec4 ? `
          ${target}[(uniforms.${base} + o) / 4] = ${value};` : `
          ${target}[uniforms.${base} + o] = ${value}.x;
          if (d + 1 < uniforms.headDim) { ${target}[uniforms.${base} + o + 1] = ${value}.y; }
          if (d + 2 < uniforms.headDim) { ${target}[uniforms.${base} + o + 2] = ${value}.z; }
          if (d + 3 < uniforms.headDim) { ${target}[uniforms.${base} + o + 3] = ${value}.w; }`;
  const writeChunk = (c: string) => range(g.MR).flatMap((m) => range(g.AC).map((a) => `
        {
          let r = rowGroup + ${m * NRG};
          let row = ${dkdv ? 'k0' : 'q0'} + r;
          let d = (${c} * ${C4} + accCol + ${a * NC}) * 4;
          if (accActive && r < ${BR} && row < ${res.seq} && d < uniforms.headDim) {
            let o = ${g.splitDq ? `b * uniforms.workStride + (row * ${res.heads} + ${res.head}) * uniforms.headDim + d` :
                `((b * ${res.seq} + row) * ${res.heads} + ${res.head}) * uniforms.headDim + d`};
            let scaled = acc[${accIndex(g, c, m, a)}] * uniforms.scale;${
              stores(dkdv ? (g.splitDq ? 'work' : g.combined ? 'dkv' : 'dk') : 'dq', 'out0Base', 'scaled')}${
              dkdv ? stores(g.splitDq ? 'work' : g.combined ? 'dkv' : 'dv', 'out1Base',
                            `accP[${accIndex(g, c, m, a)}]`) : ''}
          }
        }`)).join('');
  return g.NCH === 1 ? writeChunk('0') : `
      for (var c = 0; c < ${g.NCH}; c++) {${writeChunk('c')}
      }`;
}

/** Workgroup memory of a tile pass (and stableTanh when softcapped). */
function tileDeclarations(g: TileShape): string {
  const {dkdv, BR, BS, RS, SS, NS, vecT} = g;
  return `
    var<workgroup> resA : array<vec4<f32>, ${BR * RS}>;
    var<workgroup> resB : array<vec4<f32>, ${BR * RS}>;
    var<workgroup> strA : array<vec4<f32>, ${BS * SS}>;
    var<workgroup> strB : array<vec4<f32>, ${BS * SS}>;${dkdv ? `
    var<workgroup> tileP : array<${vecT}, ${BR * NS}>;` : ''}
    var<workgroup> tileDS : array<${vecT}, ${BR * NS}>;${rowStatDeclarations(g)}`;
}

/** The query rows' statistics, and what phase B's options need (stableTanh, option helpers, tile state, keep bits). */
export function rowStatDeclarations(g: TileShape): string {
  const {dkdv, BR, BS} = g;
  return `
    var<workgroup> rowLse : array<f32, ${dkdv ? BS : BR}>;
    var<workgroup> rowDelta : array<f32, ${dkdv ? BS : BR}>;
${g.flags.softcap ? STABLE_TANH_WGSL : ''}${g.opts == null ? '' : optionFunctions(g.opts, 'sched')}${
    summarized(g) ? tileStateFunction('sched', g.dkdv ? g.BS : g.BR) : ''}${
    g.opts?.dropout ? `
    var<workgroup> keepTile : array<u32, ${BR * BS / 4}>;
${PHILOX_WGSL}` : ''}`;
}

/** isVisible(i, j): the per-element mask of partial tiles (window, keyLengths, row < seqQ, layout bit). */
export function visibilityFunction(g: TileShape): string {
  const optionCheck = g.opts != null && elementMasked(g.opts) ? `
      if (!optionVisible(i, j)) {
        return false;
      }` : '';
  const layoutCheck = optionCheck + (g.flags.layout ? `
      let bs = uniforms.layoutBlockSize;
      let bit = u32((lh * uniforms.layoutQueryBlocks + i / bs) * uniforms.layoutKeyBlocks + j / bs);
      return (u32(sched[uniforms.layoutOffset + i32(bit >> 5u)]) & (1u << (bit & 31u))) != 0u;` : `
      return true;`);
  return `
    // Element-level visibility inside a partial tile: src/plan's isVisible, plus keyLengths and row < seqQ.
    fn isVisible(i : i32, j : i32, lh : i32, keyLen : i32) -> bool {
      if (i >= uniforms.seqQ || j >= keyLen) {
        return false;
      }
      let diag = i + ${diagonalOffsetExpr(g.opts)};
      if (uniforms.windowLeft >= 0 && j < diag - uniforms.windowLeft) {
        return false;
      }
      if (uniforms.windowRight >= 0 && j > diag + uniforms.windowRight) {
        return false;
      }${layoutCheck}
    }
`;
}

/** The entry point: workgroup coordinates, stage the resident rows (and, for dq, their statistics), the tile loop,
 *  the writes. */
function tileMain(g: TileShape): string {
  const {dkdv, BR, T} = g;
  if (g.dbias) return dbiasMain(g);
  return `
    @compute @workgroup_size(${T})
    fn main(@builtin(local_invocation_index) localIndex : u32, @builtin(workgroup_id) workgroupId : vec3<u32>) {${
      tileCoordinates(g)}
      ${g.splitDq ? '' : accumulatorDeclarations(g)}
${g.splitDq ? splitDqKeyTiles(g) : `${
    stageRows(g, g.res, 'resA', 'resB', BR, dkdv ? 'k0' : 'q0', g.DP4, '0', g.RS)}${
    dkdv ? '' : stageStats(g, BR, 'q0')}${tileLoop(g)}
${writeResults(g)}`}
    }`;
}

/** The top of a tile pass's main: its (batch, head, tile), keyLen, and each invocation's share of the score tile and
 *  of the accumulators (shared with the tensor-core pass). */
export function tileCoordinates(g: TileShape): string {
  const {dkdv, BR, NR, NS, NC, NRG} = g;
  return `
      let tid = i32(localIndex);
      let b = i32(workgroupId.z);
      let statsRow = uniforms.statsBase + b * (2 + 2 * uniforms.heads * uniforms.seqQ);
      // The tiles with the most work under a causal mask start first (first key tiles for dK/dV, last query tiles for
      // dQ), which shortens the dispatch's tail. Workgroups start in x-fastest order: with uneven work (headsFastest)
      // heads are x, so those tiles of every head start first; else a head's tiles stay together (caches).
      let headsFastest = uniforms.headsFastest == 1;
      let tileIndex = i32(select(workgroupId.x, workgroupId.y, headsFastest));
      let headIndex = i32(select(workgroupId.y, workgroupId.x, headsFastest));${
          g.splitDq ? `
      let split = tileIndex;
      let hk = headIndex;
      let dqSplitBase = uniforms.dqAccBase + b * uniforms.workStride +
          split * uniforms.seqQ * uniforms.heads * uniforms.headDim;` : dkdv ? `
      let kt = tileIndex;
      let hk = headIndex;
      let k0 = kt * ${BR};` : `
      let qt = uniforms.numQueryTiles - 1 - tileIndex;
      let h = headIndex;
      let hk = h / uniforms.groupSize;
      let q0 = qt * ${BR};`}${g.opts != null ? `
      optBatch = uniforms.optBatchStart + b;${dkdv ? '' : `
      optHead = h;`}` : ''}
      // Loop bounds below are runtime values on purpose: columns past headDim and rows past the sequence end are
      // skipped, and software drivers (llvmpipe) do not fully unroll these loops, which made their coroutine
      // lowering of barriers take minutes.
      let dimVec4 = (uniforms.headDim + 3) / 4;
      let keyLen = ${keyLengthExpr(g)};
      // Score entries of this invocation: resident rows rIdx + m·${NR}, streamed rows sIdx + n·${NS}.
      let sIdx = tid % ${NS};
      let rIdx = tid / ${NS};
      // Accumulators of this invocation: vec4 columns accCol + a·${NC} of each chunk, resident rows rowGroup + m·${NRG}.
      let accCol = tid % ${NC};
      let rowGroup = tid / ${NC};
      let accActive = rowGroup < ${NRG};`;
}

/** The accumulators of a workgroup's resident rows (dK or dQ, and dV), zero. */
function accumulatorDeclarations(g: TileShape): string {
  const n = g.NCH * g.MR * g.AC;
  return `var acc = array<vec4<f32>, ${n}>();${g.dkdv ? `
      var accP = array<vec4<f32>, ${n}>();` : ''}`;
}

/**
 * Split-dQ: the workgroup's key tiles, one per round of nsplits tiles in snake order (round r takes tile
 * r·nsplits + split, or r·nsplits + nsplits − 1 − split in odd rounds: under a causal mask, where a key tile's work
 * falls with its index, every split then gets about the same work), each as the two-pass design's
 * dK/dV workgroup does it (stage K, V; stream the query tiles; write dK, dV) with phase D (dqPartial) adding dS·K
 * into the dQ accumulator this workgroup alone owns. The accumulator rows are zeroed first by the invocations that
 * later add to them (the same element → invocation map), so no barrier orders those stores.
 */
function splitDqKeyTiles(g: TileShape): string {
  return `${dqZero(g)}
      let rounds = (uniforms.numKeyTiles + uniforms.nsplits - 1) / uniforms.nsplits;
      for (var visit = 0; visit < rounds; visit++) {
        let kt = visit * uniforms.nsplits + select(split, uniforms.nsplits - 1 - split, visit % 2 == 1);
        if (kt < uniforms.numKeyTiles) {
        let k0 = kt * ${g.BR};
        // The previous key tile's phase D reads of resA are done.
        workgroupBarrier();
        ${accumulatorDeclarations(g)}
${stageRows(g, g.res, 'resA', 'resB', g.BR, 'k0', g.DP4, '0', g.RS)}${tileLoop(g)}
${writeResults(g)}
        }
      }`;
}

/**
 * How phase D shares a streamed (query) tile's dQ rows: invocation (dqRow, dqCol), dqCol = tid % DQ_COLS, owns vec4
 * columns dqCol + a·DQ_COLS (a < 4) of rows dqRow + m·DQ_ROWS (m < DQ_M) of each sweep of DQ_ROWS·DQ_M rows:
 * 4·DQ_M vec4 registers, 4 + DQ_M shared loads per 4·DQ_M vec4 FMAs.
 */
function dqMap(g: TileShape): {cols: number; rows: number; m: number; sweeps: number} {
  const cols = g.DP4 / 4, rows = Math.floor(g.T / cols);
  const m = Math.max(1, Math.min(2, Math.ceil(g.BS / rows)));
  return {cols, rows, m, sweeps: Math.ceil(g.BS / (rows * m))};
}

/** The dQ accumulator index of query row i, vec4 column starting at element d, head h (split-dQ). */
const dqAccIndex = (i: string, d: string) => `dqSplitBase + (${i} * uniforms.heads + h) * uniforms.headDim + ${d}`;

/** For each (sweep, m, a) of this invocation's share of a query tile (dqMap): body(s, m, a), s the tile row. */
function dqSweeps(g: TileShape, body: (m: number, a: number) => string): string {
  const {cols, rows, m: M, sweeps} = dqMap(g);
  return `
        if (dqActive) {
          for (var sw = 0; sw < ${sweeps}; sw++) {${range(M).flatMap((m) => range(4).map((a) => `
            {
              let s = sw * ${rows * M} + dqRow + ${m * rows};
              let d = (dqCol + ${a * cols}) * 4;${body(m, a)}
            }`)).join('')}
          }
        }`;
}

/** Split-dQ: zero the accumulator rows of every query head of the group (this split's accumulator). */
function dqZero(g: TileShape): string {
  const {cols, rows} = dqMap(g);
  return `
      let dqCol = tid % ${cols};
      let dqRow = tid / ${cols};
      let dqActive = dqRow < ${rows};
      for (var g = 0; g < uniforms.groupSize; g++) {
        let h = hk * uniforms.groupSize + g;
        for (var qt = 0; qt < uniforms.numQueryTiles; qt++) {
          let q0 = qt * ${g.BS};${dqSweeps(g, () => `
              let i = q0 + s;
              if (s < ${g.BS} && i < uniforms.seqQ && d < uniforms.headDim) {
                let o = ${dqAccIndex('i', 'd')};
                ${g.flags.vec4 ? 'work[o / 4] = vec4<f32>(0.0);' : dqStores(() => 'work[o + k] = 0.0;')}
              }`)}
        }
      }`;
}

/** The stores of one vec4 column at accumulator index o (`store` with k the component; only those below
 *  headDim). */
function dqStores(store: () => string): string {
  return `{ let k = 0; ${store()} }${range(3).map((k) => `
                if (d + ${k + 1} < uniforms.headDim) { let k = ${k + 1}; ${store()} }`).join('')}`;
}

/**
 * Phase D (split-dQ): dQ_partial = dS·K of this (query tile, key tile), from tileDS and the resident K (resA), added
 * to the workgroup's own dQ accumulator (read, add, write: the element → invocation map is the same for every tile,
 * so each element is only ever touched by one invocation, in the order the workgroup visits its tiles). Rows past
 * the sequence end add nothing; in partial tiles masked entries are skipped exactly as phase C skips them.
 * For an f16-operand variant, only the loads of ds and K here (and of tileDS/resA elsewhere) change type.
 */
function dqPartial(g: TileShape): string {
  if (!g.splitDq) return '';
  const {M, NS, RS, TS} = {M: dqMap(g).m, NS: g.NS, RS: g.RS, TS: g.TS};
  const dsAt = (s: string) => TS === 1 ? `tileDS[r * ${NS} + ${s}]` : `tileDS[r * ${NS} + ${s} % ${NS}][${s} / ${NS}]`;
  const loop = (guarded: boolean) => `
            for (var r = 0; r < keyRows; r++) {${range(M).map((m) => `
              let dsv${m} = ${dsAt(`sr${m}`)};${guarded ? `
              let keep${m} = (bitcast<u32>(dsv${m}) & 0x7fffffffu) != 0u ||
                  (bitcast<u32>(rowLse[sr${m}]) != ${LSE_EMPTY_BITS}u && isVisible(q0 + sr${m}, k0 + r, lh, keyLen));` : ''}`)
      .join('')}${range(4).map((a) => `
              {
                let kv = resA[r * ${RS} + dqCol + ${a * dqMap(g).cols}];${range(M).map((m) => guarded ? `
                dq${m}_${a} = select(dq${m}_${a}, dq${m}_${a} + dsv${m} * kv, keep${m});` : `
                dq${m}_${a} = dq${m}_${a} + dsv${m} * kv;`).join('')}
              }`).join('')}
            }`;
  const {rows, sweeps} = dqMap(g);
  return `
      // Phase D: dS·K into this split's dQ accumulator.
      {
        let keyRows = min(${g.BR}, uniforms.seqK - k0);
        if (dqActive) {
          for (var sw = 0; sw < ${sweeps}; sw++) {${range(M).map((m) => `
            let sr${m} = min(sw * ${rows * M} + dqRow + ${m * rows}, ${g.BS - 1});`).join('')}${
              range(M).flatMap((m) => range(4).map((a) => `
            var dq${m}_${a} = vec4<f32>(0.0);`)).join('')}
            if (partial) {${loop(true)}
            } else {${loop(false)}
            }${range(M).flatMap((m) => range(4).map((a) => `
            {
              let s = sw * ${rows * M} + dqRow + ${m * rows};
              let d = (dqCol + ${a * dqMap(g).cols}) * 4;
              let i = q0 + s;
              if (s < ${g.BS} && i < uniforms.seqQ && d < uniforms.headDim) {
                let o = ${dqAccIndex('i', 'd')};
                let add = dq${m}_${a};
                ${g.flags.vec4 ? 'work[o / 4] = work[o / 4] + add;' :
                    dqStores(() => 'work[o + k] = work[o + k] + add[k];')}
              }
            }`)).join('')}
          }
        }
      }`;
}

/** keyLengths[b] (clamped to seqK, from the side buffer with options), or seqK. */
export function keyLengthExpr(g: TileShape): string {
  // From locals, not the private optBatch: loop bounds with barriers inside must be uniform for WGSL's analysis.
  if (g.opts != null) return 'sched[uniforms.sideBatch + 2 * (uniforms.optBatchStart + b)]';
  return g.flags.keyLengths ? 'bitcast<i32>(stats[statsRow])' : 'uniforms.seqK';
}

/** The tensor-core dBias pass's pieces (flash_attention_grad_tc_webgpu.ts): main's extra builtins and first
 *  statements, and what computes one tile's S and dP and runs phase B (in place of staging rows and streamedTile). */
export interface DbiasTensorCoreParts {
  builtins: string;
  preamble: string;
  tile: string;
}

/**
 * The dBias pass: one workgroup per (query tile, bias head, bias batch) walks every key tile; for each it sums, in a
 * fixed order, dS of every (batch, head) the bias element covers (all batches when the bias broadcasts over batch,
 * all heads when over heads) into registers, recomputing S and dP tile by tile like the dQ pass (whose tiling it
 * uses), and writes the tile of dBias once: deterministic, no atomics, no [batch, heads, seqQ, seqK] scratch. Tiles
 * the schedule or keyLengths skip are written as zeros.
 */
export function dbiasMain(g: TileShape, tc: DbiasTensorCoreParts | null = null): string {
  const {BR, BS, T, NR, NS} = g;
  const ids = scoreIds(g);
  return `
    @compute @workgroup_size(${T})
    fn main(@builtin(local_invocation_index) localIndex : u32, @builtin(workgroup_id) workgroupId : vec3<u32>${
      tc?.builtins ?? ''}) {${tc?.preamble ?? ''}
      let tid = i32(localIndex);
      let qt = i32(workgroupId.x);
      let hb = i32(workgroupId.y);
      let bb = i32(workgroupId.z);
      let q0 = qt * ${BR};
      let dimVec4 = (uniforms.headDim + 3) / 4;
      let sIdx = tid % ${NS};
      let rIdx = tid / ${NS};
      let coverBatches = select(1, uniforms.numBatches, uniforms.biasBatchStride == 0);
      let coverHeads = select(1, uniforms.heads, uniforms.biasHeadStride == 0);
      for (var kt = 0; kt < uniforms.numKeyTiles; kt++) {
        let k0 = kt * ${BS};
        let s0 = k0;
        let streamedRows = min(${BS}, uniforms.seqK - s0);
        ${ids.map(([m, n]) => `var db${m}_${n} = 0.0;`).join(' ')}
        for (var cb = 0; cb < coverBatches; cb++) {
          for (var ch = 0; ch < coverHeads; ch++) {
            let b = select(bb, cb, uniforms.biasBatchStride == 0);
            let h = select(hb, ch, uniforms.biasHeadStride == 0);
            let hk = h / uniforms.groupSize;
            let lh = h % uniforms.numMaskHeads;
            optBatch = uniforms.optBatchStart + b;
            optHead = h;
            let statsRow = uniforms.statsBase + b * (2 + 2 * uniforms.heads * uniforms.seqQ);
            let keyLen = ${keyLengthExpr(g)};
            // Whether the schedule visits key tile kt from this row (state 1: partial, 2: full).
            let rowIndex = lh * uniforms.numQueryTiles + qt;
            var state = 0;
            for (var run = sched[uniforms.runStartOffset + rowIndex]; run < sched[uniforms.runStartOffset + rowIndex + 1];
                 run++) {
              let first = sched[uniforms.runsOffset + 3 * run];
              if (kt >= first && kt < first + sched[uniforms.runsOffset + 3 * run + 1]) {
                state = select(1, 2, sched[uniforms.runsOffset + 3 * run + 2] == 1);
              }
            }
            ${summarized(g) ? `if (state > 0) {
              let summary = tileState(uniforms.optBatchStart + b, h, qt, kt);
              state = select(min(state, select(1, 2, summary == 2)), 0, summary == 0);
            }` : ''}
            if (state > 0 && k0 < keyLen) {
              let partial = state == 1 || k0 + ${BS} > keyLen;
              // The previous (batch, head)'s reads of the staged rows are done.
              workgroupBarrier();
${tc != null ? stageStats(g, BR, 'q0') + tc.tile :
    stageRows(g, g.res, 'resA', 'resB', BR, 'q0', g.DP4, '0', g.RS) + stageStats(g, BR, 'q0') + streamedTile(g)}
            }
          }
        }
        ${ids.map(([m, n]) => `
        {
          let i = q0 + rIdx + ${m * NR};
          let j = k0 + sIdx + ${n * NS};
          if (i < uniforms.seqQ && j < uniforms.seqK) {
            dBias[bb * uniforms.biasBatchStride + hb * uniforms.biasHeadStride + i * uniforms.seqK + j] = db${m}_${n};
          }
        }`).join('')}
      }
    }`;
}

/**
 * x rounded to the nearest f16 value (ties to even), as an f32: on the bits, because compilers may fold f32(f16(x)) to
 * x (Mesa's lavapipe does; see SPLIT_HI_WGSL in flash_attention_tc_webgpu.ts). Exact for |x| in f16's normal range
 * (2^-14 … 65504), which is where the tensor-core passes' packed operands live; below it f16 keeps fewer bits (an
 * absolute difference under 2^-25), above it f16 overflows.
 */
const ROUND_TO_F16_WGSL = `
    fn roundToF16(x : f32) -> f32 {
      let bits = bitcast<u32>(x);
      return bitcast<f32>((bits + 0xfffu + ((bits >> 13u) & 1u)) & 0xffffe000u);
    }`;

/** Pass 1's WGSL (see AttentionGradStatsProgram). */
function statsShader(roundDy: boolean): string {
  return `${roundDy ? ROUND_TO_F16_WGSL : ''}
    @compute @workgroup_size(64)
    fn main(@builtin(local_invocation_index) localIndex : u32, @builtin(workgroup_id) workgroupId : vec3<u32>) {
      let i = i32(workgroupId.x) * 64 + i32(localIndex);
      let h = i32(workgroupId.y);
      let b = i32(workgroupId.z);
      let statsRow = uniforms.statsBase + b * (2 + 2 * uniforms.heads * uniforms.seqQ);
      if (i < uniforms.seqQ) {
        let row = (b * uniforms.heads + h) * uniforms.seqQ + i;
        let base = ((b * uniforms.seqQ + i) * uniforms.heads + h) * uniforms.headDim;
        // rowsum(dO∘O) in exactly the order the tile passes sum dP = dO·v (vec4 dot products, zero-padded, in
        // ascending columns): where O = v (a row that sees one key) dP − delta is then exactly 0, not rounding noise.
        var sum = 0.0;
        for (var d = 0; d < uniforms.headDim; d += 4) {
          let ia = uniforms.dyBase + base + d;
          let ib = uniforms.oBase + base + d;
          var va = vec4<f32>(0.0);
          var vb = vec4<f32>(0.0);
          if (d + 4 <= uniforms.headDim) {
            va = vec4<f32>(dy[ia], dy[ia + 1], dy[ia + 2], dy[ia + 3]);
            vb = vec4<f32>(o[ib], o[ib + 1], o[ib + 2], o[ib + 3]);
          } else {
            for (var e = 0; e < uniforms.headDim - d; e++) {
              va[e] = dy[ia + e];
              vb[e] = o[ib + e];
            }
          }${roundDy ? `
          // The tensor-core passes' dP uses dO rounded to f16: so does delta.
          va = vec4<f32>(roundToF16(va.x), roundToF16(va.y), roundToF16(va.z), roundToF16(va.w));` : ''}
          sum = sum + dot(va, vb);
        }
        let l = lse[uniforms.lseBase + row];
        // -Infinity, recognised by its bits (compilers may assume arithmetic never meets infinities).
        let empty = bitcast<u32>(l) == 0xff800000u;
        let si = statsRow + 2 + 2 * (h * uniforms.seqQ + i);
        stats[si] = select(l, ${LSE_EMPTY}, empty);
        stats[si + 1] = sum - dLse[uniforms.dLseBase + row];
      }
      if (i == 0 && h == 0) {
        stats[statsRow] = bitcast<f32>(keyLengths[uniforms.batch0 + b]);
        stats[statsRow + 1] = 0.0;
      }
    }`;
}

/**
 * Pass 1: stats [batches, statsPerBatch] from o (the forward output), dy, lse, dLse, keyLengths.
 * Dispatch [ceil(seqQ / 64), heads, batches].
 */
export class AttentionGradStatsProgram implements MultiOutputProgram {
  outputNames = ['stats'];
  outputTypes = ['f32'];
  variableNames = ['o', 'dy', 'lse', 'dLse', 'keyLengths'];
  variableTypes = ['f32', 'f32', 'f32', 'f32', 'i32'];
  uniformFields: Array<[string, UniformType]> = [
    ['seqQ', 'i32'], ['heads', 'i32'], ['headDim', 'i32'], ['oBase', 'i32'], ['dyBase', 'i32'], ['lseBase', 'i32'],
    ['dLseBase', 'i32'], ['statsBase', 'i32'], ['batch0', 'i32'],
  ];
  shaderKey: string;

  /** `roundDy`: delta from dO rounded to f16, as the tensor-core passes (flash_attention_grad_tc_webgpu.ts) see it. */
  constructor(readonly roundDy = false) {
    this.shaderKey = `attentionGradStats${roundDy ? 'F16' : ''}`;
  }

  getUserCode(): string {
    return statsShader(this.roundDy);
  }
}

/**
 * Pass 2 ('dkdv', outputs [dk, dv]) or pass 3 ('dq', output [dq]). Inputs: q, k, v, dy (the output gradient),
 * stats (pass 1's output), sched (the schedule buffer of schedule_buffers.ts).
 * Dispatch: [resident tiles, heads ('dq') or kv heads ('dkdv'), batches].
 * Loops over per-invocation rows, columns and chunks are unrolled in the WGSL, so that every accumulator is a named
 * scalar/vec4 the compiler keeps in registers.
 */
export class AttentionGradTileProgram implements MultiOutputProgram {
  outputNames: string[];
  outputTypes: string[];
  variableNames = ['q', 'k', 'v', 'dy', 'stats', 'sched'];
  variableTypes = ['f32', 'f32', 'f32', 'f32', 'f32', 'i32'];
  uniformFields = TILE_UNIFORMS;
  shaderKey: string;
  private readonly shape: TileShape;

  /**
   * `opts` (attention_options.ts): the plan's per-call options, or null for the plain kernel. With options the side
   * buffer replaces `stats` and `sched`, and the mask / bias follow; `dbias` makes the dBias pass (pass 'dq' tiling).
   */
  constructor(
      readonly pass: GradPass, readonly tiles: GradTiles, readonly flags: TileFlags,
      readonly opts: OptionFlags | null = null, dbias = false, directBias = false, splitDq = false) {
    const combined = opts != null && pass === 'dkdv' && opts.mask != null && opts.bias && !splitDq;
    this.shape = tileShape(pass, tiles, flags, gradThreadMap(tiles), opts, combined, dbias, directBias,
                           splitDq && pass === 'dkdv');
    const first = pass === 'dkdv' ? (splitDq ? ['work'] : combined ? ['dkv'] : ['dk', 'dv']) : ['dq'];
    this.outputNames = dbias ? ['dBias'] : directBias ? [...first, 'dBias'] : first;
    const elem = flags.vec4 ? 'vec4<f32>' : 'f32';
    // split-dQ's `work` (dQ accumulators, dK, dV) as vec4s too: every row and *Base of it is a multiple of headDim.
    this.outputTypes = this.outputNames.map((n) => n === 'work' ? elem : 'f32');
    this.variableTypes = [elem, elem, elem, elem, 'f32', 'i32'];
    if (opts != null) {
      const extra = optionBindings(opts);
      this.variableNames = ['q', 'k', 'v', 'dy', 'sched', ...extra.map(([n]) => n)];
      this.variableTypes = [elem, elem, elem, elem, 'i32', ...extra.map(([, t]) => t)];
      this.uniformFields = [...TILE_UNIFORMS, ...OPTION_UNIFORMS];
    }
    const t = tiles;
    this.shaderKey = `attentionGrad_${dbias ? 'dbias' : directBias ? 'dqdbias' : pass}${splitDq ? 'split' : ''}_${t.resident}_${t.streamed}_${t.paddedDim}_${t.chunk}_${
        t.threads}_` +
        `${t.accCols ?? 1}_${this.shape.prefetch ? 'p' : ''}${flags.vec4 ? 'v4' : ''}_` +
        `${flags.softcap ? 's' : ''}${flags.layout ? 'l' : ''}${flags.keyLengths ? 'k' : ''}${optionKey(opts)}${
        opts != null ? gradOptionCodeKey(this.shape.code) : ''}`;
  }

  getUserCode(): string {
    const g = this.shape;
    return tileDeclarations(g) + visibilityFunction(g) + tileMain(g);
  }
}
