/**
 * The split-K decode programs (flash-decoding) for a few query rows against a long key range.
 *
 * DecodeSplitProgram: one workgroup per (key split, row group, kv head, batch). A row group holds up to `rows`
 * (query row, query head) pairs of ONE kv head — every query head of a GQA group together — so each K and V element
 * is read once per kv head and split, not once per query head. Per block of `block` keys the workgroup
 *   1. scores of every row against every key of the block, then scale, softcap, ALiBi and the
 *      window/causal/keyLengths visibility, in one of two layouts (DecodeConfig.scoreLanes):
 *      - one thread per key (scoreLanes 1): thread t dots the whole K row of key j0 + t with every row's q (q rows
 *        staged in workgroup memory). A warp's K load touches 32 rows headDim·4 bytes apart;
 *      - scoreLanes = L threads per key: thread (keySlot, lane) dots the vec4s lane, lane + L, … of the keys
 *        p·BLOCK/L + keySlot (p < L), so a warp's K load reads L·16 contiguous bytes of each of 32/L rows (whole
 *        128-byte lines at L = 8), and each q vec4 it reads from workgroup memory serves L keys; the L partial dots
 *        of a key are added in a fixed tree (subgroupShuffleXor where the device has subgroups, else workgroup
 *        memory: the same tree, the same bits);
 *   2. online softmax: per-row block max, rescale factor exp(mOld − mNew), probabilities in place, running sum;
 *   3. P·V: thread (slot, vec4 lane) accumulates its rows (a row part) over its keys (a key part) of the block from
 *      coalesced V rows, so every thread works even for one row (DecodeConfig.pvRowParts).
 * It adds the key parts in a fixed order and writes the unnormalized partial output of each row with its running max
 * m and sum l.
 *
 * DecodeCombineProgram: one thread per (row, vec4 lane) merges the splits in a fixed order (deterministic):
 *   M = max m_s, L = Σ l_s·e^(m_s − M), output = Σ acc_s·e^(m_s − M) / L, lse = M + log L (−∞ and 0 output when no
 *   key is visible).
 */
import type {MultiOutputProgram, UniformType} from './program_runner.js';

/** Compile-time shape of the split program. */
export interface DecodeConfig {
  headDim: number;
  /** (query row, head) pairs per workgroup. */
  rows: number;
  /** Threads per workgroup = keys per block. */
  block: number;
  softcap: boolean;
  hasKeyLengths: boolean;
  hasQueryOffsets: boolean;
  /**
   * keyLengths / queryOffsets read from the uniforms (keyLength0…, queryOffset0…: batch ≤ DECODE_UNIFORM_BATCH)
   * instead of their buffers: for values the caller gave as numbers, still on the CPU, whose upload would add a
   * staging buffer and a copy that ends the compute pass to every call.
   */
  keyLengthsUniform: boolean;
  queryOffsetsUniform: boolean;
  alibi: boolean;
  /**
   * P·V work split: the SLOTS = BLOCK / D4 thread slots (D4 vec4 lanes each) form pvRowParts row parts × KEY_PARTS =
   * ⌊SLOTS / pvRowParts⌋ key parts; a thread accumulates rows rowPart, rowPart + pvRowParts, … over the keys keyPart,
   * keyPart + KEY_PARTS, … of each block, and the key parts are summed in order once per split. pvRowParts = SLOTS is
   * the first session's kernel (a thread owns rows and walks every key: min(rows, SLOTS)·D4 threads work, 16 of 256
   * at one row, D64); 1 puts every thread on keys, every row in registers.
   */
  pvRowParts: number;
  /**
   * Threads per key in the score phase (a power of two ≤ BLOCK): 1 = a thread dots a whole K row; L > 1 = L threads
   * each take every L-th vec4 of the row (coalesced K loads, the q vec4 reused over L keys), their partial dots added
   * in a fixed tree.
   */
  scoreLanes: number;
  /**
   * scoreLanes > 1: add the lanes' partial dots with subgroupShuffleXor (needs the `subgroups` feature). Each
   * workgroup first checks that the lanes of a key are lanes l ^ m of one subgroup (WGSL promises neither the
   * subgroup size nor which invocations share a subgroup) and otherwise takes the workgroup-memory tree.
   */
  scoreSubgroups: boolean;
  /** P·V: V rows loaded per batch of a thread's keys before their multiply-adds (1, or 4: more loads in flight). */
  pvUnroll: number;
}

export const DECODE_SPLIT_UNIFORMS: Array<[string, UniformType]> = [
  ['seqQ', 'i32'], ['seqK', 'i32'], ['heads', 'i32'], ['kvHeads', 'i32'], ['groupSize', 'i32'],
  ['scale', 'f32'], ['softcap', 'f32'], ['windowLeft', 'i32'], ['windowRight', 'i32'],
  ['diagonalOffset', 'i32'], ['offsetMin', 'i32'], ['offsetMax', 'i32'], ['alibiBatchStride', 'i32'],
  ['splits', 'i32'], ['splitLength', 'i32'], ['rowGroups', 'i32'], ['negInf', 'f32'],
  ['keyLength0', 'i32'], ['keyLength1', 'i32'], ['keyLength2', 'i32'], ['keyLength3', 'i32'],
  ['queryOffset0', 'i32'], ['queryOffset1', 'i32'], ['queryOffset2', 'i32'], ['queryOffset3', 'i32'],
];

/** Largest batch whose keyLengths / queryOffsets fit the split program's uniforms. */
export const DECODE_UNIFORM_BATCH = 4;

/**
 * Workgroup memory of a split program, in bytes (q rows + the block's scores + per-row statistics + reduction; with
 * several score lanes, two rounds of partial dots and the lane check's two words).
 */
export function decodeWorkgroupBytes(
    c: Pick<DecodeConfig, 'headDim' | 'rows' | 'block'> & Partial<Pick<DecodeConfig, 'scoreLanes'>>): number {
  // + one vec4 per thread for the key parts' reduction.
  const split = (c.scoreLanes ?? 1) > 1 ? 4 * 2 * c.rows * c.block + 8 : 0;
  return 4 * (c.rows * c.headDim + c.rows * c.block + 3 * c.rows + c.block) + 16 * c.block + split;
}

/** The split program's input bindings, [name, WGSL element type], in order: a small input is bound only where the
 *  code reads it from its buffer (not absent, not in the uniforms). */
export function decodeSplitInputs(c: DecodeConfig): Array<[string, string]> {
  const inputs: Array<[string, string]> = [['q', 'vec4<f32>'], ['k', 'vec4<f32>'], ['v', 'vec4<f32>']];
  if (c.hasKeyLengths && !c.keyLengthsUniform) inputs.push(['keyLengths', 'i32']);
  if (c.hasQueryOffsets && !c.queryOffsetsUniform) inputs.push(['queryOffsets', 'i32']);
  if (c.alibi) inputs.push(['alibiSlopes', 'f32']);
  return inputs;
}

/** Everything that changes the split program's code: its pipeline key and the executor's program cache key. */
export function decodeSplitKey(c: DecodeConfig): string {
  return `attention-decode-split:${c.headDim}:${c.rows}:${c.block}:${c.softcap}:${c.hasKeyLengths}:${
      c.hasQueryOffsets}:${c.alibi}:${c.pvRowParts}:${c.keyLengthsUniform}:${c.queryOffsetsUniform}:${c.scoreLanes}:${
      c.scoreSubgroups}:${c.pvUnroll}`;
}

function visibilityCode(c: DecodeConfig): string {
  return `
  // Query row i of batch b sits at key position offset + i; keys [lo, hi] of the window, below keyEnd.
  fn keyRangeOf(pos: i32, keyEnd: i32) -> vec2<i32> {
    var lo = 0;
    if (uniforms.windowLeft >= 0) { lo = max(0, pos - uniforms.windowLeft); }
    var hi = keyEnd - 1;
    if (uniforms.windowRight >= 0) { hi = min(hi, pos + uniforms.windowRight); }
    return vec2<i32>(lo, hi);
  }
  fn queryOffsetOf(b: i32) -> i32 {
    ${!c.hasQueryOffsets ? 'return uniforms.diagonalOffset;' : c.queryOffsetsUniform ?
        `var offsets = array<i32, 4>(uniforms.queryOffset0, uniforms.queryOffset1, uniforms.queryOffset2,
                                    uniforms.queryOffset3);
    return clamp(offsets[b], uniforms.offsetMin, uniforms.offsetMax);` :
        'return clamp(queryOffsets[b], uniforms.offsetMin, uniforms.offsetMax);'}
  }
  fn keyEndOf(b: i32) -> i32 {
    ${!c.hasKeyLengths ? 'return uniforms.seqK;' : c.keyLengthsUniform ?
        `var lengths = array<i32, 4>(uniforms.keyLength0, uniforms.keyLength1, uniforms.keyLength2, uniforms.keyLength3);
    return clamp(lengths[b], 0, uniforms.seqK);` :
        'return clamp(keyLengths[b], 0, uniforms.seqK);'}
  }`;
}

/** What follows `score = dot · scale` for row r and key j: the softcap, then the ALiBi term. */
function scoreAdjustments(c: DecodeConfig): {capped: string; alibi: string} {
  return {
    capped: c.softcap ? 'score = uniforms.softcap * tanh(score / uniforms.softcap);' : '',
    alibi: c.alibi ?
        `score -= alibiSlopes[b * uniforms.alibiBatchStride + rowHead[r]] * abs(f32(rowPos[r] - j));` : '',
  };
}

/** Scores, one thread per key (scoreLanes 1). */
function scoreCode(c: DecodeConfig): string {
  const {capped, alibi} = scoreAdjustments(c);
  return `
      // 1. scores of key j against every row of the group
      let j = j0 + i32(t);
      var dots = array<f32, ROWS>();
      if (j < blockEnd) {
        let kRow = ((b * uniforms.seqK + j) * uniforms.kvHeads + hk) * D4;
        for (var d = 0; d < D4; d++) {
          let kv = k[kRow + d];
          for (var r = 0; r < ROWS; r++) { dots[r] += dot(qs[r * D4 + d], kv); }
        }
      }
      for (var r = 0; r < ROWS; r++) {
        var score = uniforms.negInf;
        if (j < blockEnd && j >= rowRange[r].x && j <= rowRange[r].y) {
          score = dots[r] * uniforms.scale;
          ${capped}
          ${alibi}
        }
        scores[r * BLOCK + i32(t)] = score;
      }
      workgroupBarrier();`;
}

/**
 * Scores, SCORE_LANES threads per key (scoreLanes > 1): thread (keySlot, scoreLane) takes the vec4s scoreLane,
 * scoreLane + SCORE_LANES, … of the keys j0 + p·KEYS_PER_PASS + keySlot (p < SCORE_LANES), each q vec4 read once
 * for its SCORE_LANES keys; dots[p·ROWS + r] is its partial dot of key p with row r. The lanes' partials are added
 * in one tree (pairs, then pairs of pairs: the butterfly of subgroupShuffleXor, which gives every lane the same
 * bits), and lane p finishes key p.
 */
function splitScoreCode(c: DecodeConfig): string {
  const {capped, alibi} = scoreAdjustments(c);
  const lanes = c.scoreLanes;
  const d4 = c.headDim / 4;
  const guard = d4 % lanes !== 0;  // the last slice is partial (headDim 40: 10 vec4s over 4 lanes)
  // Finishes key p of this thread's keys for row r (p, r and the dot in scope).
  const finish = (dot: string, pad: string) => `
${pad}let j = j0 + p * KEYS_PER_PASS + keySlot;
${pad}var score = uniforms.negInf;
${pad}if (j < blockEnd && j >= rowRange[r].x && j <= rowRange[r].y) {
${pad}  score = ${dot} * uniforms.scale;
${pad}  ${capped}
${pad}  ${alibi}
${pad}}
${pad}scores[r * BLOCK + p * KEYS_PER_PASS + keySlot] = score;`;
  // Rounds written out (p a constant in each): a loop around a barrier may stay a loop, and dots[p·ROWS + r] with a
  // variable p would leave the registers for memory.
  const rounds: string[] = [];
  for (let p = 0; p < lanes; p++) {
    rounds.push(`
        {
          let p = ${p};
          let half = ${(p % 2) * c.rows * c.block};
          for (var r = 0; r < ROWS; r++) { scoreParts[half + r * BLOCK + i32(t)] = dots[${p} * ROWS + r]; }
          workgroupBarrier();
          if (scoreLane == p) {
            for (var r = 0; r < ROWS; r++) {
              var sums = array<f32, SCORE_LANES>();
              for (var l = 0; l < SCORE_LANES; l++) {
                sums[l] = scoreParts[half + r * BLOCK + keySlot * SCORE_LANES + l];
              }
              for (var m = 1; m < SCORE_LANES; m *= 2) {
                for (var l = 0; l < SCORE_LANES; l += 2 * m) { sums[l] += sums[l + m]; }
              }${finish('sums[0]', '              ')}
            }
          }
        }`);
  }
  const memoryTree = `
        // Through workgroup memory, one key per lane per round: round p's partials (all of them, ROWS × BLOCK)
        // go to half p % 2 of scoreParts, so one barrier a round keeps the next round's writes off them.${
      rounds.join('')}`;
  const shuffleTree = `
        // Through the subgroup: after the butterfly every lane holds every key's sums; lane p writes key p.
        for (var p = 0; p < SCORE_LANES; p++) {
          for (var r = 0; r < ROWS; r++) {
            var sum = dots[p * ROWS + r];
            for (var m = 1u; m < u32(SCORE_LANES); m *= 2u) { sum += subgroupShuffleXor(sum, m); }
            dots[p * ROWS + r] = sum;
          }
        }
        for (var p = 0; p < SCORE_LANES; p++) {
          if (scoreLane == p) {
            for (var r = 0; r < ROWS; r++) {${finish('dots[p * ROWS + r]', '              ')}
            }
          }
        }`;
  return `
      // 1. scores, SCORE_LANES threads a key: partial dots of this thread's slice of its keys with every row
      var dots = array<f32, SCORE_LANES * ROWS>();
      for (var i = 0; i < SLICE; i++) {
        let d = scoreLane + i * SCORE_LANES;
        ${guard ? 'if (d < D4) {' : '{'}
          var qv = array<vec4<f32>, ROWS>();
          for (var r = 0; r < ROWS; r++) { qv[r] = qs[r * D4 + d]; }
          for (var p = 0; p < SCORE_LANES; p++) {
            let j = j0 + p * KEYS_PER_PASS + keySlot;
            if (j < blockEnd) {
              let kv = k[((b * uniforms.seqK + j) * uniforms.kvHeads + hk) * D4 + d];
              for (var r = 0; r < ROWS; r++) { dots[p * ROWS + r] += dot(qv[r], kv); }
            }
          }
        }
      }
      ${c.scoreSubgroups ? `if (reduceInMemory) {${memoryTree}
      } else {${shuffleTree}
      }` : memoryTree}
      workgroupBarrier();`;
}

const SOFTMAX_CODE = `
      // 2. online softmax: block max per row (LANES threads a row), rescale, probabilities in place, running sum
      let row = i32(t) / LANES;
      let lane = i32(t) % LANES;
      var localMax = uniforms.negInf;
      if (row < ROWS) {
        for (var x = lane; x < BLOCK; x += LANES) { localMax = max(localMax, scores[row * BLOCK + x]); }
      }
      partials[t] = localMax;
      workgroupBarrier();
      if (i32(t) < ROWS) {
        var blockMax = uniforms.negInf;
        for (var x = 0; x < LANES; x++) { blockMax = max(blockMax, partials[i32(t) * LANES + x]); }
        let oldMax = rowMax[t];
        let newMax = max(oldMax, blockMax);
        var rescale = 1.0;
        if (oldMax != newMax) { rescale = exp(oldMax - newMax); }  // oldMax = -inf gives 0 (nothing to rescale)
        rowMax[t] = newMax;
        rowScale[t] = rescale;
      }
      workgroupBarrier();
      var localSum = 0.0;
      if (row < ROWS) {
        let m = rowMax[row];
        for (var x = lane; x < BLOCK; x += LANES) {
          let s = scores[row * BLOCK + x];
          var p = 0.0;
          if (s != uniforms.negInf) { p = exp(s - m); }
          scores[row * BLOCK + x] = p;
          localSum += p;
        }
      }
      partials[t] = localSum;
      workgroupBarrier();
      if (i32(t) < ROWS) {
        var blockSum = 0.0;
        for (var x = 0; x < LANES; x++) { blockSum += partials[i32(t) * LANES + x]; }
        rowSum[t] = rowSum[t] * rowScale[t] + blockSum;
      }`;

/**
 * P·V: thread (slot, lane4), slot = keyPart·ROW_PARTS + rowPart, takes its rows × its keys of the block. `unrolled`:
 * the V rows of PV_UNROLL of its keys loaded before their multiply-adds (more loads in flight per thread; the same
 * adds in the same order, so the same bits), then the remaining keys one at a time.
 */
function pvCode(unrolled: boolean): string {
  const oneKey = (from: string) => `
        for (${from}; x < keys; x += KEY_PARTS) {
          let vv = v[((b * uniforms.seqK + j0 + x) * uniforms.kvHeads + hk) * D4 + lane4];
          for (var n = 0; n < PER_THREAD; n++) {
            let r = rowPart + n * ROW_PARTS;
            if (r < ROWS) { acc[n] += scores[r * BLOCK + x] * vv; }
          }
        }`;
  return `
      // 3. P·V: rows rowPart, rowPart + ROW_PARTS, … over keys keyPart, keyPart + KEY_PARTS, …; vec4 lane4
      if (slot < ROW_PARTS * KEY_PARTS) {
        for (var n = 0; n < PER_THREAD; n++) {
          let r = rowPart + n * ROW_PARTS;
          if (r < ROWS) { acc[n] = acc[n] * rowScale[r]; }
        }
        let keys = min(BLOCK, blockEnd - j0);${unrolled ? `
        let keyStride = KEY_PARTS * uniforms.kvHeads * D4;  // V elements between a thread's successive keys
        var x = keyPart;
        for (; x + (PV_UNROLL - 1) * KEY_PARTS < keys; x += PV_UNROLL * KEY_PARTS) {
          let first = ((b * uniforms.seqK + j0 + x) * uniforms.kvHeads + hk) * D4 + lane4;
          var vv = array<vec4<f32>, PV_UNROLL>();
          for (var u = 0; u < PV_UNROLL; u++) { vv[u] = v[first + u * keyStride]; }
          for (var u = 0; u < PV_UNROLL; u++) {
            for (var n = 0; n < PER_THREAD; n++) {
              let r = rowPart + n * ROW_PARTS;
              if (r < ROWS) { acc[n] += scores[r * BLOCK + x + u * KEY_PARTS] * vv[u]; }
            }
          }
        }${oneKey('')}` : oneKey('var x = keyPart')}
      }
      workgroupBarrier();`;
}

/** Partial results: per row, the key parts' sums added in key-part order (deterministic), then written. */
const WRITE_CODE = `
    // Partial results: unnormalized output rows and (max, sum), indexed (b, hk, row, split).
    for (var n = 0; n < PER_THREAD; n++) {
      if (slot < ROW_PARTS * KEY_PARTS) { partSums[t] = acc[n]; }
      workgroupBarrier();
      let r = slot + n * ROW_PARTS;  // threads of key part 0 (slot = rowPart) write
      let rr = rowGroup * ROWS + r;
      if (slot < ROW_PARTS && r < ROWS && rr < rowsTotal) {
        var sum = partSums[slot * D4 + lane4];
        for (var kp = 1; kp < KEY_PARTS; kp++) { sum += partSums[(kp * ROW_PARTS + slot) * D4 + lane4]; }
        let at = ((b * uniforms.kvHeads + hk) * rowsTotal + rr) * uniforms.splits + split;
        partialOut[at * D4 + lane4] = sum;
        if (lane4 == 0) { partialStats[at] = vec2<f32>(rowMax[r], rowSum[r]); }
      }
      workgroupBarrier();
    }`;

export class DecodeSplitProgram implements MultiOutputProgram {
  outputNames = ['partialOut', 'partialStats'];
  outputTypes = ['vec4<f32>', 'vec2<f32>'];
  /** q, k, v, then only the small inputs the code reads from buffers (decodeSplitInputs): each binding is work for
   *  every call's createBindGroup. */
  variableNames: string[];
  variableTypes: string[];
  uniformFields = DECODE_SPLIT_UNIFORMS;
  /** 'subgroups' where the score lanes add through the subgroup. */
  enables?: string[];
  shaderKey: string;
  readonly workgroupSize: [number, number, number];

  constructor(readonly config: DecodeConfig) {
    const c = config;
    if (c.headDim % 4 !== 0) throw new Error(`decode program: headDim ${c.headDim} is not a multiple of 4`);
    this.workgroupSize = [c.block, 1, 1];
    this.shaderKey = decodeSplitKey(c);
    const inputs = decodeSplitInputs(c);
    this.variableNames = inputs.map(([name]) => name);
    this.variableTypes = inputs.map(([, type]) => type);
    const lanes = c.scoreLanes;
    if (lanes < 1 || (lanes & (lanes - 1)) !== 0 || lanes > c.block) {
      throw new Error(`decode program: scoreLanes ${lanes} is not a power of two ≤ the block (${c.block})`);
    }
    if (c.scoreSubgroups && lanes > 1) {
      this.enables = ['subgroups'];
    }
  }

  getUserCode(): string {
    const c = this.config;
    const d4 = c.headDim / 4;
    const slots = Math.max(1, Math.floor(c.block / d4));
    const lanes = Math.max(1, Math.floor(c.block / c.rows));
    const rowParts = Math.max(1, Math.min(c.pvRowParts, slots));
    const split = c.scoreLanes > 1;
    const shuffles = split && c.scoreSubgroups;
    // Split scores: the layout's constants, and where the subgroup adds, the per-workgroup lane check.
    const splitDeclarations = !split ? '' : `
  const SCORE_LANES = ${c.scoreLanes};
  const KEYS_PER_PASS = ${c.block / c.scoreLanes};
  const SLICE = ${Math.ceil(d4 / c.scoreLanes)};
  var<workgroup> scoreParts: array<f32, ${2 * c.rows * c.block}>;${shuffles ? `
  var<workgroup> laneMismatch: atomic<u32>;
  var<workgroup> laneMismatchFound: u32;` : ''}`;
    const splitSetup = !split ? '' : `
    let scoreLane = i32(t) % SCORE_LANES;
    let keySlot = i32(t) / SCORE_LANES;${shuffles ? `
    // Subgroup adds need a key's SCORE_LANES threads to be lanes l ^ m of one subgroup (WGSL promises neither the
    // subgroup size nor which invocations share one): checked here, once, for every thread; if any fails, this
    // workgroup adds through workgroup memory instead (same tree, same bits). Workgroup memory starts at zero.
    var lanesPaired = sgSize >= u32(SCORE_LANES);
    for (var m = 1u; m < u32(SCORE_LANES); m *= 2u) {
      let partner = subgroupShuffleXor(t, m);  // every invocation takes part (uniform control flow)
      lanesPaired = lanesPaired & (partner == (t ^ m));
    }
    if (!lanesPaired) { atomicStore(&laneMismatch, 1u); }
    workgroupBarrier();
    if (t == 0u) { laneMismatchFound = atomicLoad(&laneMismatch); }
    let reduceInMemory = workgroupUniformLoad(&laneMismatchFound) != 0u;` : ''}`;
    const builtins = shuffles ?
        '@builtin(local_invocation_index) t: u32, @builtin(subgroup_size) sgSize: u32' :
        '@builtin(local_invocation_index) t: u32';
    return `
  const D4 = ${d4};
  const ROWS = ${c.rows};
  const BLOCK = ${c.block};
  const LANES = ${lanes};
  const SLOTS = ${slots};
  const ROW_PARTS = ${rowParts};
  const KEY_PARTS = ${Math.floor(slots / rowParts)};
  const PER_THREAD = ${Math.ceil(c.rows / rowParts)};${c.pvUnroll > 1 ? `
  const PV_UNROLL = ${c.pvUnroll};` : ''}${splitDeclarations}
  var<workgroup> qs: array<vec4<f32>, ${c.rows * d4}>;
  var<workgroup> scores: array<f32, ${c.rows * c.block}>;
  var<workgroup> rowMax: array<f32, ROWS>;
  var<workgroup> rowSum: array<f32, ROWS>;
  var<workgroup> rowScale: array<f32, ROWS>;
  var<workgroup> partials: array<f32, BLOCK>;
  var<workgroup> partSums: array<vec4<f32>, BLOCK>;
  ${visibilityCode(c)}

  @compute @workgroup_size(${c.block}, 1, 1)
  fn main(@builtin(workgroup_id) wg: vec3<u32>, ${builtins}) {
    let split = i32(wg.x);
    let rowGroup = i32(wg.y) % uniforms.rowGroups;
    let hk = i32(wg.y) / uniforms.rowGroups;
    let b = i32(wg.z);
    let g = uniforms.groupSize;
    let rowsTotal = uniforms.seqQ * g;
    let offset = queryOffsetOf(b);
    let keyEnd = keyEndOf(b);

    // Rows of this group: row r = (query row i, head hk·g + r mod g); a row past the end sees nothing.
    var rowRange: array<vec2<i32>, ROWS>;
    var rowPos: array<i32, ROWS>;
    var rowHead: array<i32, ROWS>;
    var groupLo = uniforms.seqK;
    var groupHi = -1;
    for (var r = 0; r < ROWS; r++) {
      let rr = rowGroup * ROWS + r;
      let i = rr / g;
      rowPos[r] = offset + i;
      rowHead[r] = hk * g + rr % g;
      rowRange[r] = vec2<i32>(0, -1);
      if (rr < rowsTotal) {
        rowRange[r] = keyRangeOf(offset + i, keyEnd);
        groupLo = min(groupLo, rowRange[r].x);
        groupHi = max(groupHi, rowRange[r].y);
      }
    }
    for (var x = i32(t); x < ROWS * D4; x += BLOCK) {
      let r = x / D4;
      let rr = rowGroup * ROWS + r;
      var qv = vec4<f32>(0.0);
      if (rr < rowsTotal) {
        qv = q[((b * uniforms.seqQ + rr / g) * uniforms.heads + hk * g + rr % g) * D4 + x % D4];
      }
      qs[x] = qv;
    }
    if (i32(t) < ROWS) {
      rowMax[t] = uniforms.negInf;
      rowSum[t] = 0.0;
      rowScale[t] = 1.0;
    }
    let lane4 = i32(t) % D4;
    let slot = i32(t) / D4;
    let rowPart = slot % ROW_PARTS;
    let keyPart = slot / ROW_PARTS;
    var acc = array<vec4<f32>, PER_THREAD>();${splitSetup}
    workgroupBarrier();

    // This split's keys, narrowed to those some row of the group can see (uniform across the workgroup).
    let splitStart = max(split * uniforms.splitLength, groupLo);
    let blockEnd = min(min((split + 1) * uniforms.splitLength, uniforms.seqK), groupHi + 1);
    for (var j0 = splitStart; j0 < blockEnd; j0 += BLOCK) {
      ${split ? splitScoreCode(c) : scoreCode(c)}
      ${SOFTMAX_CODE}
      ${pvCode(c.pvUnroll > 1)}
    }
    ${WRITE_CODE}
  }`;
  }
}

export const DECODE_COMBINE_UNIFORMS: Array<[string, UniformType]> = [
  ['seqQ', 'i32'], ['heads', 'i32'], ['kvHeads', 'i32'], ['groupSize', 'i32'], ['splits', 'i32'],
  ['total', 'i32'], ['dispatchX', 'i32'], ['negInf', 'f32'],
];

export const DECODE_COMBINE_WORKGROUP = 64;

export class DecodeCombineProgram implements MultiOutputProgram {
  outputNames = ['output', 'lse'];
  outputTypes = ['vec4<f32>', 'f32'];
  variableNames = ['partialOut', 'partialStats'];
  variableTypes = ['vec4<f32>', 'vec2<f32>'];
  uniformFields = DECODE_COMBINE_UNIFORMS;
  shaderKey: string;

  constructor(readonly headDim: number) {
    this.shaderKey = `attention-decode-combine:${headDim}`;
  }

  getUserCode(): string {
    return `
  const D4 = ${this.headDim / 4};
  @compute @workgroup_size(${DECODE_COMBINE_WORKGROUP}, 1, 1)
  fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
    let index = (i32(wg.y) * uniforms.dispatchX + i32(wg.x)) * ${DECODE_COMBINE_WORKGROUP} + i32(t);
    if (index >= uniforms.total) { return; }
    let lane4 = index % D4;
    let rowIndex = index / D4;  // (b, hk, rr) flattened
    let g = uniforms.groupSize;
    let rowsTotal = uniforms.seqQ * g;
    let rr = rowIndex % rowsTotal;
    let hk = (rowIndex / rowsTotal) % uniforms.kvHeads;
    let b = rowIndex / (rowsTotal * uniforms.kvHeads);
    let i = rr / g;
    let h = hk * g + rr % g;
    let firstSplit = rowIndex * uniforms.splits;
    var m = uniforms.negInf;
    for (var s = 0; s < uniforms.splits; s++) { m = max(m, partialStats[firstSplit + s].x); }
    var l = 0.0;
    var o = vec4<f32>(0.0);
    if (m != uniforms.negInf) {
      for (var s = 0; s < uniforms.splits; s++) {
        let st = partialStats[firstSplit + s];
        if (st.x != uniforms.negInf) {
          let w = exp(st.x - m);
          l += st.y * w;
          o += partialOut[(firstSplit + s) * D4 + lane4] * w;
        }
      }
    }
    var result = vec4<f32>(0.0);
    var rowLse = uniforms.negInf;
    if (l > 0.0) {
      result = o / l;
      rowLse = m + log(l);
    }
    output[((b * uniforms.seqQ + i) * uniforms.heads + h) * D4 + lane4] = result;
    if (lane4 == 0) { lse[(b * uniforms.heads + h) * uniforms.seqQ + i] = rowLse; }
  }`;
  }
}
