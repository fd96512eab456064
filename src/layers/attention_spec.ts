/**
 * The `attention` option of MultiHeadAttention / TransformerBlock: which attention op runs and with which mask.
 * Specs are plain JSON (they go into getConfig and model.json); layouts are built from them for the sequence lengths
 * a call actually sees.
 */
import * as tf from '@tensorflow/tfjs-core';
import {flashAttention} from '../ops/flash_attention.js';
import {CommonAttentionOptions, MaskOptions} from '../ops/run_attention.js';
import {slidingWindowAttention} from '../ops/sliding_window_attention.js';
import {sparseAttention} from '../ops/sparse_attention.js';
import {BlockLayout} from '../patterns/block_layout.js';
import * as patterns from '../patterns/index.js';
import {naiveAttention} from './naive_attention.js';

export const PATTERN_BUILDERS = ['bigBird', 'local', 'strided', 'fixed', 'longformer'] as const;
export type PatternBuilderName = typeof PATTERN_BUILDERS[number];

/**
 * A block-sparse pattern, JSON-serializable:
 * - `{blockSize, mask}`: a fixed block mask as in patterns.fromBlockMask ([layoutHeads][queryBlocks][keyBlocks] or
 *   [queryBlocks][keyBlocks] of 0/1); only valid for the sequence lengths it was made for.
 * - `{name, blockSize, ...params}`: patterns[name](seqQ, seqK, blockSize, params), evaluated for the sequence lengths
 *   of each call (e.g. `{name: 'longformer', blockSize: 32, windowBlocks: 1, globalBlocks: [0]}`).
 */
export type SparsePatternSpec = {blockSize: number; mask: number[][] | number[][][]} |
    {name: PatternBuilderName; blockSize: number; [param: string]: unknown};

/**
 * - 'flash' (default): dense (or causal) exact attention with the FlashAttention kernels.
 * - 'naive': the same mask computed with plain tfjs ops (matMul → softmax → matMul), materialising the
 *   [batch, heads, seqQ, seqK] probabilities. A baseline for speed/memory comparisons.
 * - {type: 'sliding', windowSize}: w means [w, 0] when the layer is causal and [w, w] otherwise; [left, right] is
 *   used as given (a causal layer needs right = 0).
 * - {type: 'sparse', pattern}: block-sparse attention (the layer's causal flag adds the element-wise causal mask).
 */
export type AttentionSpec = 'flash' | 'naive' | {type: 'sliding'; windowSize: number | [number, number]} |
    {type: 'sparse'; pattern: SparsePatternSpec};

/** The ops' options a layer call may add to the spec's own mask. */
export type KernelExtras = Pick<CommonAttentionOptions, 'mask' | 'queryOffsets' | 'dropout' | 'precision'>;

/** A checked spec with its layout cache. */
export class ResolvedAttention {
  private readonly layouts = new Map<string, BlockLayout>();

  constructor(readonly spec: AttentionSpec, readonly causal: boolean) {}

  /**
   * The mask for these lengths; the layout comes from the pattern (cached per seqQ, seqK). `causal` (default the
   * layer's flag) adds the bottom-right causal mask, e.g. for a Keras useCausalMask call with seqQ == seqK.
   */
  mask(seqQ: number, seqK: number, heads: number, causal = this.causal): MaskOptions {
    const spec = this.spec;
    const causalRight = causal ? 0 : -1;
    if (spec === 'flash' || spec === 'naive') return {windowLeft: -1, windowRight: causalRight, layout: null};
    if (spec.type === 'sliding') {
      const [left, right] = typeof spec.windowSize === 'number' ?
          [spec.windowSize, this.causal ? 0 : spec.windowSize] : spec.windowSize;
      return {windowLeft: left, windowRight: causal && (right < 0 || right > 0) ? 0 : right, layout: null};
    }
    return {windowLeft: -1, windowRight: causalRight, layout: this.layout(seqQ, seqK, heads)};
  }

  /**
   * Runs the op the spec names. q: [b, seqQ, heads, d], k/v: [b, seqK, kvHeads, d]. `extra` passes the ops' mask,
   * queryOffsets and dropout options through (the naive spec takes none of them: the layers route such calls to the
   * materialized path in attention_dispatch.ts).
   */
  run(q: tf.Tensor4D, k: tf.Tensor4D, v: tf.Tensor4D, scale: number, softcap: number,
      keyLengths?: tf.Tensor1D, causal = this.causal, extra: KernelExtras = {}): tf.Tensor4D {
    const [, seqQ, heads] = q.shape;
    const seqK = k.shape[1];
    const mask = this.mask(seqQ, seqK, heads, causal);
    const spec = this.spec;
    const common = {scale, softcap, keyLengths, ...extra};
    if (spec === 'naive') {
      // A precision is a request (src/plan/precision.ts): the naive ops run fp32, which satisfies any.
      const options = Object.keys(extra).filter((key) => key !== 'precision');
      if (options.length > 0) throw new Error(`attention 'naive' takes no ${options} option`);
      return naiveAttention(q, k, v, mask, scale, keyLengths, softcap);
    }
    if (spec === 'flash') return flashAttention(q, k, v, {...common, causal});
    if (spec.type === 'sliding') {
      return slidingWindowAttention(q, k, v, {...common, windowSize: [mask.windowLeft, mask.windowRight]});
    }
    return sparseAttention(q, k, v, {...common, layout: mask.layout!, causal});
  }

  private layout(seqQ: number, seqK: number, heads: number): BlockLayout {
    const key = `${seqQ},${seqK}`;
    let layout = this.layouts.get(key);
    if (layout == null) {
      const pattern = (this.spec as {pattern: SparsePatternSpec}).pattern;
      layout = buildLayout(pattern, seqQ, seqK);
      const qBlocks = Math.ceil(seqQ / layout.blockSize), kBlocks = Math.ceil(seqK / layout.blockSize);
      if (layout.numQueryBlocks !== qBlocks || layout.numKeyBlocks !== kBlocks) {
        throw new Error(`attention.pattern.mask has ${layout.numQueryBlocks}x${layout.numKeyBlocks} blocks but the ` +
                        `layer was called with seqQ=${seqQ}, seqK=${seqK} (needs ${qBlocks}x${kBlocks} blocks of ${
                            layout.blockSize}); use a builder pattern {name, blockSize, ...} for variable lengths`);
      }
      if (layout.numHeads !== 1 && layout.numHeads !== heads) {
        throw new Error(`attention.pattern has ${layout.numHeads} layout heads; the layer has numHeads=${heads}`);
      }
      this.layouts.set(key, layout);
    }
    return layout;
  }
}

function buildLayout(pattern: SparsePatternSpec, seqQ: number, seqK: number): BlockLayout {
  if ('mask' in pattern) return patterns.fromBlockMask(pattern.mask as number[][], pattern.blockSize);
  const {name, blockSize, ...params} = pattern;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const builder = patterns[name] as (sq: number, sk: number, bs: number, p: any) => BlockLayout;
  return builder(seqQ, seqK, blockSize, params);
}

/**
 * Checks a user's spec (throws naming `attention` and what was expected) and returns a JSON deep copy of it.
 * Builder patterns are tried once on a small sequence so bad parameters fail at construction, not at the first call.
 */
export function checkAttentionSpec(spec: unknown, causal: boolean): AttentionSpec {
  if (spec === undefined || spec === null) return 'flash';
  if (spec === 'flash' || spec === 'naive') return spec;
  const expected = `attention must be 'flash', 'naive', {type: 'sliding', windowSize} or {type: 'sparse', pattern}`;
  if (typeof spec !== 'object') throw new Error(`${expected}, got ${JSON.stringify(spec)}`);
  const s = spec as {type?: unknown; windowSize?: unknown; pattern?: unknown};
  if (s.type === 'sliding') {
    const w = s.windowSize;
    const ok = (n: unknown) => Number.isInteger(n) && (n as number) >= -1;
    if (typeof w === 'number') {
      if (!ok(w)) throw new Error(`attention.windowSize must be an integer >= -1, got ${w}`);
    } else if (!(Array.isArray(w) && w.length === 2 && ok(w[0]) && ok(w[1]))) {
      throw new Error(`attention.windowSize must be an integer w or [left, right] (integers >= -1, -1 = unbounded), ` +
                      `got ${JSON.stringify(w)}`);
    } else if (causal && w[1] !== 0) {
      throw new Error(`attention.windowSize [left, right] must have right = 0 in a causal layer, got [${w}]`);
    }
    return {type: 'sliding', windowSize: JSON.parse(JSON.stringify(w))};
  }
  if (s.type === 'sparse') {
    const pattern = checkPattern(s.pattern);
    return {type: 'sparse', pattern};
  }
  throw new Error(`${expected}, got ${JSON.stringify(spec)}`);
}

function checkPattern(pattern: unknown): SparsePatternSpec {
  const p = pattern as {blockSize?: unknown; mask?: unknown; name?: unknown};
  if (p == null || typeof p !== 'object') {
    throw new Error(`attention.pattern must be {blockSize, mask} or {name: ${
        PATTERN_BUILDERS.map((n) => `'${n}'`).join(' | ')}, blockSize, ...params}, got ${JSON.stringify(pattern)}`);
  }
  if (!Number.isInteger(p.blockSize) || (p.blockSize as number) < 1) {
    throw new Error(`attention.pattern.blockSize must be a positive integer, got ${JSON.stringify(p.blockSize)}`);
  }
  const copy = JSON.parse(JSON.stringify(pattern)) as SparsePatternSpec;
  if (p.mask !== undefined) {
    if (p.name !== undefined) throw new Error('attention.pattern must have either mask or name, not both');
    patterns.fromBlockMask(p.mask as number[][], p.blockSize as number);  // validates the mask
    return copy;
  }
  if (!PATTERN_BUILDERS.includes(p.name as PatternBuilderName)) {
    throw new Error(`attention.pattern.name must be one of ${PATTERN_BUILDERS.join(', ')} (or give a mask), got ${
        JSON.stringify(p.name)}`);
  }
  const trial = 4 * (p.blockSize as number);
  buildLayout(copy, trial, trial);  // the builder checks its params
  return copy;
}
