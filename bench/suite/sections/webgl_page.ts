/**
 * Page side of the webgl benchmark (bundled by the webgl section, ./webgl.ts, into the global `webglBench`): times our webgl kernels
 * and tfjs's naive composition (matMul → additive mask → softmax → matMul, src/layers/naive_attention.ts) on the same
 * WebGL2 context, forward and forward+backward. Uses the page's globals `tf` and `tfEfficientAttention`.
 */
import type * as tfType from '@tensorflow/tfjs-core';
import type * as libType from '../../../src/index.js';
import {additiveMask, naiveAttentionWithBias as naiveAttention} from '../../../src/layers/naive_attention.js';
import {makePlan} from '../../../src/plan/plan.js';

declare const tf: typeof tfType;
declare const tfEfficientAttention: typeof libType;

/**
 * 'causal-mask': the causal pattern given as a boolean [seq, seq] mask tensor (the kernels find its hidden tiles on
 * the device); 'documents': 8 packed documents of seq / 8 tokens (segmentIds), dense within each. The option rows
 * (issues 16/17: what an option costs next to 'dense'): 'bias' a [1, heads, seq, seq] additive bias, 'alibi'
 * alibiSlopes (naive: the same ALiBi terms as a [1, heads, seq, seq] bias), 'dropout' rate 0.1 on the probabilities
 * (naive: tf.dropout's keep mask, drawn per call, on its probabilities).
 */
export type MaskKind = 'dense' | 'causal' | 'window' | 'sparse' | 'causal-mask' | 'documents' | 'bias' | 'alibi' |
    'dropout';
/** The option rows: dense attention plus one option, compared with the 'dense' row of the same run. */
export const OPTION_ROWS: MaskKind[] = ['bias', 'alibi', 'dropout'];
export const DROPOUT_RATE = 0.1;
/** Documents of the 'documents' rows. */
export const DOCUMENTS = 8;
export type Mode = 'forward' | 'forward+backward';

export interface BenchJob {
  impl: 'ours' | 'naive';
  mask: MaskKind;
  mode: Mode;
  batch: number;
  seq: number;
  heads: number;
  headDim: number;
  /** Timed runs after one warm-up run (which compiles shaders). */
  reps: number;
  /** Skip the warm-up run (the runner's paired mode warms up once, then alternates single runs). */
  noWarmup?: boolean;
}

export interface BenchResult {
  /** Median and every timed run, in ms; null when the run failed. */
  medianMs: number | null;
  runsMs: number[];
  error?: string;
}

export const WINDOW = 256;
export const SPARSE_BLOCK = 64;

/** tfjs flags set before the backend starts (bench --flags NAME=value,…), e.g. ATTENTION_WEBGL_SKIP_HIDDEN_TILES. */
async function setup(flags: Record<string, boolean | number> = {}): Promise<string> {
  for (const [name, value] of Object.entries(flags)) tf.env().set(name, value);
  await tf.setBackend('webgl');
  await tf.ready();
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const gl = (tf.backend() as any).gpgpu.gl as WebGL2RenderingContext;
  const info = gl.getExtension('WEBGL_debug_renderer_info');
  return String(gl.getParameter(info ? info.UNMASKED_RENDERER_WEBGL : gl.RENDERER));
}

function layoutFor(seq: number) {
  return tfEfficientAttention.patterns.bigBird(seq, seq, SPARSE_BLOCK, {windowBlocks: 3, globalBlocks: 1, randomBlocks: 2});
}

export async function runJob(job: BenchJob): Promise<BenchResult> {
  const lib = tfEfficientAttention;
  const {batch, seq, heads, headDim} = job;
  const scale = 1 / Math.sqrt(headDim);
  const layout = job.mask === 'sparse' ? layoutFor(seq) : null;
  const q = tf.randomNormal([batch, seq, heads, headDim]) as tfType.Tensor4D;
  const k = tf.randomNormal([batch, seq, heads, headDim]) as tfType.Tensor4D;
  const v = tf.randomNormal([batch, seq, heads, headDim]) as tfType.Tensor4D;
  const dOut = tf.randomNormal([batch, seq, heads, headDim]);
  let mask: tfType.Tensor2D | null = null;
  // Ours: the causal pattern as a bool mask, or the documents' segment ids (naive gets both as its additive mask).
  let boolMask: tfType.Tensor2D | null = null, segmentIds: tfType.Tensor2D | null = null;
  let bias: tfType.Tensor | null = null;
  const slopes = Array.from({length: heads}, (_, h) => 2 ** (-8 * (h + 1) / heads));
  const runsMs: number[] = [];
  try {
    if (job.mask === 'bias') {
      bias = tf.randomUniform([1, heads, seq, seq], -1, 1);
    } else if (job.mask === 'alibi' && job.impl === 'naive') {
      // -slope · |i − j| (seqQ = seqK, so FlashAttention's i + seqK − seqQ − j is i − j).
      const values = new Float32Array(heads * seq * seq);
      for (let h = 0; h < heads; h++) {
        for (let i = 0; i < seq; i++) {
          for (let j = 0; j < seq; j++) values[(h * seq + i) * seq + j] = -slopes[h] * Math.abs(i - j);
        }
      }
      bias = tf.tensor4d(values, [1, heads, seq, seq]);
    } else if (job.mask === 'causal-mask' || job.mask === 'documents') {
      const docLength = seq / DOCUMENTS;
      const allowed = (i: number, j: number) => job.mask === 'causal-mask' ? j <= i :
          Math.floor(i / docLength) === Math.floor(j / docLength);
      const values = new Float32Array(seq * seq);
      for (let i = 0; i < seq; i++) for (let j = 0; j < seq; j++) values[i * seq + j] = allowed(i, j) ? 1 : 0;
      if (job.impl === 'naive') {
        mask = tf.tensor2d(values.map((x) => (x ? 0 : -1e9)), [seq, seq]);
      } else if (job.mask === 'causal-mask') {
        boolMask = tf.tensor2d(values, [seq, seq], 'bool');
      } else {
        segmentIds = tf.tensor2d(Int32Array.from({length: batch * seq}, (_, e) => Math.floor((e % seq) / docLength)),
                                 [batch, seq], 'int32');
      }
    } else if (job.impl === 'naive' && job.mask !== 'dense') {
      const window = job.mask === 'causal' ? [-1, 0] : job.mask === 'window' ? [WINDOW, 0] : [-1, -1];
      mask = additiveMask(makePlan({kind: job.mask === 'sparse' ? 'sparse' : 'sliding', batch, seqQ: seq, seqK: seq,
                                    heads, kvHeads: heads, headDim, scale, softcap: 0, windowLeft: window[0],
                                    windowRight: window[1], layout, hasKeyLengths: false}));
    }
    const attention = (qq: tfType.Tensor4D, kk: tfType.Tensor4D, vv: tfType.Tensor4D): tfType.Tensor4D => {
      if (job.impl === 'naive' && job.mask === 'dropout') {
        // tf.dropout(probs, rate) is probs · floor(uniform + keep) / keep: that keep mask, drawn per call.
        return tf.tidy(() => naiveAttention(qq, kk, vv, scale, null, 0, tf.div(
            tf.floor(tf.add(tf.randomUniform([batch, heads, seq, seq]), 1 - DROPOUT_RATE)), 1 - DROPOUT_RATE)));
      }
      if (job.impl === 'naive') return naiveAttention(qq, kk, vv, scale, bias ?? mask);
      switch (job.mask) {
        case 'dense': return lib.flashAttention(qq, kk, vv) as tfType.Tensor4D;
        case 'causal': return lib.flashAttention(qq, kk, vv, {causal: true}) as tfType.Tensor4D;
        case 'window': return lib.slidingWindowAttention(qq, kk, vv, {windowSize: WINDOW}) as tfType.Tensor4D;
        case 'sparse': return lib.sparseAttention(qq, kk, vv, {layout: layout!}) as tfType.Tensor4D;
        case 'causal-mask': return lib.flashAttention(qq, kk, vv, {mask: boolMask!}) as tfType.Tensor4D;
        case 'documents': return lib.flashAttention(qq, kk, vv, {segmentIds: segmentIds!}) as tfType.Tensor4D;
        case 'bias': return lib.flashAttention(qq, kk, vv, {bias: bias!}) as tfType.Tensor4D;
        case 'alibi': return lib.flashAttention(qq, kk, vv, {alibiSlopes: slopes}) as tfType.Tensor4D;
        case 'dropout':
          return lib.flashAttention(qq, kk, vv, {dropout: {rate: DROPOUT_RATE, seed: 7}}) as tfType.Tensor4D;
      }
    };
    const once = async () => {
      const t0 = performance.now();
      if (job.mode === 'forward') {
        const out = attention(q, k, v);
        await out.data();
        out.dispose();
      } else {
        const grads = tf.grads((a: tfType.Tensor, b: tfType.Tensor, c: tfType.Tensor) =>
            tf.sum(tf.mul(attention(a as tfType.Tensor4D, b as tfType.Tensor4D, c as tfType.Tensor4D), dOut)))([q, k, v]);
        await Promise.all(grads.map((g) => g.data()));
        grads.forEach((g) => g.dispose());
      }
      return performance.now() - t0;
    };
    if (!job.noWarmup) await once();  // warm-up: shader compilation, schedule upload
    for (let i = 0; i < job.reps; i++) runsMs.push(await once());
    const sorted = [...runsMs].sort((a, b) => a - b);
    return {medianMs: sorted[Math.floor(sorted.length / 2)], runsMs};
  } catch (e) {
    return {medianMs: null, runsMs, error: String((e as Error).message ?? e).slice(0, 300)};
  } finally {
    [q, k, v, dOut].forEach((t) => t.dispose());
    [mask, boolMask, segmentIds, bias].forEach((t) => t?.dispose());
  }
}

export {setup};

/**
 * Multiple-render-target probe (raw WebGL2 on its own canvas, no tfjs): the score matmul S = Q·Kᵀ of one head
 * (seq × headDim 64) drawn two ways with the same multiply-adds — 'single': one RGBA32F output per fragment, a 2 × 2
 * block of S (what ScoresProgram and tfjs's packed matMul do: 64 texel fetches per 4 scores); 'mrt': 8 outputs per
 * fragment (gl.drawBuffers), a 4 × 8 block of S (192 fetches per 32 scores). run() returns the ms of one draw plus a
 * 1-texel readback (to wait for it); maxDifference() the largest |difference| between the two results.
 */
export interface MrtProbe {
  maxDrawBuffers: number;
  run(kind: 'single' | 'mrt'): number;
  maxDifference(): number;
}

let probe: MrtProbe | null = null;

export function mrtProbeSetup(seq: number): number {
  const canvas = document.createElement('canvas');
  const gl = canvas.getContext('webgl2')!;
  if (gl.getExtension('EXT_color_buffer_float') == null) throw new Error('no EXT_color_buffer_float');
  const maxDrawBuffers = gl.getParameter(gl.MAX_DRAW_BUFFERS) as number;
  const D2 = 32;  // texels per row pair (headDim 64)
  const texture = (width: number, height: number, data: Float32Array | null) => {
    const t = gl.createTexture()!;
    gl.bindTexture(gl.TEXTURE_2D, t);
    gl.texStorage2D(gl.TEXTURE_2D, 1, gl.RGBA32F, width, height);
    if (data) gl.texSubImage2D(gl.TEXTURE_2D, 0, 0, 0, width, height, gl.RGBA, gl.FLOAT, data);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MIN_FILTER, gl.NEAREST);
    gl.texParameteri(gl.TEXTURE_2D, gl.TEXTURE_MAG_FILTER, gl.NEAREST);
    return t;
  };
  const random = (n: number) => Float32Array.from({length: n}, () => Math.random() * 2 - 1);
  const q = texture(D2, seq / 2, random(D2 * seq / 2 * 4)), k = texture(D2, seq / 2, random(D2 * seq / 2 * 4));
  const compile = (type: number, source: string) => {
    const s = gl.createShader(type)!;
    gl.shaderSource(s, source);
    gl.compileShader(s);
    if (!gl.getShaderParameter(s, gl.COMPILE_STATUS)) throw new Error(String(gl.getShaderInfoLog(s)));
    return s;
  };
  const vertex = compile(gl.VERTEX_SHADER, `#version 300 es
    void main() {
      gl_Position = vec4(float((gl_VertexID & 1) * 4 - 1), float((gl_VertexID >> 1) * 4 - 1), 0.0, 1.0);
    }`);
  const program = (body: string, outputs: number) => {
    const p = gl.createProgram()!;
    gl.attachShader(p, vertex);
    gl.attachShader(p, compile(gl.FRAGMENT_SHADER, `#version 300 es
      precision highp float;
      precision highp int;
      precision highp sampler2D;
      uniform sampler2D q;
      uniform sampler2D k;
      ${Array.from({length: outputs}, (_, i) => `layout(location = ${i}) out vec4 out${i};`).join('\n')}
      void main() {
        ivec2 xy = ivec2(gl_FragCoord.xy);
        ${body}
      }`));
    gl.linkProgram(p);
    if (!gl.getProgramParameter(p, gl.LINK_STATUS)) throw new Error(String(gl.getProgramInfoLog(p)));
    return p;
  };
  const unroll = (n: number, f: (i: number) => string) => Array.from({length: n}, (_, i) => f(i)).join('\n');
  const block = (a: string, b: string) => `${a}.xxzz * ${b}.xzxz + ${a}.yyww * ${b}.ywyw`;
  // single: x = key pair, y = row pair.
  const single = program(`
    vec4 acc = vec4(0.0), a, b;
    ${unroll(D2, (c) => `a = texelFetch(q, ivec2(${c}, xy.y), 0); b = texelFetch(k, ivec2(${c}, xy.x), 0);
    acc += ${block('a', 'b')};`)}
    out0 = acc;`, 1);
  // mrt: x = group of 4 key pairs, y = group of 2 row pairs; output 4 * rowPair + keyPair.
  const mrt = program(`
    ${unroll(8, (o) => `vec4 s${o} = vec4(0.0);`)}
    vec4 a0, a1, b0, b1, b2, b3;
    ${unroll(D2, (c) => `
    a0 = texelFetch(q, ivec2(${c}, 2 * xy.y), 0); a1 = texelFetch(q, ivec2(${c}, 2 * xy.y + 1), 0);
    ${unroll(4, (n) => `b${n} = texelFetch(k, ivec2(${c}, 4 * xy.x + ${n}), 0);`)}
    ${unroll(8, (o) => `s${o} += ${block(`a${o >> 2}`, `b${o & 3}`)};`)}`)}
    ${unroll(8, (o) => `out${o} = s${o};`)}`, 8);
  const singleOut = texture(seq / 2, seq / 2, null);
  const mrtOut = Array.from({length: 8}, () => texture(seq / 8, seq / 4, null));
  const framebuffer = (targets: WebGLTexture[]) => {
    const f = gl.createFramebuffer()!;
    gl.bindFramebuffer(gl.FRAMEBUFFER, f);
    targets.forEach((t, i) => gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0 + i, gl.TEXTURE_2D, t, 0));
    gl.drawBuffers(targets.map((_, i) => gl.COLOR_ATTACHMENT0 + i));
    if (gl.checkFramebufferStatus(gl.FRAMEBUFFER) !== gl.FRAMEBUFFER_COMPLETE) throw new Error('framebuffer incomplete');
    return f;
  };
  const singleFb = framebuffer([singleOut]), mrtFb = framebuffer(mrtOut);
  gl.bindVertexArray(gl.createVertexArray());
  const draw = (kind: 'single' | 'mrt') => {
    const p = kind === 'single' ? single : mrt;
    gl.useProgram(p);
    gl.activeTexture(gl.TEXTURE0);
    gl.bindTexture(gl.TEXTURE_2D, q);
    gl.uniform1i(gl.getUniformLocation(p, 'q'), 0);
    gl.activeTexture(gl.TEXTURE1);
    gl.bindTexture(gl.TEXTURE_2D, k);
    gl.uniform1i(gl.getUniformLocation(p, 'k'), 1);
    gl.bindFramebuffer(gl.FRAMEBUFFER, kind === 'single' ? singleFb : mrtFb);
    if (kind === 'single') gl.viewport(0, 0, seq / 2, seq / 2);
    else gl.viewport(0, 0, seq / 8, seq / 4);
    gl.drawArrays(gl.TRIANGLES, 0, 3);
  };
  const read = (fb: WebGLFramebuffer, attachment: number, width: number, height: number) => {
    gl.bindFramebuffer(gl.READ_FRAMEBUFFER, fb);
    gl.readBuffer(gl.COLOR_ATTACHMENT0 + attachment);
    const out = new Float32Array(width * height * 4);
    gl.readPixels(0, 0, width, height, gl.RGBA, gl.FLOAT, out);
    return out;
  };
  probe = {
    maxDrawBuffers,
    run(kind) {
      const t0 = performance.now();
      draw(kind);
      read(kind === 'single' ? singleFb : mrtFb, 0, 1, 1);
      return performance.now() - t0;
    },
    maxDifference() {
      draw('single');
      draw('mrt');
      const s = read(singleFb, 0, seq / 2, seq / 2);
      let worst = 0;
      for (let o = 0; o < 8; o++) {
        const m = read(mrtFb, o, seq / 8, seq / 4);
        for (let y = 0; y < seq / 4; y++) {
          for (let x = 0; x < seq / 8; x++) {
            const rowPair = 2 * y + (o >> 2), keyPair = 4 * x + (o & 3);
            for (let e = 0; e < 4; e++) {
              worst = Math.max(worst, Math.abs(m[(y * seq / 8 + x) * 4 + e] - s[(rowPair * seq / 2 + keyPair) * 4 + e]));
            }
          }
        }
      }
      return worst;
    },
  };
  return maxDrawBuffers;
}

export function mrtProbeRun(kind: 'single' | 'mrt'): number {
  return probe!.run(kind);
}

export function mrtProbeCheck(): number {
  return probe!.maxDifference();
}
