/**
 * Test code that runs inside the browser page (bundled by bundle.ts into the global `attentionTests`). It uses the
 * page's globals: `tf` (tf.min.js, plus tf-backend-webgpu.min.js for webgpu) and `tfEfficientAttention` (the
 * library's browser bundle), so the page tests exactly what users load.
 */
import type {AttentionCase} from '../cases.js';
import {checkCase, CaseResult, Lib, randomArray, refProblem, Tf} from '../check_case.js';

declare const tf: Tf;
declare const tfEfficientAttention: Lib;

export interface PageInfo {
  backend: string;
  webglVersion: number | null;
  maxTextureSize: number | null;
  renderer: string;
}

/** Switches tfjs to `backend` (optionally forcing a WebGL version and tfjs flags first), describes the renderer. */
export async function useBackend(
    backend: string, webglVersion?: number, flags: Record<string, boolean | number> = {}): Promise<PageInfo> {
  if (webglVersion != null) tf.env().set('WEBGL_VERSION', webglVersion);
  for (const [name, value] of Object.entries(flags)) tf.env().set(name, value);
  if (!(await tf.setBackend(backend))) throw new Error(`tfjs backend ${backend} failed to initialize`);
  await tf.ready();
  let renderer = backend;
  let webgl: number | null = null, maxTextureSize: number | null = null;
  if (backend === 'webgl') {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const gl = (tf.backend() as any).gpgpu.gl as WebGLRenderingContext;
    const info = gl.getExtension('WEBGL_debug_renderer_info');
    renderer = String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
    webgl = tf.env().getNumber('WEBGL_VERSION');
    maxTextureSize = tf.env().getNumber('WEBGL_MAX_TEXTURE_SIZE');
  } else if (backend === 'webgpu') {
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const adapterInfo = (tf.backend() as any).adapterInfo;
    renderer = adapterInfo ? `${adapterInfo.vendor} ${adapterInfo.architecture}`.trim() || 'webgpu' : 'webgpu';
  }
  return {backend: tf.getBackend(), webglVersion: webgl, maxTextureSize, renderer};
}

/** The options without undefined entries (the ops reject keys they do not know, e.g. windowSize on flash). */
function definedOnly<T extends object>(options: T): T {
  return Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined && v !== null)) as T;
}

/** One shared case, forward and (unless forwardOnly) backward, against the float64 reference (test/check_case.ts). */
export function runCase(c: AttentionCase, seed: number): Promise<CaseResult> {
  return checkCase(tf, tfEfficientAttention, c, seed);
}

/** Names of the tfjs kernels one case's forward + backward runs (tf.profile), to check what the path uses. */
export async function kernelsOfCase(c: AttentionCase): Promise<string[]> {
  const lib = tfEfficientAttention;
  const p = refProblem(lib, c);
  const q = tf.randomNormal([c.batch, c.seqQ, c.heads, c.headDim]);
  const k = tf.randomNormal([c.batch, c.seqK, c.kvHeads, c.headDim]);
  const v = tf.randomNormal([c.batch, c.seqK, c.kvHeads, c.headDim]);
  const options = definedOnly({scale: c.scale, softcap: c.softcap, keyLengths: c.keyLengths, causal: c.causal,
                               windowSize: c.windowSize!, layout: p.layout!});
  const run = (qq: ReturnType<Tf['tensor']>, kk: ReturnType<Tf['tensor']>, vv: ReturnType<Tf['tensor']>) =>
      c.op === 'flash' ? lib.flashAttention(qq, kk, vv, options) :
      c.op === 'sliding' ? lib.slidingWindowAttention(qq, kk, vv, options) : lib.sparseAttention(qq, kk, vv, options);
  const info = await tf.profile(async () => {
    const grads = tf.grads((a, b, d) => tf.sum(run(a, b, d) as ReturnType<Tf['tensor']>))([q, k, v]);
    await Promise.all(grads.map((g) => g.data()));
    grads.forEach((g) => g.dispose());
  });
  [q, k, v].forEach((t) => t.dispose());
  return info.kernelNames;
}

/** The shape of a dropout probe: flashAttention with q = 0 (P = 1/seqK everywhere) and v = I (headDim = seqK). */
export interface DropoutProbe {
  batch: number;
  heads: number;
  seqQ: number;
  seqK: number;
  rate: number;
  seed: number;
}

/**
 * The dropout keep mask the kernels applied, read off the output: with q = 0 and v = the identity, output[b, i, h, j]
 * is Z[b, h, i, j]·keepScale/seqK, so an entry is kept iff it is positive. Returned as 0/1 in (b, h, i, j) order.
 */
export async function dropoutKeptMask(p: DropoutProbe): Promise<number[]> {
  const lib = tfEfficientAttention;
  const q = tf.zeros([p.batch, p.seqQ, p.heads, p.seqK]), k = tf.zeros([p.batch, p.seqK, p.heads, p.seqK]);
  const v = tf.tile(tf.reshape(tf.eye(p.seqK), [1, p.seqK, 1, p.seqK]), [p.batch, 1, p.heads, 1]);
  const out = lib.flashAttention(q, k, v, {dropout: {rate: p.rate, seed: p.seed}});
  const values = await out.data();
  [q, k, v, out].forEach((t) => t.dispose());
  const kept: number[] = [];
  for (let b = 0; b < p.batch; b++) {
    for (let h = 0; h < p.heads; h++) {
      for (let i = 0; i < p.seqQ; i++) {
        for (let j = 0; j < p.seqK; j++) kept.push(values[((b * p.seqQ + i) * p.heads + h) * p.seqK + j] > 0 ? 1 : 0);
      }
    }
  }
  return kept;
}

/**
 * Max |difference| between a causal call with int32 queryOffsets tensor values outside [-seqQ, seqK] (the kernels
 * clamp them) and the same call with the clamped numbers.
 */
export async function queryOffsetsClampDifference(): Promise<number> {
  const lib = tfEfficientAttention;
  const [batch, seqQ, seqK, heads, dim] = [3, 6, 40, 2, 16];
  const q = tf.tensor(randomArray(batch * seqQ * heads * dim, 1), [batch, seqQ, heads, dim]);
  const k = tf.tensor(randomArray(batch * seqK * heads * dim, 2), [batch, seqK, heads, dim]);
  const v = tf.tensor(randomArray(batch * seqK * heads * dim, 3), [batch, seqK, heads, dim]);
  const offsets = tf.tensor1d([1000, -1000, 7], 'int32');
  const clamped = lib.flashAttention(q, k, v, {causal: true, queryOffsets: offsets});
  const exact = lib.flashAttention(q, k, v, {causal: true, queryOffsets: [seqK, -seqQ, 7]});
  const [a, b] = await Promise.all([clamped.data(), exact.data()]);
  [q, k, v, offsets, clamped, exact].forEach((t) => t.dispose());
  let diff = 0;
  for (let e = 0; e < a.length; e++) diff = Math.max(diff, Math.abs(a[e] - b[e]));
  return diff;
}

/**
 * Max |difference| between a call with a float32 mask holding NaN entries and the same call with those entries 0
 * (a NaN mask entry masks, as in test/reference.ts: `!NaN`), forward and dq.
 */
export async function maskNaNDifference(): Promise<number> {
  const lib = tfEfficientAttention;
  const [seqQ, seqK, heads, dim] = [40, 70, 2, 16];
  const q = tf.tensor(randomArray(seqQ * heads * dim, 4), [1, seqQ, heads, dim]);
  const k = tf.tensor(randomArray(seqK * heads * dim, 5), [1, seqK, heads, dim]);
  const v = tf.tensor(randomArray(seqK * heads * dim, 6), [1, seqK, heads, dim]);
  const noise = randomArray(seqQ * seqK, 7);
  const withNaN = Float32Array.from(noise, (x) => (x < -0.3 ? NaN : x < 0.2 ? 1 : 0));
  const withZero = withNaN.map((x) => (Number.isNaN(x) ? 0 : x));
  const run = (values: Float32Array) => {
    const mask = tf.tensor(values, [seqQ, seqK], 'float32');
    const f = (qq: ReturnType<Tf['tensor']>) => lib.flashAttention(qq, k, v, {mask}) as ReturnType<Tf['tensor']>;
    const out = f(q);
    const dq = tf.grad((qq: ReturnType<Tf['tensor']>) => tf.sum(f(qq)))(q);
    return {out, dq, mask};
  };
  const a = run(withNaN), b = run(withZero);
  const [ao, adq, bo, bdq] = await Promise.all([a.out.data(), a.dq.data(), b.out.data(), b.dq.data()]);
  [q, k, v, a.out, a.dq, a.mask, b.out, b.dq, b.mask].forEach((t) => t.dispose());
  let diff = 0;
  for (let e = 0; e < ao.length; e++) diff = Math.max(diff, Math.abs(ao[e] - bo[e]), Math.abs(adq[e] - bdq[e]));
  return diff;
}
