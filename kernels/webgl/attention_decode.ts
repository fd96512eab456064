/**
 * The webgl decode path (issue 18): for a few query rows (seqQ ≤ 16) against many keys. The tiled forward
 * (attention_forward.ts) pads every head's query rows to a 32-row tile and walks each query head separately, so a
 * one-row decode step computes 32 rows per query head, and each query head of a GQA group re-reads its kv head's K
 * and V. This path packs the query rows of a kv head together (rows of 4: GQA groups and query positions), splits the
 * key range into splits (flash-decoding), and merges the splits in a fixed order (deterministic). Programs and their
 * passes: decode_attention_gpu.ts.
 *
 * It executes the plans whose options it knows (causal / window / keyLengths / queryOffsets / softcap; no layout,
 * mask, bias, ALiBi, segments or dropout); runAttentionForward takes the tiled path for every other plan. The backward
 * always takes the tiled path.
 */
import {env} from '@tensorflow/tfjs-core';
import type {TensorInfo} from '@tensorflow/tfjs-core';
import type {MathBackendWebGL} from '@tensorflow/tfjs-backend-webgl';
import {AttentionPlan} from '../../src/plan/plan.js';
import type {AttentionInputs} from '../attention_kernel_func.js';
import {disposeAll, runProgram} from './attention_geometry.js';
import {UniformValues} from './attention_program.js';
import {
  DECODE_GROUP_ROWS, DecodeCombineProgram, DecodePackProgram, DecodeProbabilitiesProgram, DecodeScoresProgram,
  DecodeSplitStatsProgram, DecodeSplitValuesProgram, DecodeVariant,
} from './decode_attention_gpu.js';
import {texelLayout, TexelLayout} from './texel_layout.js';

/**
 * tfjs flag choosing the webgl decode path: -1 (default) by the size rule (useDecodePath), 1 always where the plan
 * allows it, 0 never. `tf.env().set('ATTENTION_WEBGL_DECODE', 1)` forces it (the browser tests do).
 */
export const DECODE_FLAG = 'ATTENTION_WEBGL_DECODE';
env().registerFlag(DECODE_FLAG, () => -1);

/** Longest query block the decode path takes (issue 18: 1…16 rows). */
export const DECODE_MAX_QUERIES = 16;
/**
 * The size rule, from forward timings on SwiftShader (Chromium 2-core VM, test/_decode_bench.test.ts, median of 5,
 * causal, tiled → decode): seqQ 1 H 8/2 D64: seqK 64 21 → 11 ms, 128 49 → 9, 1024 157 → 21, 4096 179 → 64;
 * seqQ 1 H 4/4 seqK 4096: 531 → 109; seqQ 4 H 32/8 D128 seqK 4096 (16 rows per kv head): 2743 → 2387;
 * seqQ 16 H 8/2 (64 rows per kv head): seqK 128 36 → 28 but seqK 1024 126 → 169. The value pass reads V once per
 * row group of 4, so past 16 rows per kv head the tiled path's 32-row tiles win: decode takes seqQ ≤ 16 with at most
 * DECODE_MAX_KV_ROWS query rows per kv head (seqQ · groupSize) and at least DECODE_MIN_KEYS keys.
 */
export const DECODE_MIN_KEYS = 128;
export const DECODE_MAX_KV_ROWS = 16;
/** Keys per split: at least (short splits cost more in the merge than they gain) and at most (loop bounds). */
const MIN_SPLIT_KEYS = 64;
const MAX_SPLIT_KEYS = 4096;
/** (row group, split) pairs the splits aim for: enough fragments in the stats pass to keep a GPU busy. */
const TARGET_SPLIT_GROUPS = 256;

let runs = 0;

/** How many forwards took the webgl decode path so far (node-side tests check that a case really ran it). */
export function decodeRunsForTests(): number {
  return runs;
}

/** Test hook: force the decode path on (where the plan allows it) or off; null restores the size rule. */
export function setDecodePathForTests(mode: 'always' | 'never' | null): void {
  env().set(DECODE_FLAG, mode === 'always' ? 1 : mode === 'never' ? 0 : -1);
}

/** Whether the decode path can execute this plan exactly (its options) at all. */
export function decodeSupports(plan: AttentionPlan): boolean {
  return plan.layout == null && plan.mask == null && plan.bias == null && plan.alibi == null && !plan.hasSegments &&
      plan.dropout == null && plan.seqQ > 0 && plan.seqK > 0 && plan.batch > 0;
}

/** Whether runAttentionForward should take the decode path for this plan. */
export function useDecodePath(plan: AttentionPlan): boolean {
  const mode = env().getNumber(DECODE_FLAG);
  if (mode === 0 || !decodeSupports(plan)) return false;
  if (mode === 1) return true;
  return plan.seqQ <= DECODE_MAX_QUERIES && plan.seqQ * plan.groupSize <= DECODE_MAX_KV_ROWS &&
      plan.seqK >= DECODE_MIN_KEYS;
}

/** Number of key splits and keys per split for `groups` row groups (of DECODE_GROUP_ROWS rows) over seqK keys. */
export function chooseSplits(seqK: number, groups: number): {splits: number; splitLength: number} {
  const wanted = Math.ceil(TARGET_SPLIT_GROUPS / groups);
  const splits0 = Math.max(1, Math.ceil(seqK / MAX_SPLIT_KEYS),
                           Math.min(wanted, Math.ceil(seqK / MIN_SPLIT_KEYS)));
  const splitLength = Math.ceil(seqK / splits0);
  return {splits: Math.ceil(seqK / splitLength), splitLength};
}

/** The decode forward: returns [output [B,Sq,H,D], lse [B,H,Sq]]. */
export function runDecodeForward(backend: MathBackendWebGL, plan: AttentionPlan, inputs: AttentionInputs): TensorInfo[] {
  const {batch, seqQ, seqK, heads, kvHeads, headDim, groupSize} = plan;
  const maxTextureSize = env().getNumber('WEBGL_MAX_TEXTURE_SIZE');
  const d4 = Math.ceil(headDim / 4);
  const rowsTotal = seqQ * groupSize;
  const rowGroups = Math.ceil(rowsTotal / DECODE_GROUP_ROWS);
  const groupCount = batch * kvHeads * rowGroups;
  const {splits, splitLength} = chooseSplits(seqK, groupCount);
  runs++;
  const layout = (texels: number, unit: number, what: string) => texelLayout(texels, unit, maxTextureSize, what);
  const qLayout = layout(groupCount * DECODE_GROUP_ROWS * d4, d4, 'the decode queries');
  const kLayout = layout(batch * kvHeads * seqK * d4, d4, 'the decode keys');
  const scoresLayout = layout(groupCount * seqK, 1, 'the decode scores');
  const lseLayout = layout(groupCount * splits, 1, 'the decode split statistics');
  const partialsLayout = layout(groupCount * splits * headDim, 1, 'the decode partial outputs');

  const pack = (x: TensorInfo, l: TexelLayout, rowsPad: number, rows: number, group: number) => runProgram(
      backend, new DecodePackProgram(l.shape, d4, {outWidth: l.width, rowsPad, rowsTotal: rows, kvHeads,
                                                   groupSize: group, dim: headDim,
                                                   rowCount: batch * kvHeads * rowsPad}),
      [x], l);
  const qRows = pack(inputs.q, qLayout, rowGroups * DECODE_GROUP_ROWS, rowsTotal, groupSize);
  const kRows = pack(inputs.k, kLayout, seqK, seqK, 1);
  const vRows = pack(inputs.v, kLayout, seqK, seqK, 1);

  const variant: DecodeVariant = {
    d4, hasKeyLengths: plan.hasKeyLengths, hasQueryOffsets: plan.hasQueryOffsets, hasSoftcap: plan.softcap > 0,
  };
  const keyInputs = [...(plan.hasKeyLengths ? [inputs.keyLengths] : []),
                     ...(plan.hasQueryOffsets ? [inputs.queryOffsets] : [])];
  const rowUniforms: UniformValues = {
    seqK, kvHeads, groupSize, rowsTotal, rowGroups, groupCount, windowLeft: plan.windowLeft,
    windowRight: plan.windowRight, diagOffset: plan.diagonalOffset, offsetMin: plan.offsetMin,
    offsetMax: plan.offsetMax, splits, splitLength, scale: plan.scale, softcap: plan.softcap, dim: headDim,
    qWidth: qLayout.width, kWidth: kLayout.width, vWidth: kLayout.width, scoresWidth: scoresLayout.width,
    probsWidth: scoresLayout.width, lseWidth: lseLayout.width, partialsWidth: partialsLayout.width,
  };
  const scores = runProgram(
      backend, new DecodeScoresProgram(scoresLayout.shape, variant, {...rowUniforms, outWidth: scoresLayout.width}),
      [qRows, kRows, ...keyInputs], scoresLayout);
  const splitLse = runProgram(
      backend, new DecodeSplitStatsProgram(lseLayout.shape, variant, {...rowUniforms, outWidth: lseLayout.width}),
      [scores, ...keyInputs], lseLayout);
  const probs = runProgram(
      backend, new DecodeProbabilitiesProgram(scoresLayout.shape, variant,
                                              {...rowUniforms, outWidth: scoresLayout.width}),
      [scores, splitLse, ...keyInputs], scoresLayout);
  disposeAll(backend, [scores]);
  const partials = runProgram(
      backend, new DecodeSplitValuesProgram(partialsLayout.shape, variant,
                                            {...rowUniforms, outWidth: partialsLayout.width}),
      [probs, vRows, ...keyInputs], partialsLayout);
  const combineUniforms = {...rowUniforms, heads};
  const output = runProgram(
      backend, new DecodeCombineProgram([batch, seqQ, heads, headDim], 'output', combineUniforms),
      [splitLse, partials], null);
  const lse = runProgram(
      backend, new DecodeCombineProgram([batch, heads, seqQ], 'lse', combineUniforms), [splitLse, partials], null);
  disposeAll(backend, [qRows, kRows, vRows, splitLse, probs, partials]);
  return [output, lse];
}
