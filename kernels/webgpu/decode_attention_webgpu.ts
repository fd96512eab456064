/**
 * The split-K decode programs (flash-decoding) for a few query rows against a long key range.
 *
 * DecodeSplitProgram: one workgroup per (key split, row group, kv head, batch). A row group holds up to `rows`
 * (query row, query head) pairs of ONE kv head — every query head of a GQA group together — so each K and V element
 * is read once per kv head and split, not once per query head. Per block of `block` keys the workgroup
 *   1. scores: thread t takes key j0 + t and dots it with every row's q (q rows staged in workgroup memory),
 *      applying scale, softcap, ALiBi and the window/causal/keyLengths visibility;
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

/** Workgroup memory of a split program, in bytes (q rows + the block's scores + per-row statistics + reduction). */
export function decodeWorkgroupBytes(c: Pick<DecodeConfig, 'headDim' | 'rows' | 'block'>): number {
  // + one vec4 per thread for the key parts' reduction.
  return 4 * (c.rows * c.headDim + c.rows * c.block + 3 * c.rows + c.block) + 16 * c.block;
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
      c.hasQueryOffsets}:${c.alibi}:${c.pvRowParts}:${c.keyLengthsUniform}:${c.queryOffsetsUniform}`;
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

function scoreCode(c: DecodeConfig): string {
  const capped = c.softcap ? 'score = uniforms.softcap * tanh(score / uniforms.softcap);' : '';
  const alibi = c.alibi ?
      `score -= alibiSlopes[b * uniforms.alibiBatchStride + rowHead[r]] * abs(f32(rowPos[r] - j));` : '';
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

/** P·V: thread (slot, lane4), slot = keyPart·ROW_PARTS + rowPart, takes its rows × its keys of the block. */
const PV_CODE = `
      // 3. P·V: rows rowPart, rowPart + ROW_PARTS, … over keys keyPart, keyPart + KEY_PARTS, …; vec4 lane4
      if (slot < ROW_PARTS * KEY_PARTS) {
        for (var n = 0; n < PER_THREAD; n++) {
          let r = rowPart + n * ROW_PARTS;
          if (r < ROWS) { acc[n] = acc[n] * rowScale[r]; }
        }
        let keys = min(BLOCK, blockEnd - j0);
        for (var x = keyPart; x < keys; x += KEY_PARTS) {
          let vv = v[((b * uniforms.seqK + j0 + x) * uniforms.kvHeads + hk) * D4 + lane4];
          for (var n = 0; n < PER_THREAD; n++) {
            let r = rowPart + n * ROW_PARTS;
            if (r < ROWS) { acc[n] += scores[r * BLOCK + x] * vv; }
          }
        }
      }
      workgroupBarrier();`;

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
  }

  getUserCode(): string {
    const c = this.config;
    const d4 = c.headDim / 4;
    const slots = Math.max(1, Math.floor(c.block / d4));
    const lanes = Math.max(1, Math.floor(c.block / c.rows));
    const rowParts = Math.max(1, Math.min(c.pvRowParts, slots));
    return `
  const D4 = ${d4};
  const ROWS = ${c.rows};
  const BLOCK = ${c.block};
  const LANES = ${lanes};
  const SLOTS = ${slots};
  const ROW_PARTS = ${rowParts};
  const KEY_PARTS = ${Math.floor(slots / rowParts)};
  const PER_THREAD = ${Math.ceil(c.rows / rowParts)};
  var<workgroup> qs: array<vec4<f32>, ${c.rows * d4}>;
  var<workgroup> scores: array<f32, ${c.rows * c.block}>;
  var<workgroup> rowMax: array<f32, ROWS>;
  var<workgroup> rowSum: array<f32, ROWS>;
  var<workgroup> rowScale: array<f32, ROWS>;
  var<workgroup> partials: array<f32, BLOCK>;
  var<workgroup> partSums: array<vec4<f32>, BLOCK>;
  ${visibilityCode(c)}

  @compute @workgroup_size(${c.block}, 1, 1)
  fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) t: u32) {
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
    var acc = array<vec4<f32>, PER_THREAD>();
    workgroupBarrier();

    // This split's keys, narrowed to those some row of the group can see (uniform across the workgroup).
    let splitStart = max(split * uniforms.splitLength, groupLo);
    let blockEnd = min(min((split + 1) * uniforms.splitLength, uniforms.seqK), groupHi + 1);
    for (var j0 = splitStart; j0 < blockEnd; j0 += BLOCK) {
      ${scoreCode(c)}
      ${SOFTMAX_CODE}
      ${PV_CODE}
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
