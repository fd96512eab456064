/**
 * Property-based fuzzing of the three ops against the float64 reference (test/reference.ts), through the public API:
 * every op, layout builder, GQA grouping, head size, scale, softcap, keyLengths and dLse, and the options of issues
 * 16–18 (queryOffsets as numbers or a tensor, masks of every broadcast shape and dtype, biases with -Infinity entries,
 * ALiBi slopes [heads] / [batch, heads], query/key segment ids, dropout with seeds up to 2^53), alone and together.
 *
 * Environment-agnostic like check_case.ts: takes the tfjs module and the library module, so node (test/fuzz.test.ts,
 * scripts/fuzz.ts) and a browser page can run the same generator and checker on any backend.
 *
 * The generator draws *raw* parameters that do not depend on each other (sizes, fractions, seeds) and maps them to a
 * concrete AttentionCase, so fast-check can shrink every parameter independently down to a minimal failing case,
 * which is printed as an AttentionCase ready to paste into test/cases.ts.
 */
import fc from 'fast-check';
import {AttentionCase, LayoutSpec, MaskSpec, PAIR_SHAPES, PairShape} from './cases.js';
import {CaseResult, checkCase, Lib, randomArray, Tf} from './check_case.js';
import {FUZZ_TOLERANCES, Tolerances} from './tolerances.js';
import {caseFailures, FLOORED, Floored, roundingFloor} from './rounding_floor.js';

export {caseFailures, roundingFloor} from './rounding_floor.js';

/** A backend's fuzz tolerance: the one tolerance table's shape (test/tolerances.ts). */
export type FuzzTolerance = Tolerances;

/**
 * Fuzz tolerances per backend, fp32 against float64: test/tolerances.ts (FUZZ_TOLERANCES), with why each is what it is.
 * - cpu accumulates in float64: measured max ~3e-7 over 300 long-run cases.
 * - wasm runs the composite kernels (tfjs ops in fp32). Forward ~1e-6; gradients up to ~5e-5 where a row's
 *   probability sits on one key: dS = P∘(dP − D) then subtracts two nearly equal fp32 dot products (FlashAttention-2
 *   has the same cancellation), which is large next to a small dq.
 */
export {FUZZ_TOLERANCES};

export interface FuzzConfig {
  /** Largest seqQ / seqK drawn. */
  maxSeq: number;
  /** Largest headDim drawn besides the occasional 256 (when maxHeadDim >= 256 the 256 draw is kept). */
  maxHeadDim: number;
  /** Cases with batch·heads·seqQ·seqK·headDim above this are redrawn (keeps runs fast; the reference is O(that)). */
  maxWork: number;
  /** Ops to draw (default all three). */
  ops?: Array<AttentionCase['op']>;
  /**
   * Draw headDim from this list (shrinking towards its first entry) instead of 1..maxHeadDim. The GPU backends
   * compile a pipeline per head-size class and option set; on a software driver each compile takes seconds to
   * minutes, so their quick runs draw from a few head sizes that cover both load paths (multiple of 4 or not).
   */
  headDims?: number[];
  /**
   * At most this many of the options of issues 16–18 (queryOffsets, mask, bias, alibi, segments, dropout) per case
   * (default: any number). Each option set is another pipeline to compile for the GPU backends.
   */
  maxOptions?: number;
}

const CASE_OPTIONS = ['queryOffsets', 'mask', 'bias', 'alibi', 'segments', 'dropout'] as const;

/** How many of the options of issues 16–18 the case uses. */
export function optionCount(c: AttentionCase): number {
  return CASE_OPTIONS.filter((o) => c[o] != null).length;
}

/** `npm test`: a few seconds for ~40 runs on cpu. */
export const QUICK_FUZZ: FuzzConfig = {maxSeq: 48, maxHeadDim: 64, maxWork: 4e5};
/** `npm run fuzz`: the full ranges of the spec (seq up to ~200, headDim up to 128 and 256). */
export const LONG_FUZZ: FuzzConfig = {maxSeq: 211, maxHeadDim: 256, maxWork: 2.5e7};
/**
 * Quick runs on the GPU backends (software renderers in `npm test`): sequences past one 64-row query tile and one
 * 32-key tile of the webgpu kernels, few head sizes (vec4 and scalar loads), small work, one option at a time (each
 * option set compiles new pipelines: minutes per case on lavapipe when options combine).
 */
export const GPU_QUICK_FUZZ: FuzzConfig =
    {maxSeq: 80, maxHeadDim: 16, maxWork: 1.5e5, headDims: [8, 16, 5], maxOptions: 1};
/**
 * `npm run fuzz` on a GPU backend: LONG_FUZZ's ranges with less work per case (software renderers run the kernels on
 * the CPU, and the float64 reference is O(work) in JS).
 */
export const GPU_LONG_FUZZ: FuzzConfig = {maxSeq: 211, maxHeadDim: 256, maxWork: 4e6};

const PRIMES = [2, 3, 5, 7, 11, 13, 17, 31, 37, 61, 67, 97, 127, 131, 197, 211];

type BuilderName = 'local' | 'strided' | 'fixed' | 'bigBird' | 'longformer';

/** A layout spec before it knows the sizes: fromBlockMask is drawn as (density, seed) and materialized later. */
type RawLayout =
    | {name: BuilderName; params: Record<string, unknown>}
    | {name: 'fromBlockMask'; density: number; maskSeed: number; perHead: boolean}
    | {name: 'union' | 'intersect'; parts: RawLayout[]};

interface RawCase {
  op: AttentionCase['op'];
  batch: number;
  seqQ: number;
  seqK: number;
  kvHeads: number;
  groupSize: number;
  headDim: number;
  scale: number | undefined;
  softcap: number | undefined;
  causal: boolean;
  window: {left: number; right: number; asNumber: boolean};
  keyLengths: {fractions: number[]; tensor: boolean} | undefined;
  blockSize: number;
  layout: RawLayout;
  perHeadBigBird: boolean;
  lseGrad: boolean;
  /** Each option below is drawn in about one case in three (and shrinks to absent). */
  queryOffsets: {fractions: number[]; perBatch: boolean; tensor: boolean} | undefined;
  mask: {shape: PairShape; dtype: NonNullable<MaskSpec['dtype']>; pattern: NonNullable<MaskSpec['pattern']>;
         density: number} | undefined;
  bias: {shape: PairShape; negInf: number} | undefined;
  alibi: {perBatch: boolean; asTensor: boolean} | undefined;
  /** Document cut points per batch row, as fractions of the sequence; separate key cuts when `key` is drawn. */
  segments: {query: number[][]; key: number[][] | undefined} | undefined;
  dropout: {rate: number; seed: number} | undefined;
}

export interface FuzzCase {
  case: AttentionCase;
  /** Seed of the random q, k, v, dO, dLse (check_case.randomArray). */
  seed: number;
}

function seqArb(maxSeq: number): fc.Arbitrary<number> {
  const primes = PRIMES.filter((p) => p <= maxSeq);
  return fc.oneof(
      {weight: 1, arbitrary: fc.constant(1)},
      {weight: 2, arbitrary: fc.constantFrom(...primes)},
      {weight: 4, arbitrary: fc.integer({min: 1, max: maxSeq})});
}

function headDimArb(maxHeadDim: number): fc.Arbitrary<number> {
  const small = fc.integer({min: 1, max: Math.min(maxHeadDim, 128)});
  return maxHeadDim >= 256 ? fc.oneof({weight: 12, arbitrary: small}, {weight: 1, arbitrary: fc.constant(256)}) :
                             small;
}

/** -1 (unbounded), small, or up to beyond the longest sequence. */
function windowSideArb(maxSeq: number): fc.Arbitrary<number> {
  return fc.oneof(fc.constant(-1), fc.integer({min: 0, max: 8}), fc.integer({min: 0, max: maxSeq + 5}));
}

function builderArb(): fc.Arbitrary<RawLayout> {
  const small = (max: number) => fc.integer({min: 0, max});
  return fc.oneof(
      fc.record({name: fc.constant('local' as const), params: fc.record({leftBlocks: small(4), rightBlocks: small(3)})}),
      fc.record({
        name: fc.constant('strided' as const),
        params: fc.record({stride: fc.integer({min: 1, max: 5}), localBlocks: small(3)}),
      }),
      fc.record({
        name: fc.constant('fixed' as const),
        params: fc.integer({min: 1, max: 5}).chain(
            (l) => fc.record({blocksPerSegment: fc.constant(l), summaryBlocks: fc.integer({min: 1, max: l})})),
      }),
      fc.record({
        name: fc.constant('bigBird' as const),
        params: fc.record({
          windowBlocks: small(5), globalBlocks: small(2), randomBlocks: small(3),
          seed: fc.integer({min: 0, max: 1e6}),
        }),
      }),
      fc.record({
        name: fc.constant('longformer' as const),
        params: fc.record({windowBlocks: small(3), globalBlocks: fc.uniqueArray(small(6), {maxLength: 3})}),
      }),
      fc.record({
        name: fc.constant('fromBlockMask' as const), density: fc.integer({min: 0, max: 100}).map((x) => x / 100),
        maskSeed: fc.integer({min: 0, max: 1e6}), perHead: fc.boolean(),
      }));
}

function layoutArb(): fc.Arbitrary<RawLayout> {
  return fc.oneof(
      {weight: 5, arbitrary: builderArb()},
      {
        weight: 2,
        arbitrary: fc.record({
          name: fc.constantFrom('union' as const, 'intersect' as const),
          parts: fc.array(builderArb(), {minLength: 1, maxLength: 3}),
        }),
      });
}

function rawCaseArb(cfg: FuzzConfig): fc.Arbitrary<RawCase> {
  // Doubles are drawn as integers / N: fast-check's double() favours denormals and extremes, which say little here.
  const ratio = (min: number, max: number, n: number) => fc.integer({min: min * n, max: max * n}).map((x) => x / n);
  const fraction = fc.oneof(
      {weight: 1, arbitrary: fc.constant(0)}, {weight: 1, arbitrary: fc.constant(1)},
      {weight: 4, arbitrary: ratio(0, 1, 1000)});
  // Half the cases leave each option out (fc.option leaves it out 1 time in `freq`; the default is 1 in 5).
  const half = {nil: undefined, freq: 2};
  // The options of issues 16–18: each in about one case in three, so most cases combine a few of them.
  const sometimes = <T>(arb: fc.Arbitrary<T>): fc.Arbitrary<T | undefined> =>
    fc.oneof({weight: 2, arbitrary: fc.constant(undefined)}, {weight: 1, arbitrary: arb});
  const perRow = (arb: fc.Arbitrary<number[]>) => fc.array(arb, {minLength: 3, maxLength: 3});
  const cuts = perRow(fc.array(ratio(0, 1, 1000), {maxLength: 3}));
  const pairShape = fc.constantFrom(...PAIR_SHAPES);
  return fc.record({
    op: fc.constantFrom(...(cfg.ops ?? ['flash', 'sliding', 'sparse'] as const)),
    batch: fc.integer({min: 1, max: 3}),
    seqQ: seqArb(cfg.maxSeq),
    seqK: seqArb(cfg.maxSeq),
    kvHeads: fc.integer({min: 1, max: 3}),
    groupSize: fc.integer({min: 1, max: 4}),
    headDim: cfg.headDims ? fc.constantFrom(...cfg.headDims) : headDimArb(cfg.maxHeadDim),
    scale: fc.option(ratio(-1.5, 1.5, 100), half),
    softcap: fc.option(ratio(0.25, 30, 4), half),
    causal: fc.boolean(),
    window: fc.record({left: windowSideArb(cfg.maxSeq), right: windowSideArb(cfg.maxSeq), asNumber: fc.boolean()}),
    keyLengths: fc.option(
        fc.record({fractions: fc.array(fraction, {minLength: 3, maxLength: 3}), tensor: fc.boolean()}), half),
    blockSize: fc.oneof(fc.integer({min: 1, max: 8}), fc.integer({min: 1, max: 64})),
    layout: layoutArb(),
    perHeadBigBird: fc.boolean(),
    lseGrad: fc.boolean(),
    queryOffsets: sometimes(fc.record({
      fractions: fc.array(fraction, {minLength: 3, maxLength: 3}), perBatch: fc.boolean(), tensor: fc.boolean(),
    })),
    mask: sometimes(fc.record({
      shape: pairShape, dtype: fc.constantFrom('bool' as const, 'int32' as const, 'float32' as const),
      pattern: fc.constantFrom('random' as const, 'causal' as const, 'padding' as const, 'empty-row' as const),
      density: fraction,
    })),
    bias: sometimes(fc.record({
      shape: pairShape,
      negInf: fc.oneof({weight: 2, arbitrary: fc.constant(0)}, {weight: 2, arbitrary: ratio(0, 0.5, 100)},
                       {weight: 1, arbitrary: fc.constant(1)}),
    })),
    alibi: sometimes(fc.record({perBatch: fc.boolean(), asTensor: fc.boolean()})),
    // Separate key cuts in a third of those (else the key documents are the query's, or proportional to them).
    segments: sometimes(fc.record({query: cuts, key: sometimes(cuts)})),
    dropout: sometimes(fc.record({
      rate: ratio(0, 0.9, 100),
      // Philox keys take the seed's high and low 32 bits: small seeds, and any up to 2^53 - 1.
      seed: fc.oneof(fc.integer({min: 0, max: 1000}), fc.maxSafeNat()),
    })),
  });
}

function materializeLayout(raw: RawLayout, r: RawCase, heads: number, blockSize: number): LayoutSpec {
  switch (raw.name) {
    case 'union':
    case 'intersect':
      return {name: raw.name, parts: raw.parts.map((p) => materializeLayout(p, r, heads, blockSize))};
    case 'fromBlockMask': {
      const qBlocks = Math.ceil(r.seqQ / blockSize), kBlocks = Math.ceil(r.seqK / blockSize);
      const bits = randomArray((raw.perHead ? heads : 1) * qBlocks * kBlocks, raw.maskSeed);
      let n = 0;
      // randomArray is uniform in [-1, 1): on with probability `density`.
      const mask = Array.from({length: raw.perHead ? heads : 1}, () => Array.from(
          {length: qBlocks}, () => Array.from({length: kBlocks}, () => ((bits[n++] + 1) / 2 < raw.density ? 1 : 0))));
      return {name: 'fromBlockMask', blockSize, mask};
    }
    case 'bigBird':
      return {name: 'bigBird', blockSize, params: {...raw.params, numHeads: r.perHeadBigBird ? heads : 1}};
    default:
      return {name: raw.name, blockSize, params: raw.params};
  }
}

/** Document lengths of a sequence of `length` cut at the given fractions (the rest is one more document). */
function documentLengths(fractions: number[], length: number): number[] {
  const points = fractions.map((f) => Math.round(f * length)).sort((a, b) => a - b);
  return points.map((p, n) => p - (n === 0 ? 0 : points[n - 1]));
}

/** Maps independent raw draws to a concrete, valid case. */
function toCase(r: RawCase): AttentionCase {
  const heads = r.kvHeads * r.groupSize;
  const c: AttentionCase = {
    name: 'fuzz', op: r.op, batch: r.batch, seqQ: r.seqQ, seqK: r.seqK, heads, kvHeads: r.kvHeads,
    headDim: r.headDim,
  };
  if (r.scale !== undefined) c.scale = r.scale;
  if (r.softcap !== undefined) c.softcap = r.softcap;
  if (r.lseGrad) c.lseGrad = true;
  if (r.keyLengths) {
    c.keyLengths = r.keyLengths.fractions.slice(0, r.batch).map((f) => Math.round(f * r.seqK));
    if (r.keyLengths.tensor) c.keyLengthsTensor = true;
  }
  if (r.op === 'sliding') {
    c.windowSize = r.window.asNumber ? r.window.left : [r.window.left, r.window.right];
  } else if (r.causal) {
    c.causal = true;
  }
  if (r.op === 'sparse') c.layout = materializeLayout(r.layout, r, heads, r.blockSize);
  if (r.queryOffsets) {
    // Integers in [-seqQ, seqK], the range the ops accept (tensor values outside it would be clamped).
    const offsets = r.queryOffsets.fractions.slice(0, r.batch)
        .map((f) => Math.round(-r.seqQ + f * (r.seqQ + r.seqK)));
    c.queryOffsets = r.queryOffsets.perBatch ? offsets : offsets[0];
    if (r.queryOffsets.tensor) c.queryOffsetsTensor = true;
  }
  if (r.mask) c.mask = {...r.mask};
  if (r.bias) c.bias = r.bias.negInf > 0 ? {...r.bias} : {shape: r.bias.shape};
  if (r.alibi) c.alibi = {...r.alibi};
  if (r.segments) {
    const rows = r.segments.query.slice(0, r.batch);
    c.segments = rows.map((f) => documentLengths(f, r.seqQ));
    // One ids tensor serves query and key only when seqQ == seqK; otherwise the keys get their own (the same cut
    // fractions unless key cuts were drawn: documents of proportional lengths).
    if (r.segments.key != null || r.seqQ !== r.seqK) {
      c.keySegments = (r.segments.key?.slice(0, r.batch) ?? rows).map((f) => documentLengths(f, r.seqK));
    }
  }
  if (r.dropout && r.dropout.rate > 0) c.dropout = {...r.dropout};
  c.name = describeCase(c);
  return c;
}

/** Work of one case: the reference and the kernels are O(this). */
export function caseWork(c: AttentionCase): number {
  return c.batch * c.heads * c.seqQ * c.seqK * c.headDim;
}

function describeLayout(l: LayoutSpec): string {
  if (l.name === 'union' || l.name === 'intersect') return `${l.name}(${l.parts.map(describeLayout).join(',')})`;
  if (l.name === 'fromBlockMask') return `fromBlockMask(bs${l.blockSize},${l.mask.length}h)`;
  return `${l.name}(bs${(l as {blockSize: number}).blockSize})`;
}

function describeCase(c: AttentionCase): string {
  const parts = [`fuzz ${c.op} B${c.batch} Sq${c.seqQ} Sk${c.seqK} H${c.heads}/${c.kvHeads} D${c.headDim}`];
  if (c.causal) parts.push('causal');
  if (c.windowSize !== undefined) parts.push(`w${JSON.stringify(c.windowSize)}`);
  if (c.layout) parts.push(describeLayout(c.layout));
  if (c.keyLengths) parts.push(`keyLengths${c.keyLengthsTensor ? 'T' : ''}[${c.keyLengths}]`);
  if (c.scale !== undefined) parts.push(`scale ${c.scale.toPrecision(3)}`);
  if (c.softcap !== undefined) parts.push(`softcap ${c.softcap.toPrecision(3)}`);
  if (c.lseGrad) parts.push('dLse');
  if (c.queryOffsets !== undefined) {
    parts.push(`queryOffsets${c.queryOffsetsTensor ? 'T' : ''}${JSON.stringify(c.queryOffsets)}`);
  }
  if (c.mask) {
    parts.push(`mask ${c.mask.shape} ${c.mask.dtype ?? 'bool'} ${c.mask.pattern ?? 'random'} ${c.mask.density ?? 0.6}`);
  }
  if (c.bias) parts.push(`bias ${c.bias.shape}${c.bias.negInf ? ` -inf ${c.bias.negInf}` : ''}`);
  if (c.alibi) parts.push(`alibi${c.alibi.perBatch ? ' [B, H]' : ''}${c.alibi.asTensor ? 'T' : ''}`);
  if (c.segments) {
    parts.push(`segments ${JSON.stringify(c.segments)}${c.keySegments ? `/${JSON.stringify(c.keySegments)}` : ''}`);
  }
  if (c.dropout) parts.push(`dropout ${c.dropout.rate} seed ${c.dropout.seed}`);
  return parts.join(' ');
}

/** Random valid cases within the config's ranges, shrinking towards small ones. */
export function fuzzCaseArb(cfg: FuzzConfig): fc.Arbitrary<FuzzCase> {
  return fc.record({raw: rawCaseArb(cfg), seed: fc.integer({min: 0, max: 0x7fffffff})})
      .map(({raw, seed}) => ({case: toCase(raw), seed}))
      .filter((f) => caseWork(f.case) <= cfg.maxWork && optionCount(f.case) <= (cfg.maxOptions ?? Infinity));
}

/** caseFailures with the fp32 rounding floor for lse / dq / dk / dBias (the errors' denominators: r.maxReference). */
function caseFailuresWithRounding(f: FuzzCase, r: CaseResult, tol: FuzzTolerance): {
  failures: string[]; byRounding: boolean;
} {
  const strict = caseFailures(r, tol);
  const overTolerance = (key: Floored) => r.errors[key] > (key === 'lse' ? tol.forward : tol.gradients);
  if (!FLOORED.some(overTolerance)) return {failures: strict, byRounding: false};
  const failures = caseFailures(r, tol, {floor: roundingFloor(f.case), maxRef: r.maxReference});
  return {failures, byRounding: failures.length < strict.length};
}

export interface FuzzOptions {
  seed: number;
  numRuns: number;
  config: FuzzConfig;
  tolerance: FuzzTolerance;
  /** Called after every executed case (progress output, statistics). */
  onCase?: (c: FuzzCase, r: CaseResult | null, failures: string[]) => void;
  /**
   * Runs one case (default: checkCase on the current backend). A backend wraps it to add its own checks, e.g. webgpu
   * runs it inside validation error scopes so that an invalid dispatch fails the case instead of passing silently.
   */
  check?: (c: AttentionCase, seed: number) => Promise<CaseResult>;
}

export interface FuzzReport {
  seed: number;
  numRuns: number;
  failed: boolean;
  /** The shrunk (minimal) failing case, ready to paste into test/cases.ts, and its data seed. */
  counterexample: FuzzCase | null;
  /** Why the counterexample fails. */
  error: string | null;
  numShrinks: number;
  /** fast-check's replay path: pass with the seed to jump straight to the counterexample. */
  path: string | null;
  /** Largest error seen per quantity over every passing and failing run. */
  maxErrors: CaseResult['errors'];
  /** Executed cases whose lse / dq / dk passed only by the fp32 rounding floor (roundingFloor). */
  passedByRoundingFloor: number;
}

/** Runs the property on the current backend; never throws for a failing case (see report.failed). */
export async function runFuzz(tf: Tf, lib: Lib, opts: FuzzOptions): Promise<FuzzReport> {
  const maxErrors = {output: 0, lse: 0, dq: 0, dk: 0, dv: 0, dBias: 0};
  let passedByRoundingFloor = 0;
  const property = fc.asyncProperty(fuzzCaseArb(opts.config), async (f) => {
    let result: CaseResult | null = null;
    let failures: string[];
    try {
      result = await (opts.check ? opts.check(f.case, f.seed) : checkCase(tf, lib, f.case, f.seed));
      const checked = caseFailuresWithRounding(f, result, opts.tolerance);
      failures = checked.failures;
      if (checked.byRounding && failures.length === 0) passedByRoundingFloor++;
      for (const key of Object.keys(maxErrors) as Array<keyof typeof maxErrors>) {
        if (Number.isFinite(result.errors[key])) maxErrors[key] = Math.max(maxErrors[key], result.errors[key]);
      }
    } catch (e) {
      failures = [`threw ${(e as Error)?.message ?? String(e)}`];
    }
    opts.onCase?.(f, result, failures);
    if (failures.length > 0) throw new Error(failures.join('; '));
  });
  const details = await fc.check(property, {seed: opts.seed, numRuns: opts.numRuns});
  const counterexample = details.counterexample?.[0] ?? null;
  return {
    seed: details.seed,
    numRuns: details.numRuns,
    failed: details.failed,
    counterexample,
    error: details.failed ? String((details.errorInstance as Error)?.message ?? details.errorInstance) : null,
    numShrinks: details.numShrinks,
    path: details.counterexamplePath,
    maxErrors,
    passedByRoundingFloor,
  };
}

/** The report's largest errors per quantity, and how many cases passed by the rounding floor, as one line. */
export function formatMaxErrors(r: FuzzReport): string {
  const errors = Object.entries(r.maxErrors).map(([k, e]) => `${k} ${e.toExponential(1)}`).join(', ');
  return errors + (r.passedByRoundingFloor ?
      `; ${r.passedByRoundingFloor} passed lse/dq/dk/dBias by the fp32 rounding floor` : '');
}

/** A failing report as text: the case (JSON for test/cases.ts), its data seed, and how to replay it. */
export function formatFailure(r: FuzzReport, backend: string): string {
  if (!r.failed || r.counterexample == null) return '';
  return [
    `fuzz failed on ${backend} after ${r.numRuns} runs and ${r.numShrinks} shrinks (seed ${r.seed}, path ${r.path})`,
    `error: ${r.error}`,
    `minimal case (data seed ${r.counterexample.seed}):`,
    JSON.stringify(r.counterexample.case),
  ].join('\n');
}
