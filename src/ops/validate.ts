/**
 * Argument checks shared by the three ops. Every error names the argument and what was expected.
 */
import * as tf from '@tensorflow/tfjs-core';
import {BlockLayout} from '../patterns/block_layout.js';
import {AttentionShapes, MAX_HEAD_DIM} from '../plan/plan.js';

function describe(x: unknown): string {
  if (x instanceof tf.Tensor) return `a ${x.dtype} tensor of shape [${x.shape.join(', ')}]`;
  return x === null ? 'null' : typeof x;
}

function checkFloatTensor(name: string, x: unknown, expectedShape: string): asserts x is tf.Tensor {
  if (!(x instanceof tf.Tensor)) {
    throw new Error(`${name} must be a tf.Tensor of shape ${expectedShape}, got ${describe(x)}`);
  }
  if (x.isDisposed) throw new Error(`${name} has been disposed`);
  if (x.rank !== 4) {
    throw new Error(`${name} must be rank 4 with shape ${expectedShape}, got rank ${x.rank} shape [${x.shape}]`);
  }
  if (x.dtype !== 'float32') throw new Error(`${name} must have dtype float32, got ${x.dtype}`);
}

export function checkInputs(q: unknown, k: unknown, v: unknown): AttentionShapes {
  checkFloatTensor('q', q, '[batch, seqQ, heads, headDim]');
  checkFloatTensor('k', k, '[batch, seqK, kvHeads, headDim]');
  checkFloatTensor('v', v, '[batch, seqK, kvHeads, headDim]');
  const [batch, seqQ, heads, headDim] = q.shape;
  const [kBatch, seqK, kvHeads, kDim] = k.shape;
  if (batch < 1 || seqQ < 1 || heads < 1 || headDim < 1) {
    throw new Error(`q must have non-zero dimensions [batch, seqQ, heads, headDim], got [${q.shape}]`);
  }
  if (kBatch !== batch || kDim !== headDim || seqK < 1 || kvHeads < 1) {
    throw new Error(`k must have shape [batch=${batch}, seqK>=1, kvHeads>=1, headDim=${headDim}], got [${k.shape}]`);
  }
  if (v.shape.some((d, i) => d !== k.shape[i])) {
    throw new Error(`v must have the shape of k [${k.shape}], got [${v.shape}]`);
  }
  if (heads % kvHeads !== 0) {
    throw new Error(`heads (${heads}, q.shape[2]) must be divisible by kvHeads (${kvHeads}, k.shape[2])`);
  }
  if (headDim > MAX_HEAD_DIM) {
    throw new Error(`headDim (q.shape[3]) must be at most ${MAX_HEAD_DIM}, got ${headDim}`);
  }
  return {batch, seqQ, seqK, heads, kvHeads, headDim};
}

/**
 * options must be a plain object (or undefined when `required` is false), and every key must be one the op knows:
 * a misspelt option (say `casual`) must not be silently ignored.
 */
export function checkOptions(opName: string, options: unknown, known: readonly string[], required: string | null):
    Record<string, unknown> {
  if (options === undefined && required == null) return {};
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new Error(`options must be an object${required ? ` with ${required}` : ''}, got ${
        options === null ? 'null' : Array.isArray(options) ? 'an array' : typeof options}`);
  }
  for (const [key, value] of Object.entries(options)) {
    // An unknown key set to undefined changes nothing (callers often spread one options object over several ops).
    if (value !== undefined && !known.includes(key)) {
      throw new Error(`options.${key} is not an option of ${opName} (known: ${known.join(', ')})`);
    }
  }
  return options as Record<string, unknown>;
}

export const COMMON_OPTIONS = [
  'scale', 'softcap', 'keyLengths', 'queryOffsets', 'mask', 'bias', 'alibiSlopes', 'segmentIds', 'dropout', 'precision',
  'returnLse',
] as const;

export function checkScale(scale: unknown, headDim: number): number {
  if (scale === undefined) return 1 / Math.sqrt(headDim);
  if (typeof scale !== 'number' || !Number.isFinite(scale)) {
    throw new Error(`scale must be a finite number, got ${String(scale)}`);
  }
  return scale;
}

export function checkSoftcap(softcap: unknown): number {
  if (softcap === undefined || softcap === 0) return 0;
  if (typeof softcap !== 'number' || !Number.isFinite(softcap) || softcap < 0) {
    throw new Error(`softcap must be a finite number >= 0 (0 disables it), got ${String(softcap)}`);
  }
  return softcap;
}

export function checkBoolean(name: string, value: unknown): boolean {
  if (value === undefined) return false;
  if (typeof value !== 'boolean') throw new Error(`${name} must be a boolean, got ${String(value)}`);
  return value;
}

/** keyLengths as given, checked: number[] / Int32Array of length batch with values in [0, seqK], or int32 Tensor1D. */
export function checkKeyLengths(keyLengths: unknown, batch: number, seqK: number): tf.Tensor1D | number[] | null {
  if (keyLengths == null) return null;
  if (keyLengths instanceof tf.Tensor) {
    if (keyLengths.isDisposed) throw new Error('keyLengths has been disposed');
    if (keyLengths.rank !== 1 || keyLengths.shape[0] !== batch || keyLengths.dtype !== 'int32') {
      throw new Error(`keyLengths must be an int32 tensor of shape [batch=${batch}], got ${describe(keyLengths)}`);
    }
    return keyLengths as tf.Tensor1D;
  }
  if (!Array.isArray(keyLengths) && !(keyLengths instanceof Int32Array)) {
    throw new Error(`keyLengths must be a number[] or int32 Tensor1D of length batch=${batch}, got ${
        describe(keyLengths)}`);
  }
  const values = Array.from(keyLengths as ArrayLike<number>);
  if (values.length !== batch) {
    throw new Error(`keyLengths must have length batch=${batch}, got length ${values.length}`);
  }
  values.forEach((n, b) => {
    if (!Number.isInteger(n) || n < 0 || n > seqK) {
      throw new Error(`keyLengths[${b}] must be an integer in [0, seqK=${seqK}], got ${n}`);
    }
  });
  return values;
}

/** windowSize: w means [w, 0]; [left, right] inclusive token counts, -1 = unbounded. */
export function checkWindow(windowSize: unknown): [number, number] {
  const ok = (n: unknown) => Number.isInteger(n) && (n as number) >= -1;
  if (typeof windowSize === 'number') {
    if (!ok(windowSize)) throw new Error(`windowSize must be an integer >= -1, got ${windowSize}`);
    return [windowSize, 0];
  }
  if (Array.isArray(windowSize) && windowSize.length === 2 && ok(windowSize[0]) && ok(windowSize[1])) {
    return [windowSize[0], windowSize[1]];
  }
  throw new Error(`windowSize must be an integer w >= -1 or a pair [left, right] of integers >= -1 (-1 = unbounded), ` +
                  `got ${JSON.stringify(windowSize)}`);
}

export function checkLayout(layout: unknown, shapes: AttentionShapes): BlockLayout {
  const l = layout as BlockLayout;
  if (l == null || typeof l !== 'object' || !(l.mask instanceof Uint8Array) || !Number.isInteger(l.blockSize) ||
      l.blockSize < 1) {
    throw new Error(`layout must be a BlockLayout (from patterns.*), got ${describe(layout)}`);
  }
  const qBlocks = Math.ceil(shapes.seqQ / l.blockSize), kBlocks = Math.ceil(shapes.seqK / l.blockSize);
  if (l.numQueryBlocks !== qBlocks || l.numKeyBlocks !== kBlocks) {
    throw new Error(`layout must have ceil(seqQ/blockSize)=${qBlocks} query blocks and ceil(seqK/blockSize)=${
        kBlocks} key blocks for seqQ=${shapes.seqQ}, seqK=${shapes.seqK}, blockSize=${l.blockSize}; got ${
        l.numQueryBlocks}x${l.numKeyBlocks}`);
  }
  if (l.numHeads !== 1 && l.numHeads !== shapes.heads) {
    throw new Error(`layout must have 1 or heads=${shapes.heads} layout heads, got ${l.numHeads}`);
  }
  if (l.mask.length !== l.numHeads * qBlocks * kBlocks) {
    throw new Error(`layout.mask must have numHeads*numQueryBlocks*numKeyBlocks=${
        l.numHeads * qBlocks * kBlocks} entries, got ${l.mask.length}`);
  }
  return l;
}
