/**
 * Test code that runs inside the browser page (bundled by bundle.ts into the global `attentionTests`). It uses the
 * page's globals: `tf` (tf.min.js, plus tf-backend-webgpu.min.js for webgpu) and `tfEfficientAttention` (the
 * library's browser bundle), so the page tests exactly what users load.
 */
import type {AttentionCase} from '../cases.js';
import {checkCase, CaseResult, Lib, randomArray, refProblem, Tf} from '../check_case.js';
import {referenceForward} from '../reference.js';

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

/** One shared case, forward and backward, against the float64 reference (see test/check_case.ts). */
export function runCase(c: AttentionCase, seed: number): Promise<CaseResult> {
  return checkCase(tf, tfEfficientAttention, c, seed);
}

/** Forward only (output and lse), for shapes whose backward would be too slow for a software renderer. */
export async function runForwardCase(c: AttentionCase, seed: number): Promise<CaseResult> {
  const lib = tfEfficientAttention;
  const extras = (['queryOffsets', 'mask', 'bias', 'alibi', 'segments', 'dropout'] as const).filter((o) => c[o] != null);
  if (extras.length > 0) throw new Error(`runForwardCase: case '${c.name}' uses ${extras.join(', ')}; use runCase`);
  const p = refProblem(lib, c, seed);
  const qShape = [c.batch, c.seqQ, c.heads, c.headDim], kShape = [c.batch, c.seqK, c.kvHeads, c.headDim];
  const size = (s: number[]) => s.reduce((a, b) => a * b, 1);
  const qa = randomArray(size(qShape), seed), ka = randomArray(size(kShape), seed + 1);
  const va = randomArray(size(kShape), seed + 2);
  const before = tf.memory().numTensors;
  const q = tf.tensor(qa, qShape), k = tf.tensor(ka, kShape), v = tf.tensor(va, kShape);
  const options = definedOnly({scale: c.scale, softcap: c.softcap, keyLengths: c.keyLengths, returnLse: true as const,
                               causal: c.causal, windowSize: c.windowSize!, layout: p.layout!});
  const {output, lse} = c.op === 'flash' ? lib.flashAttention(q, k, v, options) :
      c.op === 'sliding' ? lib.slidingWindowAttention(q, k, v, options) : lib.sparseAttention(q, k, v, options);
  const [outA, lseA] = await Promise.all([output.data(), lse.data()]);
  [q, k, v, output, lse].forEach((t) => t.dispose());
  const leakedTensors = tf.memory().numTensors - before;
  const ref = referenceForward(p, qa, ka, va);
  const problems: string[] = [];
  const err = (a: ArrayLike<number>, e: ArrayLike<number>, what: string) => {
    let maxErr = 0, maxRef = 1e-3;
    for (let i = 0; i < e.length; i++) {
      if (e[i] === -Infinity || a[i] === -Infinity || !Number.isFinite(a[i])) {
        if (a[i] !== e[i] && problems.length < 8) problems.push(`${what}[${i}] = ${a[i]}, expected ${e[i]}`);
        continue;
      }
      maxErr = Math.max(maxErr, Math.abs(a[i] - e[i]));
      maxRef = Math.max(maxRef, Math.abs(e[i]));
    }
    return maxErr / maxRef;
  };
  return {name: c.name, seed, problems, leakedTensors,
          errors: {output: err(outA, ref.output, 'output'), lse: err(lseA, ref.lse, 'lse'), dq: 0, dk: 0, dv: 0, dBias: 0}};
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
