/**
 * The tensor-core (subgroup-matrix) FlashAttention-2 forward on WebGPU, for precision 'medium' (f16 operands, f32
 * accumulation) and 'high' (each fp32 operand split into an f16 hi part and an f16 lo part; products hi·hi + hi·lo +
 * lo·hi accumulated in f32: cuBLAS/CUTLASS's 3×f16 emulation of fp32). attention_forward_tc.ts runs it.
 *
 * 'high' keeps every lo part a normal f16 number (no subnormals, which some drivers flush to zero): hi is x
 * truncated to f16's 11 significant bits (splitHi), lo parts are stored times LO_SCALE = 2^11, so
 *   S = Qhi·Khi + (Qhi·Klo' + Qlo'·Khi) / LO_SCALE        two accumulators, both stored (Sw, Sx)
 *   PSCALE·P·V = P'hi·Vhi + P'lo·Vhi + (P'hi / LO_SCALE)·Vlo'   one accumulator, with P' = PSCALE·P
 * (PSCALE = LO_SCALE, so P'hi / LO_SCALE is P's own f16 rounding and P'lo is P's lo part times PSCALE).
 *
 * Two programs:
 *   TcPackProgram    q, k, v (f32, [batch, seq, heads, headDim]) → ONE f16 buffer, head-major and zero-padded:
 *                    [batch, heads, seqPad, DP] per tensor (seqPad a multiple of the tile, DP = headDim rounded up to
 *                    16), hi parts first and, for 'high', the lo parts `loAt` elements later. Padding with zeros is
 *                    what lets the matrix loads read whole 16×16 tiles with no bounds checks (a zero key row scores
 *                    0 and is masked; a zero value row adds 0).
 *   TcForwardProgram one workgroup per (query tile, head, batch), walking the plan's block schedule like the fp32
 *                    forward (flash_attention_webgpu.ts). Per key tile:
 *                      1. S = Q·Kᵀ on 16×16×16 MMAs, straight from the packed buffer (K loaded column-major), to
 *                         workgroup memory as f32;
 *                      2. SIMT: scale, softcap, bias/ALiBi, masks (the fp32 forward's isVisible and the option
 *                         helpers of attention_options.ts), the row max over the threads sharing a row;
 *                      3. SIMT: online softmax in f32, P (dropout applied, scaled by PSCALE) to workgroup memory as
 *                         f16 (hi and lo for 'high'), O rows rescaled in place;
 *                      4. O += P·V on MMAs, O living in workgroup memory as f32 (loaded into a result matrix,
 *                         accumulated, stored back).
 *                    Then O / l and lse are written by SIMT code. Every MMA phase hands tiles to subgroups
 *                    round-robin (subgroup s takes tiles s, s + numSubgroups, …), so the code holds for any subgroup
 *                    size; subgroup-matrix calls sit only in loops whose bounds are the same for a whole subgroup.
 *
 * The register kernel (`fast`, 'medium' only; the 'medium' default) keeps Q and O in subgroup-matrix variables
 * across the key loop; its `staged` variant also copies each key tile's K and V into workgroup memory (Ks, Vs) with
 * cooperative 16-byte loads, one tile ahead, and loads the K / V matrices from there (see "The staged variant").
 * Tile variants (TcTileConfig): `rowBlocks` 16-row blocks per subgroup (each K / V matrix loaded once for all of
 * them; with one thread per row the row max needs no exchange, saving a barrier) and, staged, `kvBuffers` 2 (the
 * prefetched tile stored into the buffer this tile does not read, saving another).
 * The staged variant also runs 'high' (see "'high' on the staged kernel"): Q's hi and lo matrices held, K's and V's
 * hi and lo parts staged, S's cross terms scaled in registers (no Sx), P split three ways as in the memory kernel.
 *
 * P is scaled by PSCALE = 2^11 before its f16 rounding: probabilities down to 2^-25 stay normal f16 numbers (and in
 * 'high' their lo parts down to 2^-14), and the scale comes out exactly in the final 1 / (l·PSCALE).
 *
 * Emulation (tests): with `emulate`, every subgroup-matrix operation is replaced by SIMT code over the same memory
 * (lanes of EMULATED_SUBGROUP invocations, each owning 256 / EMULATED_SUBGROUP elements of a 16×16 tile), so that
 * the whole kernel — packing, indexing, masks, softmax, P·V, outputs — runs on devices with only shader-f16
 * (lavapipe) and is checked against the float64 reference there. Only the MMA statements differ.
 */
import {
  elementMasked, MASKED_TERM, OPTION_UNIFORMS, optionBindings, optionFunctions, OptionFlags, optionKey,
  tileStateFunction,
} from './attention_options.js';
import {
  FORWARD_UNIFORMS, keyTileLoops, NEXT_SCHEDULED_TILE, scheduleRowRange, visibilityFunction,
} from './flash_attention_webgpu.js';
import {PHILOX_WGSL} from './philox_wgsl.js';
import type {MultiOutputProgram, UniformType} from './program_runner.js';
import {STABLE_TANH_WGSL} from './wgsl_math.js';

export type TensorCorePrecision = 'medium' | 'high';

/** Tile of the tensor-core forward: blockQ query rows × blockK keys, `threads` invocations. */
export interface TcTileConfig {
  blockQ: number;
  blockK: number;
  threads: number;
  /**
   * Register kernel only: 16-row blocks each subgroup holds (Q and O matrices of `rowBlocks` blocks; every K / V
   * matrix loaded once for all of them). Default 1.
   */
  rowBlocks?: number;
  /**
   * Staged kernel only: K / V tile buffers in workgroup memory. 2: the prefetched tile goes to the buffer this tile
   * does not read, so it needs no barrier of its own. Default 1.
   */
  kvBuffers?: number;
}

/** A tile's row blocks per subgroup and K / V buffers, defaults filled in. */
export function tileVariant(c: TcTileConfig): {rowBlocks: number; kvBuffers: number} {
  return {rowBlocks: c.rowBlocks ?? 1, kvBuffers: c.kvBuffers ?? 1};
}

/** The MMA tile edge (f16 16×16×16 → f32 configuration). */
export const MMA = 16;
/** Subgroup size the emulated MMAs assume (any value dividing `threads` would do). */
export const EMULATED_SUBGROUP = 32;
/** P is multiplied by this before rounding to f16, and 'high' stores lo parts times LO_SCALE (see the header). */
const PSCALE = 2048;
const LO_SCALE = 2048;
/**
 * The register-resident kernel's lazy rescale (FlashAttention-4): a row's O and l stay relative to a stale max
 * m_used until the row max exceeds it by more than TAU (log2 units), so P = exp2(x − m_used) ≤ 2^TAU, and
 * P·FAST_PSCALE ≤ 2^(TAU+7) = 32768 < 65504 (f16's largest). Below: P·FAST_PSCALE is a normal f16 number for
 * P ≥ 2^-21; smaller ones round to f16 subnormals with absolute error ≤ 2^-25 / FAST_PSCALE = 2^-32 in P, while
 * l ≥ 1 (it holds exp2(m − m_used) ≥ 1 for the row's true max m ≥ m_used): the relative error stays f16's 2^-11.
 */
const TAU = 8;
const FAST_PSCALE = 128;
/**
 * 'high' on the staged kernel: P'' = P·HIGH_PSCALE ≤ 2^(HIGH_TAU + 11) = 32768 < 65504, and P''hi / LO_SCALE (the left
 * matrix of the hi·lo term of P·V) is a normal f16 number down to P = 2^-14, as in the memory kernel (PSCALE 2048,
 * P ≤ 1). The smaller TAU rescales O a little more often (a row max must grow by 16×, not 256×).
 */
const HIGH_TAU = 4;
const HIGH_PSCALE = 2048;

/**
 * The 'high' split: hi = x rounded to f16's 11 significant bits (round half away from zero on the bits: add half of
 * the 13 dropped mantissa bits, then clear them; a carry moves into the exponent as rounding should), exactly an f16
 * number for f16-normal magnitudes; lo = x − hi exactly in f32 (|lo| ≤ 2^-12·|x|), stored as f16(lo · LO_SCALE).
 * Rounding rather than truncating halves |lo|, hence both the f16 rounding error of lo (≤ 2^-23·|x|, was 2^-22) and
 * the dropped lo·lo product (≤ 2^-24·|x·y|, was 2^-20). Done on the bits because compilers may fold
 * x − f32(f16(x)) to 0 (Mesa's lavapipe does, and unpack2x16float(pack2x16float(x)) likewise).
 */
const SPLIT_HI_WGSL = `
fn splitHi(x: f32) -> f32 {
  return bitcast<f32>((bitcast<u32>(x) + 0x1000u) & 0xffffe000u);
}
`;

/** Head size padded to whole MMA tiles. */
export function paddedTcHeadDim(headDim: number): number {
  return Math.ceil(headDim / MMA) * MMA;
}

/**
 * Row strides of the workgroup tiles: padded by 16 bytes (bank spread), keeping rows 16-byte aligned. KST: the staged
 * K and V tiles' rows (f16; DP + 8 halves: a 16×16 matrix load reads 16-byte row pieces that land 4 banks apart).
 */
function strides(c: TcTileConfig, dp: number) {
  return {SST: c.blockK + 4, PST: c.blockK + 8, OST: dp + 4, KST: dp + 8};
}

/** The register kernel's variants: `fast` (K and V matrices loaded from the packed buffer) and `staged`. */
export interface TcKernelFlags {
  /** The register kernel (O and Q in subgroup-matrix variables). */
  fast?: boolean;
  /** With `fast`: each key tile's K and V staged in workgroup memory (cooperative 16-byte loads, one tile ahead). */
  staged?: boolean;
}

/**
 * Workgroup memory of the forward program (bytes): S (f32; 'high' also its cross terms), P (f16; 'high': P'hi,
 * P'lo and P'hi / LO_SCALE), O (f32), row parts.
 */
export function tcWorkgroupBytes(
    c: TcTileConfig, headDim: number, precision: TensorCorePrecision, fast = false, staged = false): number {
  const {SST, PST, OST, KST} = strides(c, paddedTcHeadDim(headDim));
  const tpr = c.threads / c.blockQ;
  const high = precision === 'high';
  // The register kernel has no Ow (O in result matrices) and one flag; the staged one adds Ks and Vs (f16; hi and lo
  // for 'high'; kvBuffers of them). 'high' on the register kernel scales S's cross terms in registers: no Sx.
  return 4 * c.blockQ * SST * (high && !fast ? 2 : 1) + 2 * c.blockQ * PST * (high ? 3 : 1) +
      (fast ? 4 : 4 * c.blockQ * OST) + 4 * c.blockQ * tpr + 32 +
      (fast && staged ? 2 * 2 * c.blockK * KST * (high ? 2 : 1) * tileVariant(c).kvBuffers : 0);
}

/**
 * Whether the SIMT phases divide evenly: every row has threads / blockQ threads, each owning whole groups of 4 keys
 * (one Philox call per group under dropout) and whole head-dim columns of O.
 */
export function tcConfigValid(c: TcTileConfig, headDim: number, fast = false): boolean {
  const tpr = c.threads / c.blockQ;
  return Number.isInteger(tpr) && c.blockQ % MMA === 0 && c.blockK % MMA === 0 &&
      c.blockK % (4 * tpr) === 0 && paddedTcHeadDim(headDim) % tpr === 0 &&
      // The register kernel's O passes through Sw in 16-column tiles, split evenly over a row's threads.
      (!fast || MMA % tpr === 0) && (fast || (c.rowBlocks == null && c.kvBuffers == null)) &&
      c.blockQ % (MMA * tileVariant(c).rowBlocks) === 0;
}

/** Uniforms: the fp32 forward's (the shared WGSL helpers read them by name) and where the packed operands are. */
export const TC_FORWARD_UNIFORMS: Array<[string, UniformType]> = [
  ...FORWARD_UNIFORMS,
  ['qAt', 'u32'], ['kAt', 'u32'], ['vAt', 'u32'], ['loAt', 'u32'], ['seqQPad', 'i32'], ['seqKPad', 'i32'],
];

/** One side of an MMA: `array` (a WGSL array name), element offset and row stride (u32 WGSL expressions). */
export interface MatrixRef {
  array: string;
  offset: string;
  stride: string;
  colMajor?: boolean;
  /**
   * A left matrix already loaded into a variable of this name (holdLeft / assignLeft): the real dialect multiplies
   * the variable; the emulated one reads array/offset, `offset` being that variable (it holds the source offset).
   */
  held?: string;
}

/**
 * The subgroup-matrix statements, real or emulated. Accumulators are named; `sg` / `numSg` (u32) are the
 * invocation's subgroup and the workgroup's subgroup count.
 */
export interface MatrixDialect {
  /** Statements at the top of main defining sg and numSg. */
  subgroupIds: string;
  /** Extra builtins of main's signature. */
  builtins: string;
  zero(acc: string): string;
  load(acc: string, m: MatrixRef): string;
  /** acc += Σ over `terms` of left·right (the terms of one 16×16×16 step). */
  multiplyAccumulate(acc: string, terms: Array<[MatrixRef, MatrixRef]>): string;
  store(acc: string, m: MatrixRef): string;
  /** acc *= factor (a power of two here: exact). */
  scale(acc: string, factor: string): string;
  /** `acc` (declared) = a result matrix loaded from m / zero. */
  assign(acc: string, m: MatrixRef): string;
  zeroAssign(acc: string): string;
  /** A left matrix variable: declared (function scope), assigned from m, or declared and loaded at once (let). */
  declareLeft(name: string): string;
  assignLeft(name: string, m: MatrixRef): string;
  holdLeft(name: string, m: MatrixRef): string;
  /** A right matrix declared and loaded at once (let), used through MatrixRef.held. */
  holdRight(name: string, m: MatrixRef): string;
}

const realDialect: MatrixDialect = {
  subgroupIds: `
  let sg = lid / sgSize;
  let numSg = THREADS_U / sgSize;`,
  builtins: ', @builtin(subgroup_size) sgSize: u32',
  zero: (acc) => `var ${acc} = subgroup_matrix_result<f32, 16, 16>();`,
  load: (acc, m) =>
      `var ${acc} = subgroupMatrixLoad<subgroup_matrix_result<f32, 16, 16>>(&${m.array}, ${m.offset}, false, ${
          m.stride});`,
  multiplyAccumulate: (acc, terms) => terms.map(([l, r], t) => `
        {
          let left${t} = ${l.held ?? `subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>(&${l.array}, ${
      l.offset}, ${!!l.colMajor}, ${l.stride})`};
          let right${t} = ${r.held ?? `subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&${r.array}, ${
      r.offset}, ${!!r.colMajor}, ${r.stride})`};
          ${acc} = subgroupMatrixMultiplyAccumulate(left${t}, right${t}, ${acc});
        }`).join(''),
  store: (acc, m) => `subgroupMatrixStore(&${m.array}, ${m.offset}, ${acc}, false, ${m.stride});`,
  scale: (acc, factor) => `${acc} = subgroupMatrixScalarMultiply(${acc}, ${factor});`,
  assign: (acc, m) =>
      `${acc} = subgroupMatrixLoad<subgroup_matrix_result<f32, 16, 16>>(&${m.array}, ${m.offset}, false, ${m.stride});`,
  zeroAssign: (acc) => `${acc} = subgroup_matrix_result<f32, 16, 16>();`,
  declareLeft: (name) => `var ${name} = subgroup_matrix_left<f16, 16, 16>();`,
  assignLeft: (name, m) =>
      `${name} = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>(&${m.array}, ${m.offset}, false, ${m.stride});`,
  holdLeft: (name, m) =>
      `let ${name} = subgroupMatrixLoad<subgroup_matrix_left<f16, 16, 16>>(&${m.array}, ${m.offset}, false, ${
          m.stride});`,
  holdRight: (name, m) =>
      `let ${name} = subgroupMatrixLoad<subgroup_matrix_right<f16, 16, 16>>(&${m.array}, ${m.offset}, ${
          !!m.colMajor}, ${m.stride});`,
};

/** Element (r, c) of a matrix reference, as WGSL (f32). */
function elementAt(m: MatrixRef, r: string, c: string): string {
  const index = m.colMajor ? `${m.offset} + (${c}) * ${m.stride} + ${r}` : `${m.offset} + (${r}) * ${m.stride} + ${c}`;
  return `f32(${m.array}[${index}])`;
}

const EMULATED_PER_LANE = (MMA * MMA) / EMULATED_SUBGROUP;

/** Lane `lane` of an emulated subgroup owns elements lane + EMULATED_SUBGROUP·e of the tile (row-major). */
const emulatedDialect: MatrixDialect = {
  subgroupIds: `
  let sg = lid / ${EMULATED_SUBGROUP}u;
  let numSg = THREADS_U / ${EMULATED_SUBGROUP}u;
  let lane = lid % ${EMULATED_SUBGROUP}u;
  // Loop bounds the shader compiler cannot see as constants: fully unrolled emulation loops took lavapipe's LLVM
  // over a minute to compile. (seqQ is never negative.)
  let emuK = select(16u, 0u, uniforms.seqQ < 0);
  let emuPerLane = select(${EMULATED_PER_LANE}u, 0u, uniforms.seqQ < 0);`,
  builtins: '',
  zero: (acc) => `var ${acc} = array<f32, ${EMULATED_PER_LANE}>();`,
  load: (acc, m) => `var ${acc} = array<f32, ${EMULATED_PER_LANE}>();
        for (var e = 0u; e < emuPerLane; e++) {
          let at = lane + ${EMULATED_SUBGROUP}u * e;
          ${acc}[e] = ${elementAt(m, 'at / 16u', 'at % 16u')};
        }`,
  multiplyAccumulate: (acc, terms) => `
        for (var e = 0u; e < emuPerLane; e++) {
          let at = lane + ${EMULATED_SUBGROUP}u * e;
          var sum = ${acc}[e];
          for (var kk = 0u; kk < emuK; kk++) {
            ${terms.map(([l, r]) => `sum += ${elementAt(l, 'at / 16u', 'kk')} * ${elementAt(r, 'kk', 'at % 16u')};`)
      .join('\n            ')}
          }
          ${acc}[e] = sum;
        }`,
  store: (acc, m) => `
        for (var e = 0u; e < emuPerLane; e++) {
          let at = lane + ${EMULATED_SUBGROUP}u * e;
          ${m.array}[${m.offset} + (at / 16u) * ${m.stride} + at % 16u] = ${acc}[e];
        }`,
  scale: (acc, factor) => `
        for (var e = 0u; e < emuPerLane; e++) { ${acc}[e] *= ${factor}; }`,
  assign: (acc, m) => `
        for (var e = 0u; e < emuPerLane; e++) {
          let at = lane + ${EMULATED_SUBGROUP}u * e;
          ${acc}[e] = ${elementAt(m, 'at / 16u', 'at % 16u')};
        }`,
  zeroAssign: (acc) => `${acc} = array<f32, ${EMULATED_PER_LANE}>();`,
  // An emulated held matrix is the offset of its source, which no one writes while the matrix is live (Q in the
  // packed buffer; P in Pw until the next barrier; K / V in their tile): reading the source at multiply time gives
  // the loaded values.
  declareLeft: (name) => `var ${name} = 0u;`,
  assignLeft: (name, m) => `${name} = ${m.offset};`,
  holdLeft: (name, m) => `let ${name} = ${m.offset};`,
  holdRight: (name, m) => `let ${name} = ${m.offset};`,
};

/**
 * The subgroup-matrix statements a tensor-core program is written in: the real ones, or (tests) their SIMT emulation
 * (lanes of EMULATED_SUBGROUP invocations). Both expect `lid` (u32 local index), `THREADS_U` and, emulated,
 * `uniforms.seqQ` in scope. Shared with the tensor-core backward (flash_attention_grad_tc_webgpu.ts).
 */
export function matrixDialect(emulate: boolean): MatrixDialect {
  return emulate ? emulatedDialect : realDialect;
}

/** What every phase builder needs. */
interface TcShape {
  config: TcTileConfig;
  headDim: number;
  DP: number;
  precision: TensorCorePrecision;
  hasSoftcap: boolean;
  hasKeyLengths: boolean;
  hasLayout: boolean;
  opts: OptionFlags | null;
  dialect: MatrixDialect;
  /** Threads per query row in the SIMT phases, 4-key groups and O columns each owns. */
  TPR: number;
  groups: number[];
  ocols: number[];
  /** The register-resident kernel (TcRegisterForwardProgram) rather than the workgroup-memory-O one. */
  fast: boolean;
  /** The register kernel with K and V staged in workgroup memory (Ks, Vs; stageKeyValues). */
  staged: boolean;
  /** 16-row blocks per subgroup (register kernel) and K / V buffers (staged): TcTileConfig's, defaults filled. */
  rowBlocks: number;
  kvBuffers: number;
  /**
   * The register kernel with one thread per row (TPR 1): the row max needs no exchange through rowPart, so the
   * lazy-rescale flag is read at the barrier that publishes P (one barrier per tile fewer).
   */
  mergedFlag: boolean;
}

/** The same matrix `at` elements further (where the lo parts, or another P array, sit). */
function shifted(m: MatrixRef, at: string): MatrixRef {
  return {...m, offset: `${at} + ${m.offset}`};
}

function declarations(s: TcShape): string {
  const {blockQ, blockK, threads} = s.config;
  const {SST, PST, OST, KST} = strides(s.config, s.DP);
  const summarized = s.opts != null && elementMasked(s.opts);
  const high = s.precision === 'high';
  const kvn = keyValuePieces(s);
  return `
const BQ = ${blockQ};
const BK = ${blockK};
const DP = ${s.DP}u;
const THREADS = ${threads};
const THREADS_U = ${threads}u;
const TPR = ${s.TPR};
const SST = ${SST}u;
const PST = ${PST}u;
const OST = ${OST}u;
// Offsets in Pw ('high'): P'lo, then P'hi / LO_SCALE.
const PLO = ${blockQ * PST}u;
const PHI = ${2 * blockQ * PST}u;
const PSCALE = ${!s.fast ? PSCALE : high ? HIGH_PSCALE : FAST_PSCALE}.0;${s.fast ? `
const TAU = ${high ? HIGH_TAU : TAU}.0;
const RB = ${s.rowBlocks}u;
// Row-block groups (RB blocks each, one group per subgroup).
const RGU = ${blockQ / MMA / s.rowBlocks}u;` : ''}${s.staged ? `
const KST = ${KST}u;
// The staged K / V tile in 16-byte pieces (8 halves): DP8 per key row, KV_VEC4 per tile, KVN per invocation${
      high ? `;
// KLO: where the lo parts' rows start in Ks / Vs (hi rows first); the prefetch registers hold hi pieces, then lo` : ''}.
const DP8 = ${s.DP / 8}u;
const KV_VEC4 = ${blockK * s.DP / 8}u;
const KVN = ${kvn}u;${high ? `
const KLO = ${blockK * KST}u;` : ''}${s.kvBuffers === 2 ? `
// The second K / V buffer starts here (f16 elements).
const KV_ALT = ${blockK * KST * (high ? 2 : 1)}u;` : ''}` : ''}
const INV_LO_SCALE = ${1 / LO_SCALE};
// Masked scores: finite (no inf arithmetic anywhere), far below any real score; their p is forced to 0.
const MASKED = -3.0e38;
const LOG2E = 1.4426950408889634;
const LN2 = 0.6931471805599453;

var<workgroup> Sw: array<f32, ${blockQ * SST}>;${high && !s.fast ? `
// The cross terms (Qhi·Klo' + Qlo'·Khi) of S, times LO_SCALE.
var<workgroup> Sx: array<f32, ${blockQ * SST}>;` : ''}
var<workgroup> Pw: array<f16, ${blockQ * PST * (s.precision === 'high' ? 3 : 1)}>;
${s.fast ? `// Set when some row's max outgrew its stale max by more than TAU (scoreFinish): O is rescaled this tile.
var<workgroup> rescaleFlag: u32;` : `var<workgroup> Ow: array<f32, ${blockQ * OST}>;`}${s.staged ? `
// This key tile's K and V rows (f16, row stride KST${high ? '; hi rows, then lo rows from KLO' : ''}), staged by
// stageKeyValues${s.kvBuffers === 2 ? '; two buffers, kvAt the current one' : ''}.
var<workgroup> Ks: array<f16, ${blockK * KST * (high ? 2 : 1) * s.kvBuffers}>;
var<workgroup> Vs: array<f16, ${blockK * KST * (high ? 2 : 1) * s.kvBuffers}>;` : ''}
var<workgroup> rowPart: array<f32, ${blockQ * s.TPR}>;
var<workgroup> sharedRange: vec4<i32>;
var<workgroup> sharedRun: vec4<i32>;
${STABLE_TANH_WGSL}${s.precision === 'high' ? SPLIT_HI_WGSL : ''}${
    s.opts == null ? '' : optionFunctions(s.opts, 'schedule')}${
    summarized ? tileStateFunction('schedule', blockQ) : ''}${s.opts?.dropout ? PHILOX_WGSL : ''}
${visibilityFunction(s)}`;
}

/** Phase 1: Sw = Q·Kᵀ, 16×16 output tiles handed to subgroups round-robin. */
function scoreProduct(s: TcShape): string {
  const {blockQ, blockK} = s.config;
  const colTiles = blockK / MMA;
  const q: MatrixRef = {array: 'packed', offset: 'qOff + d', stride: 'DP'};
  const k: MatrixRef = {array: 'packed', offset: 'kOff + d', stride: 'DP', colMajor: true};
  const high = s.precision === 'high';
  const sAt = (array: string): MatrixRef =>
      ({array, offset: `(t / ${colTiles}u) * 16u * SST + (t % ${colTiles}u) * 16u`, stride: 'SST'});
  return `
      // S = Q·Kᵀ on MMAs (K read column-major: element (d, j) of Kᵀ is k[j, d]).
      for (var t = sg; t < ${(blockQ / MMA) * colTiles}u; t += numSg) {
        let qOff = qTile + (t / ${colTiles}u) * 16u * DP;
        let kOff = kHead + (u32(k0) + (t % ${colTiles}u) * 16u) * DP;
        ${s.dialect.zero('acc')}${high ? `
        ${s.dialect.zero('cross')}` : ''}
        for (var d = 0u; d < DP; d += 16u) {${s.dialect.multiplyAccumulate('acc', [[q, k]])}${high ?
      s.dialect.multiplyAccumulate('cross', [[q, shifted(k, 'uniforms.loAt')], [shifted(q, 'uniforms.loAt'), k]]) :
      ''}
        }
        ${s.dialect.store('acc', sAt('Sw'))}${high ? `
        ${s.dialect.store('cross', sAt('Sx'))}` : ''}
      }
      workgroupBarrier();
`;
}

/**
 * Phase 2: this thread's scores (row `row`, 4-key groups g·TPR + part) scaled into base 2, softcapped, biased and
 * masked as the fp32 forward does, and the row max over them published to rowPart.
 */
function scoreFinish(s: TcShape): string {
  const hasTerm = s.opts != null && (s.opts.bias || s.opts.alibi);
  const capped = 'uniforms.softcap * stableTanh(raw * uniforms.scale / uniforms.softcap)';
  const base = s.hasSoftcap ? capped : 'raw * uniforms.scale';
  const score = hasTerm ? `
            let term = scoreTerm(i, j);
            var x = (${base} + term) * LOG2E;
            if (term <= ${MASKED_TERM}) { x = MASKED; }` : s.hasSoftcap ? `
            var x = ${capped} * LOG2E;` : `
            var x = raw * scaleLog2;`;
  return `
      var rowMax = MASKED;
      ${s.groups.map((g) => `var x${g} = vec4<f32>(MASKED);`).join(' ')}
      ${s.groups.map((g) => `
      {
        let c0 = ${g * s.TPR * 4} + part * 4;
        for (var e = 0; e < 4; e++) {
          let j = k0 + c0 + e;
          let at = u32(row) * SST + u32(c0 + e);
          let raw = ${s.precision === 'high' && !s.fast ? 'Sw[at] + Sx[at] * INV_LO_SCALE' : 'Sw[at]'};${score}
          if (!full && !isVisible(i, j, keyLength, maskHead)) { x = MASKED; }
          x${g}[e] = x;
          rowMax = max(rowMax, x);
        }
      }`).join('')}
${s.mergedFlag ? '' : `
      rowPart[row * TPR + part] = rowMax;`}${s.fast && !s.mergedFlag ? `
      ${RAISE_RESCALE_FLAG('rowMax')}
      let rescale = workgroupUniformLoad(&rescaleFlag);` : s.fast ? '' : `
      workgroupBarrier();`}
`;
}

/**
 * A row with something accumulated whose max `m` outgrew its stale max by more than TAU makes the whole workgroup
 * rescale O this tile (several invocations may store the same 1u; it is read after a barrier).
 */
const RAISE_RESCALE_FLAG = (m: string) => `if (${m} > runMax + TAU && runMax != MASKED) { rescaleFlag = 1u; }`;

/**
 * Element e of this thread's scaled probabilities (`scaled`, of key group c0) to Pw as f16 (groupProbabilities);
 * 'high': split into P'hi, P'lo and P'hi / LO_SCALE (the left matrix of the hi·lo term of P·V).
 */
function storeProbabilities(s: TcShape): string {
  return `
            let at = u32(row) * PST + u32(c0 + e);${s.precision === 'high' ? `
            let hi = splitHi(scaled[e]);
            Pw[at] = f16(hi);
            Pw[PLO + at] = f16(scaled[e] - hi);
            Pw[PHI + at] = f16(hi * INV_LO_SCALE);` : `
            Pw[at] = f16(scaled[e]);`}`;
}

/**
 * Both kernels' softmax, for this thread's 4-key group g: P = exp2(x − rowMax) (0 where masked) added to the row sum,
 * then P · PSCALE to Pw (storeProbabilities); under dropout, dropped keys store 0 and kept ones P · keptScale
 * (dropoutKeepBits: one Philox call for the group's 4 keys; the memory kernel's keptScale holds 1 / (1 − rate), the
 * register kernel applies it to O at the end).
 */
function groupProbabilities(s: TcShape, g: number, rowMax: string, keptScale: string): string {
  return `
        {
          let c0 = ${g * s.TPR * 4} + part * 4;
          let p = select(exp2(x${g} - vec4<f32>(${rowMax})), vec4<f32>(0.0), x${g} == vec4<f32>(MASKED));
          sum += p.x + p.y + p.z + p.w;${s.opts?.dropout ? `
          let keep = dropoutKeepBits((k0 + c0) / 4, i, h, batch);
          let kept = vec4<bool>((keep & 1u) != 0u, (keep & 2u) != 0u, (keep & 4u) != 0u, (keep & 8u) != 0u);
          let scaled = select(vec4<f32>(0.0), p * ${keptScale}, kept);` : `
          let scaled = p * PSCALE;`}
          for (var e = 0; e < 4; e++) {${storeProbabilities(s)}
          }
        }`;
}

/**
 * Phase 3: the new row max over the TPR threads of the row, P = exp2(x − m) (0 where masked) to Pw as f16 —
 * dropout's keep mask applied and scaled by 1 / (1 − rate) for P·V only, the row sum (hence lse) taking P — and
 * this thread's columns of the O row rescaled by exp2(mOld − m).
 */
function onlineSoftmax(s: TcShape): string {
  return `
      {
        var m = runMax;
        for (var t = 0; t < TPR; t++) { m = max(m, rowPart[row * TPR + t]); }
        let alpha = exp2(runMax - m);
        runMax = m;
        var sum = 0.0;
        ${s.groups.map((g) => groupProbabilities(s, g, 'm', '(uniforms.keepScale * PSCALE)')).join('')}
        rowSum = rowSum * alpha + sum;
        if (alpha != 1.0) {
          ${s.ocols.map((k) => `Ow[u32(row) * OST + u32(part + ${k * s.TPR})] *= alpha;`).join('\n          ')}
        }
      }
      workgroupBarrier();
`;
}

/** Phase 4: O += P·V on MMAs, O tiles loaded from and stored back to Ow. */
function valueProduct(s: TcShape): string {
  const {blockQ, blockK} = s.config;
  const dTiles = s.DP / MMA;
  const p: MatrixRef = {array: 'Pw', offset: 'pOff + c', stride: 'PST'};
  const v: MatrixRef = {array: 'packed', offset: 'vOff + c * DP', stride: 'DP'};
  const o: MatrixRef = {array: 'Ow', offset: 'oOff', stride: 'OST'};
  return `
      // O += P·V on MMAs.
      for (var t = sg; t < ${(blockQ / MMA) * dTiles}u; t += numSg) {
        let oOff = (t / ${dTiles}u) * 16u * OST + (t % ${dTiles}u) * 16u;
        let pOff = (t / ${dTiles}u) * 16u * PST;
        let vOff = vHead + u32(k0) * DP + (t % ${dTiles}u) * 16u;
        ${s.dialect.load('acc', o)}
        for (var c = 0u; c < ${blockK}u; c += 16u) {${s.dialect.multiplyAccumulate('acc', s.precision === 'medium' ?
      [[p, v]] : [[shifted(p, 'PHI'), shifted(v, 'uniforms.loAt')], [shifted(p, 'PLO'), v], [p, v]])}
        }
        ${s.dialect.store('acc', o)}
      }`;
}

/** O / (l·PSCALE) and lse = m + log(l) per row (empty rows: 0 and -Infinity), from the TPR threads of each row. */
function writeOutputs(s: TcShape): string {
  return `${rowTotal('1.0')}
  {
    if (i < seqQ) {
      let outRow = (batch * seqQ + i) * uniforms.heads + h;
      ${s.ocols.map((k) => `
      {
        let d = part + ${k * s.TPR};
        if (d < uniforms.headDim) { result[outRow * uniforms.headDim + d] = Ow[u32(row) * OST + u32(d)] * inv; }
      }`).join('')}
      if (part == 0) { ${STORE_LSE} }
    }
  }
`;
}

/**
 * The end of both kernels: the row sums of the TPR threads of each row added up into l, and inv = numerator /
 * (l·PSCALE) (0 for a row that saw no key); STORE_LSE then writes lse = m + log(l) (-Infinity for an empty row).
 */
function rowTotal(numerator: string): string {
  return `
  workgroupBarrier();
  rowPart[row * TPR + part] = rowSum;
  workgroupBarrier();
  var l = 0.0;
  for (var t = 0; t < TPR; t++) { l += rowPart[row * TPR + t]; }
  let inv = select(${numerator} / (l * PSCALE), 0.0, l == 0.0);`;
}
const STORE_LSE =
    'lse[(batch * uniforms.heads + h) * seqQ + i] = select((runMax + log2(l)) * LN2, uniforms.negInf, l == 0.0);';


// ---- The register-resident 'medium' kernel (TcForwardProgram with `fast`), FlashAttention-2 on tensor cores ----
// One 16-row block per subgroup (rb = sg; the workgroup has at least blockQ / 16 subgroups whatever the subgroup
// size, extra subgroups only share the SIMT phases): Q's left matrices qm* are loaded once, O lives in result
// matrices o* across the whole key loop. Per key tile: S = Q·Kᵀ to Sw; the SIMT score and softmax phases of the
// memory kernel (rows spread over all invocations) with the lazy rescale (TAU); O rescaled through Sw only on tiles
// where some row's max outgrew its stale max by more than TAU (workgroup-uniform `rescale`); O += P·V, each P left
// matrix loaded once and used for every head-dim tile.

/**
 * Statements over the subgroup's row-block group: `for (rg = sg; rg < RGU; rg += numSg)`, at most once per subgroup,
 * with `rb0`, `rb1`, … its RB row blocks.
 */
function perRowBlock(s: TcShape, body: string): string {
  return `
      for (var rg = sg; rg < RGU; rg += numSg) {${rowBlockRange(s).map((r) => `
        let rb${r} = rg * RB + ${r}u;`).join('')}${body}
      }`;
}

const rowBlockRange = (s: TcShape) => [...Array(s.rowBlocks).keys()];

/** Where this tile's K or V rows are: the packed buffer, or (staged) Ks / Vs (the current buffer: kvAt). */
function keyValueRef(s: TcShape, which: 'K' | 'V', keyBlock: number, dBlock: number): MatrixRef {
  const colMajor = which === 'K';
  if (s.staged) {
    return {
      array: which === 'K' ? 'Ks' : 'Vs',
      offset: `${s.kvBuffers === 2 ? 'kvAt + ' : ''}${keyBlock * MMA}u * KST + ${dBlock * MMA}u`, stride: 'KST',
      colMajor,
    };
  }
  return {
    array: 'packed',
    offset: `${which === 'K' ? 'kHead' : 'vHead'} + (u32(k0) + ${keyBlock * MMA}u) * DP + ${dBlock * MMA}u`,
    stride: 'DP', colMajor,
  };
}

/**
 * Before the key loop: Q's left matrices (loaded once; hi qm{r}_{d}, and for 'high' lo times LO_SCALE ql{r}_{d}) and
 * O's accumulators o{r}_{d} (zero), for row block r of the subgroup and head-dim tile d.
 */
function holdQuery(s: TcShape): string {
  const tiles = [...Array(s.DP / MMA).keys()];
  const rows = rowBlockRange(s);
  const high = s.precision === 'high';
  const q = (r: number, d: number, lo: boolean): MatrixRef => ({
    array: 'packed', offset: `${lo ? 'uniforms.loAt + ' : ''}qTile + rb${r} * 16u * DP + ${d * MMA}u`, stride: 'DP',
  });
  const each = (f: (r: number, d: number) => string, sep: string) =>
      rows.map((r) => tiles.map((d) => f(r, d)).join(sep)).join(sep);
  return `
  // Q's left matrices, loaded once; O's result matrices, accumulated across every key tile.
  ${each((r, d) => `${s.dialect.declareLeft(`qm${r}_${d}`)}${high ? `
  ${s.dialect.declareLeft(`ql${r}_${d}`)}` : ''}
  ${s.dialect.zero(`o${r}_${d}`)}`, '\n  ')}${perRowBlock(s, each((r, d) => `
        ${s.dialect.assignLeft(`qm${r}_${d}`, q(r, d, false))}${high ? `
        ${s.dialect.assignLeft(`ql${r}_${d}`, q(r, d, true))}` : ''}`, ''))}`;
}

/**
 * Sw = Q·Kᵀ for the subgroup's row blocks, from the held Q matrices; each K matrix (column-major: element (d, j) of
 * Kᵀ is k[j, d]) loaded once for all of them.
 */
function heldScoreProduct(s: TcShape): string {
  const dTiles = s.DP / MMA;
  const colTiles = s.config.blockK / MMA;
  const rows = rowBlockRange(s);
  const held = (name: string): MatrixRef => ({array: 'packed', offset: name, stride: 'DP', held: name});
  // Each K matrix (hi, and for 'high' its lo part from KLO) loaded once for every row block of the subgroup.
  const step = (c: number, d: number, terms: (r: number) => Array<[MatrixRef, 'km' | 'kl']>, lo: boolean) => {
    const k = keyValueRef(s, 'K', c, d);
    const ref = (name: 'km' | 'kl'): MatrixRef => ({...k, offset: name, held: name});
    return `
          {
            ${s.dialect.holdRight('km', k)}${lo ? `
            ${s.dialect.holdRight('kl', shifted(k, 'KLO'))}` : ''}${rows.map((r) => s.dialect.multiplyAccumulate(
        `acc${r}`, terms(r).map(([l, name]) => [l, ref(name)] as [MatrixRef, MatrixRef]))).join('')}
          }`;
  };
  const dRange = [...Array(dTiles).keys()];
  const hiHi = (c: number) => dRange.map((d) => step(c, d, (r) => [[held(`qm${r}_${d}`), 'km']], false)).join('');
  // 'high' (staged only): the cross terms Qlo'·Khi + Qhi·Klo' first (lo parts times LO_SCALE), scaled back by
  // 1 / LO_SCALE in the accumulator (exact: a power of two), then Qhi·Khi on top; the small terms go in first.
  const product = (c: number) => s.precision === 'high' ?
      dRange.map((d) => step(c, d, (r) => [[held(`ql${r}_${d}`), 'km'], [held(`qm${r}_${d}`), 'kl']], true))
          .join('') + rows.map((r) => `
          ${s.dialect.scale(`acc${r}`, 'INV_LO_SCALE')}`).join('') + hiHi(c) :
      hiHi(c);
  return `
      // S = Q·Kᵀ on MMAs.${perRowBlock(s, [...Array(colTiles).keys()].map((c) => `
        {
          ${rows.map((r) => s.dialect.zero(`acc${r}`)).join('\n          ')}${product(c)}
          ${rows.map((r) => s.dialect.store(`acc${r}`,
                                            {array: 'Sw', offset: `rb${r} * 16u * SST + ${c * MMA}u`, stride: 'SST'}))
      .join('\n          ')}
        }`).join(''))}
      workgroupBarrier();
`;
}

/**
 * The online softmax with a stale row max: runMax moves (and alpha ≠ 1) only when the tile's row max exceeds it by
 * more than TAU, exactly where rescaleFlag was raised (or on a row's first visible scores, whose O is 0) — by
 * scoreFinish, or here with one thread per row (mergedFlag), where the flag is then read at the barrier publishing P.
 * P = exp2(x − runMax) · FAST_PSCALE to Pw as f16; dropout zeroes P for P·V (keepScale comes in at the end), the row
 * sum takes every P.
 */
function lazySoftmax(s: TcShape): string {
  return `
      {${s.mergedFlag ? `
        // One thread per row: its own max is the row's.
        let m = rowMax;
        ${RAISE_RESCALE_FLAG('m')}` : `
        var m = MASKED;
        for (var t = 0; t < TPR; t++) { m = max(m, rowPart[row * TPR + t]); }`}
        alpha = 1.0;
        if (m > runMax + TAU) {
          alpha = exp2(runMax - m);
          runMax = m;
        }
        var sum = 0.0;
        ${s.groups.map((g) => groupProbabilities(s, g, 'runMax', 'PSCALE')).join('')}
        rowSum = rowSum * alpha + sum;
      }${s.mergedFlag ? `
      // P is published and the flag read by everyone at once (tid 0 clears it after the next tile's first barrier).
      let rescale = workgroupUniformLoad(&rescaleFlag);` : `
      workgroupBarrier();
      // Everyone has read the flag (workgroupUniformLoad, before the barrier above).
      if (tid == 0) { rescaleFlag = 0u; }`}
`;
}

/**
 * O's result matrices through Sw, BK / 16 head-dim tiles at a time: stored, `body` run by the SIMT threads on
 * this row's columns (`at` indexes Sw, `d` is the head-dim column), reloaded when `reload`. Top-level barriers only:
 * call it where control flow is workgroup-uniform.
 */
function oThroughSw(s: TcShape, body: string, reload: boolean): string {
  const dTiles = s.DP / MMA;
  const chunk = s.config.blockK / MMA;
  const rows = rowBlockRange(s);
  const parts: string[] = [];
  for (let t0 = 0; t0 < dTiles; t0 += chunk) {
    const tiles = [...Array(Math.min(chunk, dTiles - t0)).keys()];
    const ref = (r: number, j: number): MatrixRef =>
        ({array: 'Sw', offset: `rb${r} * 16u * SST + ${j * MMA}u`, stride: 'SST'});
    const each = (f: (r: number, j: number) => string) => rows.map((r) => tiles.map((j) => `
        ${f(r, j)}`).join('')).join('');
    parts.push(`${t0 > 0 ? `
        workgroupBarrier();` : ''}${perRowBlock(s, each((r, j) => s.dialect.store(`o${r}_${t0 + j}`, ref(r, j))))}
        workgroupBarrier();
        for (var c = part; c < ${tiles.length * MMA}; c += TPR) {
          let at = u32(row) * SST + u32(c);
          let d = ${t0 * MMA} + c;
          ${body}
        }${reload ? `
        workgroupBarrier();${perRowBlock(s, each((r, j) => s.dialect.assign(`o${r}_${t0 + j}`, ref(r, j))))}` : ''}`);
  }
  return parts.join('');
}

/** O += P·V into the held O matrices; each P left matrix and each V matrix loaded once. */
function heldValueProduct(s: TcShape): string {
  const dTiles = s.DP / MMA;
  const keyTiles = s.config.blockK / MMA;
  const rows = rowBlockRange(s);
  const high = s.precision === 'high';
  const pRef = (r: number, c: number, at = ''): MatrixRef =>
      ({array: 'Pw', offset: `${at}rb${r} * 16u * PST + ${c * MMA}u`, stride: 'PST'});
  const held = (name: string): MatrixRef => ({array: 'Pw', offset: name, stride: 'PST', held: name});
  // 'high': P''lo·Vhi + (P''hi / LO_SCALE)·Vlo' + P''hi·Vhi, one accumulator (every term at P''·V's scale).
  const terms = (r: number, vm: MatrixRef, vl: MatrixRef): Array<[MatrixRef, MatrixRef]> => high ?
      [[held(`pll${r}`), vm], [held(`plc${r}`), vl], [held(`pl${r}`), vm]] : [[held(`pl${r}`), vm]];
  return `
      // O += P·V on MMAs, O in registers.${perRowBlock(s, [...Array(keyTiles).keys()].map((c) => `
        {
          ${rows.map((r) => `${s.dialect.holdLeft(`pl${r}`, pRef(r, c))}${high ? `
          ${s.dialect.holdLeft(`pll${r}`, pRef(r, c, 'PLO + '))}
          ${s.dialect.holdLeft(`plc${r}`, pRef(r, c, 'PHI + '))}` : ''}`).join('\n          ')}${
      [...Array(dTiles).keys()].map((j) => {
        const v = keyValueRef(s, 'V', c, j);
        return `
          {
            ${s.dialect.holdRight('vm', v)}${high ? `
            ${s.dialect.holdRight('vl', shifted(v, 'KLO'))}` : ''}${rows.map((r) => s.dialect.multiplyAccumulate(
            `o${r}_${j}`, terms(r, {...v, offset: 'vm', held: 'vm'}, {...v, offset: 'vl', held: 'vl'}))).join('')}
          }`;
      }).join('')}
        }`).join(''))}`;
}

// ---- The staged variant (`staged`): K and V of each key tile through workgroup memory ----
// The register kernel as above, but the K and V matrices are loaded from Ks / Vs rather than from the packed buffer:
// every invocation copies KVN 16-byte pieces of the tile (consecutive invocations, consecutive pieces: coalesced),
// read through `packedWide` (the packed buffer bound a second time as array<vec4<u32>>; every K / V row starts at a
// multiple of DP ≥ 16 halves, so the pieces are 16-byte aligned). The next scheduled tile is read into registers
// (kNext, vNext) while this one computes, and stored to Ks / Vs after this tile's P·V: after one extra barrier per
// tile, or, with two buffers (kvBuffers 2), into the buffer this tile does not read, with none (the next tile's first
// barrier publishes it; kvAt flips between 0 and KV_ALT).
// `stagedTile` names the tile Ks / Vs will hold; a tile that was not prefetched (the first one, or after a skipped
// tile) is loaded synchronously. Without staging every subgroup (8 at 128×32) reads the whole K and V tile from
// global memory / L2 itself, with its full latency exposed on every tile.

// ---- 'high' on the staged kernel ----
// The same kernel with every operand split (TcPackProgram: hi, and lo times LO_SCALE, `loAt` elements later):
//   Q: hi and lo left matrices held (qm*, ql*);   K, V: hi and lo rows staged in Ks / Vs (lo rows from KLO);
//   S = (Qlo'·Khi + Qhi·Klo') / LO_SCALE + Qhi·Khi   one accumulator, scaled in registers between the two (exact),
//                                                      so S needs no second workgroup array (the memory kernel's Sx);
//   P''·V = P''lo·Vhi + (P''hi / LO_SCALE)·Vlo' + P''hi·Vhi   with P'' = P·HIGH_PSCALE split in Pw (three arrays),
// the small terms first. HIGH_TAU bounds P'' below f16's largest (see HIGH_PSCALE).

/** KVN: the 16-byte pieces of a K (or V) tile each invocation stages. */
function keyValuePieces(s: TcShape): number {
  return Math.ceil(s.config.blockK * s.DP / 8 / s.config.threads);
}

/**
 * kNext / vNext = the 16-byte pieces of key tile `tile` this invocation stages ('high': hi pieces at n, lo pieces at
 * KVN + n, read `loAt` elements further; loAt is a multiple of DP, so they stay 16-byte aligned).
 */
function loadKeyValues(s: TcShape, tile: string): string {
  return `
      for (var n = 0u; n < KVN; n++) {
        let e = lid + n * THREADS_U;
        if (e < KV_VEC4) {
          // f16 element of the piece inside this head's K (or V): row (key) u32(tile)·BK + e / DP8.
          let at = (u32(${tile}) * u32(BK) + e / DP8) * DP + (e % DP8) * 8u;
          kNext[n] = packedWide[(kHead + at) / 8u];
          vNext[n] = packedWide[(vHead + at) / 8u];${s.precision === 'high' ? `
          kNext[KVN + n] = packedWide[(uniforms.loAt + kHead + at) / 8u];
          vNext[KVN + n] = packedWide[(uniforms.loAt + vHead + at) / 8u];` : ''}
        }
      }`;
}

/**
 * Ks / Vs (the buffer at kvAt with two) = kNext / vNext (as f16 pairs; rows KST apart; 'high': the lo pieces to the
 * lo rows, from KLO).
 */
function storeKeyValues(s: TcShape): string {
  const parts = s.precision === 'high' ? [['rowAt', 'n'], ['KLO + rowAt', 'KVN + n']] : [['rowAt', 'n']];
  return `
      for (var n = 0u; n < KVN; n++) {
        let e = lid + n * THREADS_U;
        if (e < KV_VEC4) {
          let rowAt = ${s.kvBuffers === 2 ? 'kvAt + ' : ''}(e / DP8) * KST + (e % DP8) * 8u;${parts.map(([at, index]) =>
      unpackPieces(at, [['Ks', `kNext[${index}]`], ['Vs', `vNext[${index}]`]])).join('')}
        }
      }`;
}

/**
 * WGSL: 16-byte pieces (vec4<u32>: 8 f16 halves) unpacked into f16 workgroup arrays: for each [array, piece], halves
 * 2w and 2w + 1 of the piece's word w go to array[at + 2w] and array[at + 2w + 1]. The staged kernel's K / V rows
 * (storeKeyValues) and the tensor-core backward's streamed rows (flash_attention_grad_tc_webgpu.ts) go through it.
 */
export function unpackPieces(at: string, copies: Array<[array: string, piece: string]>): string {
  return `
          for (var w = 0u; w < 4u; w++) {
            ${copies.map(([, piece], n) => `let h${n + 1} = bitcast<vec2<f16>>(${piece}[w]);`).join('\n            ')}
            ${copies.map(([array], n) => `${array}[${at} + 2u * w] = h${n + 1}.x;
            ${array}[${at} + 2u * w + 1u] = h${n + 1}.y;`).join('\n            ')}
          }`;
}

/**
 * At the top of a key tile (after the loop's first barrier): Ks / Vs hold this tile — loaded now unless it was
 * prefetched — then the next scheduled tile (if any, and under keyLength) goes to registers. Workgroup-uniform
 * control flow (stagedTile and the schedule are the same for every invocation).
 */
function stageKeyValues(s: TcShape): string {
  return `
      if (stagedTile != keyTile) {
        // Not prefetched (the first tile, or the tile after one the summary skipped): load it now.${
      loadKeyValues(s, 'keyTile')}${storeKeyValues(s)}
        workgroupBarrier();
      }
      {
        // Prefetch the next tile of the schedule; it goes to Ks / Vs after this tile's P·V.
        ${NEXT_SCHEDULED_TILE}
        if (nextTile * BK >= keyLength) { nextTile = -1; }
        stagedTile = nextTile;
        if (nextTile >= 0) {${loadKeyValues(s, 'nextTile')}
        }
      }
`;
}

/**
 * After this tile's P·V, the prefetched tile to Ks / Vs: once everyone is done with them, or, with two buffers, at
 * once into the other one (last read by the previous tile, before this tile's first barrier).
 */
function storePrefetched(s: TcShape): string {
  return s.kvBuffers === 2 ? `
      kvAt = KV_ALT - kvAt;
      if (stagedTile >= 0) {${storeKeyValues(s)}
      }` : `
      workgroupBarrier();
      if (stagedTile >= 0) {${storeKeyValues(s)}
      }`;
}

/** The lazy rescale of this tile (workgroup-uniform): O rows times alpha, through Sw (free once P is written). */
function lazyRescale(s: TcShape): string {
  return `
      if (rescale != 0u) {${oThroughSw(s, 'Sw[at] *= alpha;', true)}
      }`;
}

/** O · keepScale / (l·PSCALE) and lse = m + log(l) per row (empty rows: 0 and -Infinity). */
function writeHeldOutputs(s: TcShape): string {
  return `${rowTotal(s.opts?.dropout ? 'uniforms.keepScale' : '1.0')}
  let outRow = (batch * seqQ + i) * uniforms.heads + h;${oThroughSw(s, `if (i < seqQ && d < uniforms.headDim) {
            result[outRow * uniforms.headDim + d] = Sw[at] * inv;
          }`, false)}
  if (part == 0 && i < seqQ) { ${STORE_LSE} }
`;
}

function forwardMain(s: TcShape): string {
  const summarized = s.opts != null && elementMasked(s.opts);
  // Prefetch registers per invocation: KVN 16-byte pieces of K and of V ('high': hi and lo).
  const kvPieces = keyValuePieces(s) * (s.precision === 'high' ? 2 : 1);
  return `
@compute @workgroup_size(${s.config.threads})
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32${s.dialect.builtins}) {
  let tid = i32(lid);${s.dialect.subgroupIds}
  // SIMT phases: TPR threads per query row.
  let row = tid / TPR;
  let part = tid % TPR;
  // Longest (last) query tiles first, as in the fp32 forward (headsFastest under uneven work).
  let headsFastest = uniforms.headsFastest == 1;
  let queryTile = uniforms.queryTileCount - 1 - i32(select(wg.x, wg.y, headsFastest));
  let h = i32(select(wg.y, wg.x, headsFastest));
  let batch = i32(wg.z);
  let kvHead = h / uniforms.groupSize;
  let maskHead = h % uniforms.scheduleHeads;
  let q0 = queryTile * BQ;
  let i = q0 + row;
  let seqQ = uniforms.seqQ;
  let seqK = uniforms.seqK;
  let scaleLog2 = uniforms.scale * LOG2E;${s.opts != null ? `
  optBatch = batch;
  optHead = h;` : ''}
  // Packed operands (f16 elements): this tile's query rows, and this (batch, kv head)'s keys and values.
  let qTile = uniforms.qAt + u32((batch * uniforms.heads + h) * uniforms.seqQPad + q0) * DP;
  let kHead = uniforms.kAt + u32((batch * uniforms.kvHeads + kvHead) * uniforms.seqKPad) * DP;
  let vHead = uniforms.vAt + u32((batch * uniforms.kvHeads + kvHead) * uniforms.seqKPad) * DP;
${s.fast ? holdQuery(s) : `
  for (var e = lid; e < ${s.config.blockQ}u * OST; e += THREADS_U) { Ow[e] = 0.0; }`}${scheduleRowRange(s)}
  var runMax = MASKED;
  var rowSum = 0.0;${s.fast ? `
  var alpha = 1.0;` : ''}${s.staged ? `
  // The key tile Ks / Vs hold (or will, once kNext / vNext are stored); -1: none.
  var stagedTile = -1;${s.kvBuffers === 2 ? `
  // The K / V buffer this tile reads (0 or KV_ALT).
  var kvAt = 0u;` : ''}
  var kNext = array<vec4<u32>, ${kvPieces}>();
  var vNext = array<vec4<u32>, ${kvPieces}>();` : ''}
${keyTileLoops(summarized)}
      // The previous tile's P·V is done with Pw and Ow, its softmax with Sw.${
      s.staged ? ' The prefetched Ks / Vs stores are visible.' : ''}
      workgroupBarrier();${s.mergedFlag ? `
      // Every read of the previous tile's rescale flag is done.
      if (tid == 0) { rescaleFlag = 0u; }` : ''}${s.staged ? stageKeyValues(s) : ''}
${s.fast ? heldScoreProduct(s) + scoreFinish(s) + lazySoftmax(s) + lazyRescale(s) + heldValueProduct(s) +
      (s.staged ? storePrefetched(s) : '') :
        scoreProduct(s) + scoreFinish(s) + onlineSoftmax(s) + valueProduct(s)}
    }
  }
${s.fast ? writeHeldOutputs(s) : writeOutputs(s)}}
`;
}

export class TcForwardProgram implements MultiOutputProgram {
  outputNames = ['result', 'lse'];
  outputTypes = ['f32', 'f32'];
  variableNames = ['packed', 'keyLengths', 'schedule'];
  variableTypes = ['f16', 'i32', 'i32'];
  uniformFields = TC_FORWARD_UNIFORMS;
  enables: string[];
  diagnostics: string[];
  shaderKey: string;
  private readonly shape: TcShape;

  constructor(
      readonly headDim: number, readonly config: TcTileConfig, readonly precision: TensorCorePrecision,
      hasSoftcap: boolean, hasKeyLengths: boolean, hasLayout: boolean, readonly opts: OptionFlags | null,
      readonly emulate = false, readonly fast = false, readonly staged = false) {
    if (staged && !fast) throw new Error('staged K / V is a variant of the register tensor-core kernel (fast)');
    if (!tcConfigValid(config, headDim, fast)) {
      throw new Error(`tensor-core tile ${JSON.stringify(config)} is not valid`);
    }
    if (fast && precision !== 'medium' && !staged) {
      throw new Error("the register tensor-core kernel runs precision 'high' only staged");
    }
    if (opts != null) {
      // keyLengths and every small input come in the side buffer, bound as `schedule`.
      const extra = optionBindings(opts);
      this.variableNames = ['packed', 'schedule', ...extra.map(([n]) => n)];
      this.variableTypes = ['f16', 'i32', ...extra.map(([, t]) => t)];
      this.uniformFields = [...TC_FORWARD_UNIFORMS, ...OPTION_UNIFORMS];
    }
    if (staged) {
      // The packed buffer again, as 16-byte pieces for the cooperative K / V copies (bound right after `packed`).
      this.variableNames = [this.variableNames[0], 'packedWide', ...this.variableNames.slice(1)];
      this.variableTypes = [this.variableTypes[0], 'vec4<u32>', ...this.variableTypes.slice(1)];
    }
    this.enables = emulate ? ['f16'] : ['f16', 'subgroups', 'chromium_experimental_subgroup_matrix'];
    // Subgroup-matrix calls run in loops over `sg`, uniform within a subgroup but not provably so to WGSL's
    // workgroup-level uniformity analysis.
    this.diagnostics = emulate ? [] : ['off, subgroup_uniformity', 'off, chromium.subgroup_matrix_uniformity'];
    const dp = paddedTcHeadDim(headDim);
    const tpr = config.threads / config.blockQ;
    const range = (n: number) => [...Array(n).keys()];
    this.shape = {
      config, headDim, DP: dp, precision, hasSoftcap, hasKeyLengths, hasLayout, opts,
      dialect: emulate ? emulatedDialect : realDialect, TPR: tpr,
      groups: range(config.blockK / (4 * tpr)), ocols: range(dp / tpr), fast, staged,
      ...tileVariant(config), mergedFlag: fast && tpr === 1,
    };
    if (this.shape.kvBuffers !== 1 && !(staged && this.shape.kvBuffers === 2)) {
      throw new Error(`tensor-core kvBuffers ${this.shape.kvBuffers}: 1, or 2 with the staged kernel`);
    }
    const {rowBlocks, kvBuffers} = this.shape;
    this.shaderKey = `AttentionForwardTC:${precision}:${config.blockQ}x${config.blockK}x${config.threads}:r${
        rowBlocks}kv${kvBuffers}:d${dp}:${
        hasSoftcap ? 'cap' : ''}:${hasKeyLengths ? 'len' : ''}:${hasLayout ? 'lay' : ''}${optionKey(opts)}${
        emulate ? ':emulated' : ''}${fast ? ':registers' : ''}${staged ? ':staged' : ''}`;
  }

  getUserCode(): string {
    return declarations(this.shape) + forwardMain(this.shape);
  }
}

export const TC_PACK_UNIFORMS: Array<[string, UniformType]> = [
  ['total', 'u32'], ['width', 'u32'], ['seq', 'u32'], ['heads', 'u32'], ['headDim', 'u32'], ['seqPad', 'u32'],
  ['at', 'u32'], ['loAt', 'u32'],
];

/**
 * x (f32 [batch, seq, heads, headDim]) → packed[at + e] (f16 [batch, heads, seqPad, DP], zeros past seq and
 * headDim); with `split`, also the lo part f16(x − hi) at packed[at + loAt + e]. One invocation per element;
 * dispatch [width, ceil(groups / width), 1] of 256-invocation groups.
 */
export class TcPackProgram implements MultiOutputProgram {
  outputNames = ['packed'];
  outputTypes = ['f16'];
  variableNames = ['x'];
  variableTypes = ['f32'];
  uniformFields = TC_PACK_UNIFORMS;
  enables = ['f16'];
  shaderKey: string;

  constructor(readonly dp: number, readonly split: boolean) {
    this.shaderKey = `attentionTcPack:d${dp}:${split ? 'split' : ''}`;
  }

  getUserCode(): string {
    return `${this.split ? SPLIT_HI_WGSL : ''}
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let e = (wg.y * uniforms.width + wg.x) * 256u + lid;
  if (e >= uniforms.total) { return; }
  let d = e % ${this.dp}u;
  let s = (e / ${this.dp}u) % uniforms.seqPad;
  let bh = e / (${this.dp}u * uniforms.seqPad);
  let h = bh % uniforms.heads;
  let b = bh / uniforms.heads;
  var value = 0.0;
  if (s < uniforms.seq && d < uniforms.headDim) {
    value = x[((b * uniforms.seq + s) * uniforms.heads + h) * uniforms.headDim + d];
  }
${this.split ? `
  let hi = splitHi(value);
  packed[uniforms.at + e] = f16(hi);
  // The lo part times LO_SCALE: a normal f16 number unless |value| < ~2^-14.
  packed[uniforms.at + uniforms.loAt + e] = f16((value - hi) * ${LO_SCALE}.0);` : `
  packed[uniforms.at + e] = f16(value);`}
}
`;
  }
}
