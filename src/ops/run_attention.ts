/**
 * The path every op takes: checked options → AttentionPlan → engine.runKernel → [output, lse].
 */
import * as tf from '@tensorflow/tfjs-core';
import {attentionAttrs, AttentionInputNames, FORWARD_KERNEL} from '../kernel_names.js';
import {BlockLayout} from '../patterns/block_layout.js';
import {LruCache} from '../plan/lru_cache.js';
import {AttentionKind, AttentionPlan, AttentionShapes, makePlan, PlanInput} from '../plan/plan.js';
import {AttentionPrecision, checkPrecision} from '../plan/precision.js';
import {ensureAttentionKernels} from './kernel_fallback.js';
import {checkBoolean, checkKeyLengths, checkScale, checkSoftcap} from './validate.js';
import {checkAlibiSlopes, checkDropout, checkPairOperand, checkQueryOffsets, checkSegmentIds} from './validate_masks.js';

export interface CommonAttentionOptions {
  /** Multiplies q·k; default 1/sqrt(headDim). */
  scale?: number;
  /** score ← softcap·tanh(score/softcap), after scaling and before bias and masking. 0 or absent disables it. */
  softcap?: number;
  /** Per batch, keys at positions >= keyLengths[b] are masked (padding). number[] or int32 Tensor1D [batch]. */
  keyLengths?: number[] | Int32Array | tf.Tensor1D;
  /**
   * Query row i of batch b sits at key position queryOffsets[b] + i: causal means j <= queryOffsets[b] + i, windows
   * and ALiBi distances are measured from there. Default seqK − seqQ (bottom-right); 0 is Keras/SDPA's top-left.
   * A number (all batches), number[] / Int32Array [batch] (integers in [-seqQ, seqK]) or an int32 Tensor1D [batch]
   * (values clamped to [-seqQ, seqK] on the device). With keyLengths this is flash_attn_with_kvcache's cache_seqlens.
   */
  queryOffsets?: number | number[] | Int32Array | tf.Tensor1D;
  /**
   * Which (query, key) pairs may attend (true / non-zero = may attend, as Keras and SDPA): bool, int32 or float32,
   * shape [seqQ, seqK], [batch | 1, seqQ, seqK] or [batch | 1, heads | 1, seqQ, seqK] (broadcast, never expanded).
   */
  mask?: tf.Tensor;
  /** float32 bias added to the scores (after softcap), same shapes as mask; -Infinity masks. Differentiable. */
  bias?: tf.Tensor;
  /** ALiBi: adds -slope[b, h]·|queryOffsets[b] + i − j|; [heads] or [batch, heads]. Its gradient is zero. */
  alibiSlopes?: number[] | Float32Array | tf.Tensor;
  /**
   * Packed sequences: query i sees key j only if their ids are equal. int32 [batch, seq] (seqQ == seqK) or
   * {query: [batch, seqQ], key: [batch, seqK]}.
   */
  segmentIds?: tf.Tensor2D | {query: tf.Tensor2D, key: tf.Tensor2D};
  /**
   * Dropout on the attention probabilities inside the kernel (Philox4x32-10, bit-identical on every backend; see
   * README "Dropout"). rate in [0, 1), seed an integer in [0, 2^53).
   */
  dropout?: {rate: number, seed: number};
  /**
   * Matrix-product precision, as PyTorch's set_float32_matmul_precision: 'highest' (fp32, the default), 'high'
   * (3×f16 split products on tensor cores, near fp32) or 'medium' (f16 operands, f32 accumulation). A request: the
   * backend runs what its device has ('highest' where nothing else is); lastAttentionPath() says what ran. Default:
   * tf.env().get('ATTENTION_PRECISION').
   */
  precision?: AttentionPrecision;
  /** Return {output, lse} instead of the output alone. */
  returnLse?: boolean;
}

export interface AttentionWithLse {
  /** [batch, seqQ, heads, headDim] */
  output: tf.Tensor4D;
  /** [batch, heads, seqQ]: natural-log logsumexp of the final scores; -Infinity for a row that sees no key. */
  lse: tf.Tensor3D;
}

export interface MaskOptions {
  windowLeft: number;
  windowRight: number;
  layout: BlockLayout | null;
}

/** Plans of the calls whose plan inputs are all numbers and flags, by scalarPlanKey (plans are immutable). */
const planCache = new LruCache<string, AttentionPlan>(64);

/** Test hook: how many plans the op-level cache holds. */
export function planCacheSizeForTests(): number {
  return planCache.size;
}

/** A number as a key: exact (JS prints the shortest string that reads back to the same double), -0 kept apart. */
function num(x: number): string {
  return Object.is(x, -0) ? '-0' : String(x);
}

/** Every input of a plan without layout / mask / bias / segments / dropout, as one string. */
function scalarPlanKey(
    kind: AttentionKind, s: AttentionShapes, mask: MaskOptions, scale: number, softcap: number,
    hasKeyLengths: boolean, offsets: ReturnType<typeof checkQueryOffsets>, alibiBatchStride: number | undefined,
    precision: AttentionPrecision): string {
  const offsetKey = offsets.kind === 'static' ? `s${num(offsets.offset)}` : `r${offsets.range[0]},${offsets.range[1]}`;
  return `${kind}|${s.batch},${s.seqQ},${s.seqK},${s.heads},${s.kvHeads},${s.headDim}|${mask.windowLeft},${
      mask.windowRight}|${num(scale)}|${num(softcap)}|${hasKeyLengths ? 1 : 0}|${offsetKey}|${
      alibiBatchStride ?? 'n'}|${precision}`;
}

export function runAttention(
    kind: AttentionKind, q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, shapes: AttentionShapes,
    options: CommonAttentionOptions, mask: MaskOptions): tf.Tensor4D | AttentionWithLse {
  // Every check runs before any tensor is made, so bad input leaks nothing.
  const scale = checkScale(options.scale, shapes.headDim);
  const softcap = checkSoftcap(options.softcap);
  const returnLse = checkBoolean('returnLse', options.returnLse);
  const keyLengths = checkKeyLengths(options.keyLengths, shapes.batch, shapes.seqK);
  const offsets = checkQueryOffsets(options.queryOffsets, shapes);
  const maskOperand = options.mask === undefined ? null : checkPairOperand('mask', options.mask, shapes);
  const biasOperand = options.bias === undefined ? null : checkPairOperand('bias', options.bias, shapes);
  const segments = options.segmentIds === undefined ? null : checkSegmentIds(options.segmentIds, shapes);
  const dropout = checkDropout(options.dropout);
  const precision = checkPrecision(options.precision);
  const alibi = options.alibiSlopes === undefined ? null : checkAlibiSlopes(options.alibiSlopes, shapes);

  const planInput = (): PlanInput => ({
    ...shapes, ...mask, kind, scale, softcap, hasKeyLengths: keyLengths != null,
    queryOffset: offsets.kind === 'static' ? offsets.offset : undefined,
    queryOffsetRange: offsets.kind === 'static' ? null : offsets.range,
    mask: maskOperand, bias: biasOperand, alibi: alibi == null ? null : {batchStride: alibi.batchStride},
    hasSegments: segments != null, dropout, precision,
  });
  // A decode loop makes the same plan every step: reuse it when every plan input is a number or flag (no layout,
  // mask, bias, segments or dropout, whose inputs are objects), keyed by all of them.
  const cacheable = mask.layout == null && maskOperand == null && biasOperand == null && segments == null &&
      dropout == null;
  const plan = cacheable ?
      planCache.getOrCreate(scalarPlanKey(kind, shapes, mask, scale, softcap, keyLengths != null, offsets,
                                          alibi?.batchStride, precision),
                            () => Object.freeze(makePlan(planInput()))) :
      makePlan(planInput());

  ensureAttentionKernels(tf.getBackend());
  // Kernels always receive every input the contract names (the gradient config saves them by name). keyLengths
  // without padding is seqK everywhere and plan.hasKeyLengths tells kernels to ignore it; an absent optional input
  // is bound to that same tensor and the plan says it is absent (no extra allocation).
  const owned: tf.Tensor[] = [];
  const own = <T extends tf.Tensor>(t: T): T => (owned.push(t), t);
  const keyLengthsTensor = keyLengths instanceof tf.Tensor ? keyLengths :
      own(tf.tensor1d(keyLengths ?? new Int32Array(shapes.batch).fill(shapes.seqK), 'int32'));
  const absent = keyLengthsTensor;
  const queryOffsetsTensor = offsets.kind === 'tensor' ? offsets.tensor :
      offsets.kind === 'perBatch' ? own(tf.tensor1d(offsets.values, 'int32')) : absent;
  if (alibi?.owned) owned.push(alibi.tensor);
  const inputs = {
    q, k, v, keyLengths: keyLengthsTensor, queryOffsets: queryOffsetsTensor,
    mask: options.mask ?? absent, bias: options.bias ?? absent, alibiSlopes: alibi?.tensor ?? absent,
    queryIds: segments?.query ?? absent, keyIds: segments?.key ?? absent,
  } satisfies Record<AttentionInputNames, tf.Tensor>;
  let outputs: tf.Tensor[];
  try {
    outputs = tf.engine().runKernel(FORWARD_KERNEL[kind], inputs, attentionAttrs(plan)) as tf.Tensor[];
  } finally {
    owned.forEach((t) => t.dispose());
  }
  const [output, lse] = outputs;
  if (returnLse) return {output: output as tf.Tensor4D, lse: lse as tf.Tensor3D};
  lse.dispose();
  return output as tf.Tensor4D;
}
