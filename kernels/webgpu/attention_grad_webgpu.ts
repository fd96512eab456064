/**
 * WebGPU programs of the attention backward pass (FlashAttention-2 backward, without atomics: WGSL has no float
 * atomics, and owning every output element in exactly one invocation also makes the result bit-identical run to run).
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
 * Both tile passes are the same program: "resident" rows R (the workgroup's tile) meet "streamed" rows S. Scores
 * are dot(R1[r], S1[s]) = q·k and dot(R2[r], S2[s]) = dO·v either way, and both accumulate dS[r][s]·S1[s] (dK or
 * dQ); 'dkdv' also accumulates P[r][s]·S2[s] (dV). Only which rows are queries and which are keys differs.
 *
 * Sequence lengths, heads, window and offsets are uniforms: one pipeline per (pass, padded headDim, tiles, flags)
 * serves every problem size. headDim is padded to a multiple of 16 in workgroup memory (zero-filled, so padding
 * adds nothing to any dot product). When a streamed tile does not fit whole in workgroup memory it is streamed in
 * chunks of headDim columns (reloaded for the accumulation phase).
 */
import type {MultiOutputProgram, UniformType} from './program_runner_webgpu.js';
import {STABLE_TANH_WGSL} from './wgsl_math_webgpu.js';

export type GradPass = 'dkdv' | 'dq';

/** Stands in for -Infinity (lse of an empty row, or a padding row): exp(t − LSE_EMPTY) is exactly 0. */
export const LSE_EMPTY = 3.0e38;
const LSE_EMPTY_BITS = new Uint32Array(new Float32Array([LSE_EMPTY]).buffer)[0];

/** The tiling of one tile pass; chosen by chooseGradTiles for the device's limits. */
export interface GradTiles {
  /** Rows of the tile a workgroup owns: keys ('dkdv') or queries ('dq'). */
  resident: number;
  /** Rows of each tile streamed past it: queries ('dkdv') or keys ('dq'). */
  streamed: number;
  /** headDim rounded up to a multiple of 16. */
  paddedDim: number;
  /** headDim columns of a streamed tile held at once (divides paddedDim, multiple of 4). */
  chunk: number;
  /** Invocations per workgroup. */
  threads: number;
  /** vec4 columns of the accumulators each invocation owns per chunk (default 1; must divide chunk / 4). */
  accCols?: number;
}

/** Bytes of workgroup memory a tile pass uses. */
export function gradTilesStorageBytes(pass: GradPass, t: GradTiles): number {
  const residentVec4 = 2 * t.resident * (t.paddedDim / 4 + 1);
  const streamedVec4 = 2 * t.streamed * (t.chunk / 4 + 1);
  const tileFloats = (pass === 'dkdv' ? 2 : 1) * t.resident * t.streamed;
  const statFloats = 2 * (pass === 'dkdv' ? t.streamed : t.resident);
  return 16 * (residentVec4 + streamedVec4) + 4 * (tileFloats + statFloats);
}

/** How the invocations share the score tile (phase A/B) and the accumulators (phase C). Throws if t cannot work. */
export interface GradThreadMap {
  /** Score tile: each invocation owns rowsPerThread resident × colsPerThread streamed entries, strided by the
   *  number of invocations along each axis (residentThreads × streamedThreads = threads). */
  rowsPerThread: number;
  colsPerThread: number;
  residentThreads: number;
  streamedThreads: number;
  /** Accumulators: of each chunk, invocation owns vec4 columns colGroup + a·colGroups (a < accCols) of resident rows
   *  rowGroup + m·rowGroups (m < accRows), with colGroup = index % colGroups, rowGroup = index / colGroups. */
  chunkVec4: number;
  accCols: number;
  colGroups: number;
  rowGroups: number;
  accRows: number;
}

export function gradThreadMap(t: GradTiles): GradThreadMap {
  const {resident: BR, streamed: BS, threads: T} = t;
  const scores = BR * BS;
  if (scores % T !== 0) throw new Error(`grad tiles: ${BR}x${BS} scores do not split over ${T} invocations`);
  const perThread = scores / T;
  let colsPerThread = 1;
  for (const c of [4, 2, 1]) {
    if (perThread % c === 0 && BS % c === 0 && T % (BS / c) === 0 && BR % (perThread / c) === 0 &&
        (BS / c) * (BR / (perThread / c)) === T) {
      colsPerThread = c;
      break;
    }
  }
  const rowsPerThread = perThread / colsPerThread;
  const streamedThreads = BS / colsPerThread, residentThreads = BR / rowsPerThread;
  if (streamedThreads * residentThreads !== T || !Number.isInteger(rowsPerThread)) {
    throw new Error(`grad tiles: no score mapping for ${BR}x${BS} over ${T} invocations`);
  }
  const chunkVec4 = t.chunk / 4, accCols = t.accCols ?? 1;
  if (!Number.isInteger(chunkVec4 / accCols)) throw new Error(`grad tiles: accCols ${accCols} must divide ${chunkVec4}`);
  const colGroups = chunkVec4 / accCols;
  if (colGroups > T) throw new Error(`grad tiles: chunk ${t.chunk} wider than 4 × ${accCols} × ${T} invocations`);
  const rowGroups = Math.floor(T / colGroups);
  return {
    rowsPerThread, colsPerThread, residentThreads, streamedThreads, chunkVec4, accCols, colGroups, rowGroups,
    accRows: Math.ceil(BR / rowGroups),
  };
}

/** Uniform fields of the tile passes, in the order the executor passes their values. `*Base` fields are the
 *  element offset of batch 0 of the dispatch inside each binding (non-zero when work is split by batch). */
export const TILE_UNIFORMS: Array<[string, UniformType]> = [
  ['seqQ', 'i32'], ['seqK', 'i32'], ['heads', 'i32'], ['kvHeads', 'i32'], ['groupSize', 'i32'], ['headDim', 'i32'],
  ['diagonalOffset', 'i32'], ['windowLeft', 'i32'], ['windowRight', 'i32'], ['numQueryTiles', 'i32'],
  ['numKeyTiles', 'i32'], ['numMaskHeads', 'i32'], ['runStartOffset', 'i32'], ['runsOffset', 'i32'],
  ['layoutOffset', 'i32'], ['layoutBlockSize', 'i32'], ['layoutQueryBlocks', 'i32'], ['layoutKeyBlocks', 'i32'],
  ['qBase', 'i32'], ['kBase', 'i32'], ['vBase', 'i32'], ['dyBase', 'i32'], ['statsBase', 'i32'],
  ['out0Base', 'i32'], ['out1Base', 'i32'], ['scale', 'f32'], ['softcap', 'f32'], ['headsFastest', 'i32'],
];

export interface TileFlags {
  softcap: boolean;
  layout: boolean;
  keyLengths: boolean;
}

/** Floats of pass 1's output per batch: keyLengths[b] (bit-cast) and a pad, then (lseEff, delta) per (head, row). */
export function statsPerBatch(heads: number, seqQ: number): number {
  return 2 + 2 * heads * seqQ;
}

/**
 * Pass 2 ('dkdv', outputs [dk, dv]) or pass 3 ('dq', output [dq]). Inputs: q, k, v, dy (the output gradient),
 * stats (pass 1's output), sched (the schedule buffer of schedule_webgpu.ts).
 * Dispatch: [resident tiles, heads ('dq') or kv heads ('dkdv'), batches].
 */
export class AttentionGradTileProgram implements MultiOutputProgram {
  outputNames: string[];
  outputTypes: string[];
  variableNames = ['q', 'k', 'v', 'dy', 'stats', 'sched'];
  variableTypes = ['f32', 'f32', 'f32', 'f32', 'f32', 'i32'];
  uniformFields = TILE_UNIFORMS;
  shaderKey: string;
  private readonly map: GradThreadMap;

  constructor(readonly pass: GradPass, readonly tiles: GradTiles, readonly flags: TileFlags) {
    this.map = gradThreadMap(tiles);
    this.outputNames = pass === 'dkdv' ? ['dk', 'dv'] : ['dq'];
    this.outputTypes = this.outputNames.map(() => 'f32');
    const t = tiles;
    this.shaderKey = `attentionGrad_${pass}_${t.resident}_${t.streamed}_${t.paddedDim}_${t.chunk}_${t.threads}_` +
        `${t.accCols ?? 1}_` +
        `${flags.softcap ? 's' : ''}${flags.layout ? 'l' : ''}${flags.keyLengths ? 'k' : ''}`;
  }

  getUserCode(): string {
    return tileShader(this.pass, this.tiles, this.flags, this.map);
  }
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
  shaderKey = 'attentionGradStats';

  getUserCode(): string {
    return `
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
          }
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

/** WGSL of a tile pass. Loops over per-invocation rows, columns and chunks are unrolled here, so that every
 *  accumulator is a named scalar/vec4 the compiler keeps in registers. */
function tileShader(pass: GradPass, t: GradTiles, flags: TileFlags, map: GradThreadMap): string {
  const dkdv = pass === 'dkdv';
  const BR = t.resident, BS = t.streamed, T = t.threads;
  const DP4 = t.paddedDim / 4, C4 = t.chunk / 4, NCH = t.paddedDim / t.chunk;
  const RS = DP4 + 1, SS = C4 + 1;  // +1: consecutive rows start on different banks
  const {rowsPerThread: TR, colsPerThread: TS, residentThreads: NR, streamedThreads: NS} = map;
  // tileP / tileDS hold one vecTS per (resident row, streamed thread): element [r * NS + sg] is entries
  // (r, sg + n·NS), n < TS — exactly one invocation's streamed entries of row r, so each element is written whole by
  // one invocation (stores to different components of one vector may race) and phase C reads TS entries per load.
  const vecT = TS === 1 ? 'f32' : `vec${TS}<f32>`;
  const comp = (x: string, n: number) => TS === 1 ? x : `${x}[${n}]`;
  const pack = (xs: string[]) => TS === 1 ? xs[0] : `${vecT}(${xs.join(', ')})`;
  const {rowGroups: NRG, accRows: MR, accCols: AC, colGroups: NC} = map;
  const accIndex = (c: string, m: number, a: number) => `(${c} * ${MR} + ${m}) * ${AC} + ${a}`;
  const range = (n: number) => Array.from({length: n}, (_, i) => i);

  const queries: RowSource = {a: 'q', b: 'dy', aBase: 'qBase', bBase: 'dyBase', seq: 'uniforms.seqQ',
                              heads: 'uniforms.heads', head: 'h'};
  const keys: RowSource = {a: 'k', b: 'v', aBase: 'kBase', bBase: 'vBase', seq: 'uniforms.seqK',
                           heads: 'uniforms.kvHeads', head: 'hk'};
  const res = dkdv ? keys : queries, str = dkdv ? queries : keys;

  /** Loads rows row0 .. row0+rows-1, vec4 columns col0 .. col0+cols-1 of src.a and src.b into two shared arrays
   *  (zeros past the sequence end and past headDim). */
  const loadRows = (src: RowSource, dstA: string, dstB: string, rows: number, row0: string, cols: number,
                    col0: string, stride: number) => `
      for (var idx = tid; idx < ${rows * cols}; idx += ${T}) {
        let r = idx / ${cols};
        let col = idx - r * ${cols};
        let row = ${row0} + r;
        var va = vec4<f32>(0.0);
        var vb = vec4<f32>(0.0);
        let d = (${col0} + col) * 4;
        if (row < ${src.seq} && d < uniforms.headDim) {
          let base = ((b * ${src.seq} + row) * ${src.heads} + ${src.head}) * uniforms.headDim + d;
          let ia = uniforms.${src.aBase} + base;
          let ib = uniforms.${src.bBase} + base;
          if (d + 4 <= uniforms.headDim) {
            va = vec4<f32>(${src.a}[ia], ${src.a}[ia + 1], ${src.a}[ia + 2], ${src.a}[ia + 3]);
            vb = vec4<f32>(${src.b}[ib], ${src.b}[ib + 1], ${src.b}[ib + 2], ${src.b}[ib + 3]);
          } else {
            for (var e = 0; e < uniforms.headDim - d; e++) {
              va[e] = ${src.a}[ia + e];
              vb[e] = ${src.b}[ib + e];
            }
          }
        }
        ${dstA}[r * ${stride} + col] = va;
        ${dstB}[r * ${stride} + col] = vb;
      }`;

  /** (lseEff, delta) of query rows q0 .. q0+n-1 of head h into rowLse / rowDelta (padding rows: P = 0). */
  const loadStats = (n: number, q0: string) => `
      for (var s = tid; s < ${n}; s += ${T}) {
        let i = ${q0} + s;
        var l = ${LSE_EMPTY};
        var dl = 0.0;
        if (i < uniforms.seqQ) {
          let si = statsRow + 2 + 2 * (h * uniforms.seqQ + i);
          l = stats[si];
          dl = stats[si + 1];
        }
        rowLse[s] = l;
        rowDelta[s] = dl;
      }`;

  const scoreIds = range(TR).flatMap((m) => range(TS).map((n) => [m, n]));
  const scoreDecls = scoreIds.map(([m, n]) => `
      var sc${m}_${n} = 0.0;
      var dp${m}_${n} = 0.0;`).join('');
  const resRow = (m: number) => `(rIdx + ${m * NR})`;
  const strRow = (n: number) => `(sIdx + ${n * NS})`;

  // Phase A: partial scores q·k and dO·v of this invocation's entries over chunk `c` of headDim.
  const phaseA = (c: string) => `
      for (var d4 = 0; d4 < min(${C4}, dimVec4 - ${c} * ${C4}); d4++) {${range(TR).map((m) => `
        let xa${m} = resA[${resRow(m)} * ${RS} + ${c} * ${C4} + d4];
        let xb${m} = resB[${resRow(m)} * ${RS} + ${c} * ${C4} + d4];`).join('')}${range(TS).map((n) => `
        let ya${n} = strA[${strRow(n)} * ${SS} + d4];
        let yb${n} = strB[${strRow(n)} * ${SS} + d4];`).join('')}${scoreIds.map(([m, n]) => `
        sc${m}_${n} = sc${m}_${n} + dot(xa${m}, ya${n});
        dp${m}_${n} = dp${m}_${n} + dot(xb${m}, yb${n});`).join('')}
      }`;

  // Entry (resident row r, streamed row s) of a tile as query row i and key j.
  const entryQ = (r: string, s: string) => dkdv ? `q0 + ${s}` : `q0 + ${r}`;
  const entryK = (r: string, s: string) => dkdv ? `k0 + ${r}` : `k0 + ${s}`;
  // Phase B: P and dS of each entry into workgroup memory, one vecTS per resident row.
  const stat = dkdv ? 's' : 'r';
  const phaseB = range(TR).map((m) => `
      {
        let r = ${resRow(m)};${range(TS).map((n) => `
        var p${n} = 0.0;
        var ds${n} = 0.0;
        {
          let s = ${strRow(n)};
          var tt = sc${m}_${n} * uniforms.scale;
          var dtds = 1.0;${flags.softcap ? `
          let th = stableTanh(tt / uniforms.softcap);
          tt = uniforms.softcap * th;
          dtds = 1.0 - th * th;` : ''}
          p${n} = exp(tt - rowLse[${stat}]);
          ds${n} = p${n} * (dp${m}_${n} - rowDelta[${stat}]) * dtds;
          // A masked entry is exactly 0, whatever its dO·v (0·NaN would be NaN).
          if (partial && !isVisible(${entryQ('r', 's')}, ${entryK('r', 's')}, lh, keyLen)) {
            p${n} = 0.0;
            ds${n} = 0.0;
          }
        }`).join('')}${dkdv ? `
        tileP[r * ${NS} + sIdx] = ${pack(range(TS).map((n) => `p${n}`))};` : ''}
        tileDS[r * ${NS} + sIdx] = ${pack(range(TS).map((n) => `ds${n}`))};
      }`).join('');

  // Phase C: acc += dS[r][s]·S1[s] (dK or dQ) and, for dkdv, accP += P[r][s]·S2[s] (dV), for chunk `c`; dS and P
  // are read TS streamed rows per shared-memory load. Streamed rows past the sequence end hold zeros and have
  // P = dS = 0, so the padding entries of a partly filled group add exactly 0. In partial tiles a masked entry adds
  // nothing at all: a masked key's NaN/Inf k (or a masked query's q, dO) must not reach the row (0·NaN = NaN), as in
  // the forward's guarded P·V, while a visible entry with dS = 0 still multiplies (0·Inf = NaN, as the reference
  // does for a -Infinity score), except in an empty row (every score -Infinity: gradients 0, no contribution).
  // Masked entries have dS = 0 (phase B), so visibility is only evaluated for zeros (a -0.0 marker would be cheaper,
  // but Vulkan does not promise to preserve the sign of zero). The tests compare bits: Vulkan compilers may assume
  // no NaN in float compares (a NaN dS or lse must count as "not zero", "not empty"). Full tiles have no masked
  // entries and run the plain sums (known limit: an empty row inside a full tile, with an infinite k or q there,
  // gets 0·Infinity = NaN).
  // Resident rows past BR (when rowGroups do not divide BR) read row BR - 1 and accumulate into registers that are
  // never written out.
  const add = (target: string, w: string, y: string, keep: string | null) => keep != null ?
      `${target} = select(${target}, ${target} + ${w} * ${y}, ${keep});` : `${target} = ${target} + ${w} * ${y};`;
  const phaseC = (c: string) => `
      if (accActive && partial) {${phaseCLoop(c, true)}
      } else if (accActive) {${phaseCLoop(c, false)}
      }`;
  function phaseCLoop(c: string, guarded: boolean): string {
    return `
        for (var sg = 0; sg < min(${NS}, streamedRows); sg++) {${range(MR).map((m) => {
          const r = (m + 1) * NRG > BR ? `min(rowGroup + ${m * NRG}, ${BR - 1})` : `(rowGroup + ${m * NRG})`;
          return `
          let ds${m} = tileDS[${r} * ${NS} + sg];${dkdv ? `
          let p${m} = tileP[${r} * ${NS} + sg];` : ''}${guarded ? range(TS).map((n) => `
          let keep${m}_${n} = (bitcast<u32>(${comp(`ds${m}`, n)}) & 0x7fffffffu) != 0u ||
              (bitcast<u32>(rowLse[${dkdv ? `sg + ${n * NS}` : r}]) != ${LSE_EMPTY_BITS}u &&
              isVisible(${entryQ(r, `sg + ${n * NS}`)}, ${entryK(r, `sg + ${n * NS}`)}, lh, keyLen));`).join('') : ''}`;
        }).join('')}${range(TS).map((n) => `${range(AC).map((a) => `
          {
            let ya = strA[(sg + ${n * NS}) * ${SS} + accCol + ${a * NC}];${dkdv ? `
            let yb = strB[(sg + ${n * NS}) * ${SS} + accCol + ${a * NC}];` : ''}${range(MR).map((m) => `
            ${add(`acc[${accIndex(c, m, a)}]`, comp(`ds${m}`, n), 'ya', guarded ? `keep${m}_${n}` : null)}${dkdv ? `
            ${add(`accP[${accIndex(c, m, a)}]`, comp(`p${m}`, n), 'yb', guarded ? `keep${m}_${n}` : null)}` : ''}`).join('')}
          }`).join('')}`).join('')}
        }`;
  }

  const streamedChunk = (c: string) => loadRows(str, 'strA', 'strB', BS, 's0', C4, `${c} * ${C4}`, SS);

  // One streamed tile: scores (chunk by chunk when headDim is streamed in chunks), then P and dS, then the
  // accumulation, chunks in reverse order so that the chunk still loaded from the score phase is used first. Chunks
  // are WGSL loops, not unrolled copies: every barrier appears once in the code (software drivers lower barriers
  // to coroutines, at a compile cost that grows quickly with their number).
  const processTile = NCH === 1 ? `
      let streamedRows = min(${BS}, ${str.seq} - s0);
      workgroupBarrier();${dkdv ? loadStats(BS, 'q0') : ''}${scoreDecls}${streamedChunk('0')}
      workgroupBarrier();${phaseA('0')}${phaseB}
      workgroupBarrier();${phaseC('0')}` : `
      let streamedRows = min(${BS}, ${str.seq} - s0);
      workgroupBarrier();${dkdv ? loadStats(BS, 'q0') : ''}${scoreDecls}
      for (var c = 0; c < ${NCH}; c++) {
        if (c > 0) {
          workgroupBarrier();
        }${streamedChunk('c')}
        workgroupBarrier();${phaseA('c')}
      }${phaseB}
      workgroupBarrier();
      for (var cc = 0; cc < ${NCH}; cc++) {
        let c = ${NCH - 1} - cc;
        if (cc > 0) {
          workgroupBarrier();${streamedChunk('c')}
          workgroupBarrier();
        }${phaseC('c')}
      }`;

  const layoutCheck = flags.layout ? `
      let bs = uniforms.layoutBlockSize;
      let bit = u32((lh * uniforms.layoutQueryBlocks + i / bs) * uniforms.layoutKeyBlocks + j / bs);
      return (u32(sched[uniforms.layoutOffset + i32(bit >> 5u)]) & (1u << (bit & 31u))) != 0u;` : `
      return true;`;

  const tileLoop = dkdv ? `
      if (k0 < keyLen) {
        let keyPartial = k0 + ${BR} > keyLen;
        for (var g = 0; g < uniforms.groupSize; g++) {
          let h = hk * uniforms.groupSize + g;
          let lh = h % uniforms.numMaskHeads;
          let col = lh * uniforms.numKeyTiles + kt;
          let runEnd = sched[uniforms.runStartOffset + col + 1];
          for (var run = sched[uniforms.runStartOffset + col]; run < runEnd; run++) {
            let first = sched[uniforms.runsOffset + 3 * run];
            let last = first + sched[uniforms.runsOffset + 3 * run + 1];
            let partial = sched[uniforms.runsOffset + 3 * run + 2] == 0 || keyPartial;
            for (var qt = first; qt < last; qt++) {
              let q0 = qt * ${BS};
              let s0 = q0;${processTile}
            }
          }
        }
      }` : `
      let lh = h % uniforms.numMaskHeads;
      let rowIndex = lh * uniforms.numQueryTiles + qt;
      let runEnd = sched[uniforms.runStartOffset + rowIndex + 1];
      // Key tiles at or past keyLengths[b] are skipped (runs ascend, so clipping last is enough).
      let keyTileEnd = (keyLen + ${BS - 1}) / ${BS};
      for (var run = sched[uniforms.runStartOffset + rowIndex]; run < runEnd; run++) {
        let first = sched[uniforms.runsOffset + 3 * run];
        let last = min(first + sched[uniforms.runsOffset + 3 * run + 1], keyTileEnd);
        let full = sched[uniforms.runsOffset + 3 * run + 2] == 1;
        for (var kt = first; kt < last; kt++) {
          let k0 = kt * ${BS};
          let s0 = k0;
          let partial = !full || k0 + ${BS} > keyLen;${processTile}
        }
      }`;

  const stores = (target: string, base: string, value: string) => `
          ${target}[uniforms.${base} + o] = ${value}.x;
          if (d + 1 < uniforms.headDim) { ${target}[uniforms.${base} + o + 1] = ${value}.y; }
          if (d + 2 < uniforms.headDim) { ${target}[uniforms.${base} + o + 2] = ${value}.z; }
          if (d + 3 < uniforms.headDim) { ${target}[uniforms.${base} + o + 3] = ${value}.w; }`;
  const writeChunk = (c: string) => range(MR).flatMap((m) => range(AC).map((a) => `
        {
          let r = rowGroup + ${m * NRG};
          let row = ${dkdv ? 'k0' : 'q0'} + r;
          let d = (${c} * ${C4} + accCol + ${a * NC}) * 4;
          if (accActive && r < ${BR} && row < ${res.seq} && d < uniforms.headDim) {
            let o = ((b * ${res.seq} + row) * ${res.heads} + ${res.head}) * uniforms.headDim + d;
            let scaled = acc[${accIndex(c, m, a)}] * uniforms.scale;${stores(dkdv ? 'dk' : 'dq', 'out0Base', 'scaled')}${
              dkdv ? stores('dv', 'out1Base', `accP[${accIndex(c, m, a)}]`) : ''}
          }
        }`)).join('');
  const writes = NCH === 1 ? writeChunk('0') : `
      for (var c = 0; c < ${NCH}; c++) {${writeChunk('c')}
      }`;

  return `
    var<workgroup> resA : array<vec4<f32>, ${BR * RS}>;
    var<workgroup> resB : array<vec4<f32>, ${BR * RS}>;
    var<workgroup> strA : array<vec4<f32>, ${BS * SS}>;
    var<workgroup> strB : array<vec4<f32>, ${BS * SS}>;${dkdv ? `
    var<workgroup> tileP : array<${vecT}, ${BR * NS}>;` : ''}
    var<workgroup> tileDS : array<${vecT}, ${BR * NS}>;
    var<workgroup> rowLse : array<f32, ${dkdv ? BS : BR}>;
    var<workgroup> rowDelta : array<f32, ${dkdv ? BS : BR}>;
${flags.softcap ? STABLE_TANH_WGSL : ''}
    // Element-level visibility inside a partial tile: src/plan's isVisible, plus keyLengths and row < seqQ.
    fn isVisible(i : i32, j : i32, lh : i32, keyLen : i32) -> bool {
      if (i >= uniforms.seqQ || j >= keyLen) {
        return false;
      }
      let diag = i + uniforms.diagonalOffset;
      if (uniforms.windowLeft >= 0 && j < diag - uniforms.windowLeft) {
        return false;
      }
      if (uniforms.windowRight >= 0 && j > diag + uniforms.windowRight) {
        return false;
      }${layoutCheck}
    }

    @compute @workgroup_size(${T})
    fn main(@builtin(local_invocation_index) localIndex : u32, @builtin(workgroup_id) workgroupId : vec3<u32>) {
      let tid = i32(localIndex);
      let b = i32(workgroupId.z);
      let statsRow = uniforms.statsBase + b * (2 + 2 * uniforms.heads * uniforms.seqQ);
      // The tiles with the most work under a causal mask start first (first key tiles for dK/dV, last query tiles for
      // dQ), which shortens the dispatch's tail. Workgroups start in x-fastest order: with uneven work (headsFastest)
      // heads are x, so those tiles of every head start first; else a head's tiles stay together (caches).
      let headsFastest = uniforms.headsFastest == 1;
      let tileIndex = i32(select(workgroupId.x, workgroupId.y, headsFastest));
      let headIndex = i32(select(workgroupId.y, workgroupId.x, headsFastest));${
          dkdv ? `
      let kt = tileIndex;
      let hk = headIndex;
      let k0 = kt * ${BR};` : `
      let qt = uniforms.numQueryTiles - 1 - tileIndex;
      let h = headIndex;
      let hk = h / uniforms.groupSize;
      let q0 = qt * ${BR};`}
      // Loop bounds below are runtime values on purpose: columns past headDim and rows past the sequence end are
      // skipped, and software drivers (llvmpipe) do not fully unroll these loops, which made their coroutine
      // lowering of barriers take minutes.
      let dimVec4 = (uniforms.headDim + 3) / 4;
      let keyLen = ${flags.keyLengths ? 'bitcast<i32>(stats[statsRow])' : 'uniforms.seqK'};
      // Score entries of this invocation: resident rows rIdx + m·${NR}, streamed rows sIdx + n·${NS}.
      let sIdx = tid % ${NS};
      let rIdx = tid / ${NS};
      // Accumulators of this invocation: vec4 columns accCol + a·${NC} of each chunk, resident rows rowGroup + m·${NRG}.
      let accCol = tid % ${NC};
      let rowGroup = tid / ${NC};
      let accActive = rowGroup < ${NRG};
      var acc = array<vec4<f32>, ${NCH * MR * AC}>();${dkdv ? `
      var accP = array<vec4<f32>, ${NCH * MR * AC}>();` : ''}
${loadRows(res, 'resA', 'resB', BR, dkdv ? 'k0' : 'q0', DP4, '0', RS)}${dkdv ? '' : loadStats(BR, 'q0')}${tileLoop}
${writes}
    }`;
}

/** Device limits the tile choice depends on. */
export interface GradTileLimits {
  maxComputeWorkgroupStorageSize: number;
  maxComputeInvocationsPerWorkgroup: number;
}

/** Floats of accumulators one invocation may hold before the compiler would spill. */
const MAX_ACCUMULATOR_FLOATS = 64;
const ROWS = [64, 32, 16, 8, 4];
const THREADS = [128, 256, 64, 32];

/** Whether `t` is a tiling the tile program can run on a device with `limits`. */
export function gradTilesFit(pass: GradPass, t: GradTiles, limits: GradTileLimits): boolean {
  if (t.threads > limits.maxComputeInvocationsPerWorkgroup || t.paddedDim % t.chunk !== 0 || t.chunk % 4 !== 0) {
    return false;
  }
  if (gradTilesStorageBytes(pass, t) > limits.maxComputeWorkgroupStorageSize) return false;
  try {
    gradThreadMap(t);
    return true;
  } catch {
    return false;
  }
}

export function paddedHeadDim(headDim: number): number {
  return Math.ceil(headDim / 16) * 16;
}

/**
 * The tiling for a pass: the largest score tile (resident × streamed rows) whose whole streamed rows fit workgroup
 * memory, preferring more resident rows (each is loaded once per workgroup) and 128 invocations; 2-16 scores and at
 * most MAX_ACCUMULATOR_FLOATS accumulator floats per invocation. Only when no such tile fits is headDim streamed in
 * chunks (the fallback for large headDim on devices with little workgroup memory).
 */
export function chooseGradTiles(pass: GradPass, headDim: number, limits: GradTileLimits): GradTiles {
  const paddedDim = paddedHeadDim(headDim);
  const accumulators = pass === 'dkdv' ? 2 : 1;
  const candidates: GradTiles[] = [];
  for (const chunked of [false, true]) {
    for (const resident of ROWS) {
      for (const streamed of ROWS) {
        for (const threads of THREADS) {
          const perThread = resident * streamed / threads;
          if (perThread < 2 || perThread > 16) continue;
          const chunks = chunked ? [paddedDim / 2, paddedDim / 4, 32, 16] : [paddedDim];
          for (const chunk of chunks) {
            const t = {resident, streamed, paddedDim, chunk, threads};
            if (!gradTilesFit(pass, t, limits)) continue;
            const {accRows} = gradThreadMap(t);
            if (accumulators * accRows * 4 * (paddedDim / chunk) > MAX_ACCUMULATOR_FLOATS) continue;
            candidates.push(t);
            break;
          }
        }
      }
    }
    if (candidates.length > 0) break;
  }
  if (candidates.length === 0) {
    throw new Error(`attention backward (webgpu): no tiling for headDim ${headDim} fits ${
        limits.maxComputeWorkgroupStorageSize} bytes of workgroup memory`);
  }
  const rank = (t: GradTiles) => [-t.resident * t.streamed, -t.resident, Math.abs(t.threads - 128), -t.chunk];
  candidates.sort((a, b) => {
    const ra = rank(a), rb = rank(b);
    for (let i = 0; i < ra.length; i++) if (ra[i] !== rb[i]) return ra[i] - rb[i];
    return 0;
  });
  return candidates[0];
}
