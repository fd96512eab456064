/**
 * Draws a fragment program with up to 8 outputs (WebGL2 multiple render targets) on tfjs's WebGL2 context.
 *
 * Why: a tfjs GPGPUProgram writes one RGBA texel per fragment (its shader header declares a single `outputColor`),
 * and the attention's score pass is bound by texel fetches: a fragment that writes 8 texels (4 rows × 8 keys of S)
 * fetches 6 texels per score instead of 16 (measured 1.8× faster on SwiftShader, 2× on llvmpipe:
 * `npx tsx bench/webgl.ts --probe mrt`). runWebGLProgram cannot draw such a program, so this module does what it
 * does for one: compile (cached per context and source), allocate the outputs as tfjs tensors, bind the inputs,
 * draw a full-screen triangle into a framebuffer with every output attached, and leave tfjs's framebuffer bound.
 *
 * Inputs are texel arrays read with texelFetch (see texel_layout.ts); they must already be packed textures
 * (outputs of attention programs, or CPU data this module uploads packed). Outputs are packed [2L, 2W] texel arrays.
 */
import {env} from '@tensorflow/tfjs-core';
import type {TensorInfo} from '@tensorflow/tfjs-core';
import type {MathBackendWebGL} from '@tensorflow/tfjs-backend-webgl';
import {assertTexelLayout, TexelLayout} from './texel_layout.js';

/** The outputs of one draw, at most. */
export const MAX_TARGETS = 8;

/**
 * tfjs flag (default true): false makes the attention kernels draw one output per program, as they do on contexts
 * without eight float render targets; `tf.env().set('ATTENTION_WEBGL_MULTI_TARGET', false)` (the tests keep that
 * path covered with it).
 */
export const MULTI_TARGET_FLAG = 'ATTENTION_WEBGL_MULTI_TARGET';
env().registerFlag(MULTI_TARGET_FLAG, () => true);

/** A declared uniform: int or float (tfjs's customUniforms entries are of this shape). */
export interface Uniform {
  name: string;
  type: 'int' | 'float';
}

/** The fields of a program with several outputs (attention_program.ts's BlockProgram; named as tfjs's GPGPUProgram). */
export interface MultiTargetProgram {
  /** Sampler names, in the order of the inputs given to runMultiTarget. */
  variableNames: string[];
  /** int / float uniforms, and their values for this draw (one per uniform, in the same order). */
  customUniforms: Uniform[];
  uniformValues: number[][];
  /** GLSL after the declarations: helpers and main(), writing out0 … out<targets - 1>. */
  userCode: string;
  targets: number;
  /**
   * Draw only part of the output: a vertex shader main() (it sees the same samplers and uniforms) placing `vertices`
   * vertices of counter-clockwise triangles (tfjs culls back faces) in clip space. Default: one triangle over all.
   */
  cover?: {vertices: number, body: string};
}

interface Compiled {
  program: WebGLProgram;
  locations: Map<string, WebGLUniformLocation | null>;
}

interface ContextState {
  /** The full-screen triangle. */
  vertexShader: WebGLShader;
  vertexArray: WebGLVertexArrayObject;
  programs: Map<string, Compiled>;
}

const contexts = new WeakMap<WebGL2RenderingContext, ContextState>();

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function gpgpuOf(backend: MathBackendWebGL): any {
  return (backend as unknown as {gpgpu: unknown}).gpgpu;
}

/** Whether this backend's context can draw `targets` float outputs at once (WebGL2 with float render targets). */
export function supportsMultiTarget(backend: MathBackendWebGL, targets = MAX_TARGETS): boolean {
  const gl = gpgpuOf(backend).gl as WebGL2RenderingContext;
  if (typeof WebGL2RenderingContext === 'undefined' || !(gl instanceof WebGL2RenderingContext)) return false;
  if (!env().getBool(MULTI_TARGET_FLAG) || gl.getExtension('EXT_color_buffer_float') == null) return false;
  return (gl.getParameter(gl.MAX_DRAW_BUFFERS) as number) >= targets &&
         (gl.getParameter(gl.MAX_COLOR_ATTACHMENTS) as number) >= targets;
}

function compile(gl: WebGL2RenderingContext, type: number, source: string): WebGLShader {
  const shader = gl.createShader(type)!;
  gl.shaderSource(shader, source);
  gl.compileShader(shader);
  if (!gl.getShaderParameter(shader, gl.COMPILE_STATUS)) {
    throw new Error(`webgl attention: a multi-target shader failed to compile: ${gl.getShaderInfoLog(shader)}`);
  }
  return shader;
}

function contextState(gl: WebGL2RenderingContext): ContextState {
  let state = contexts.get(gl);
  if (state == null) {
    // A full-screen triangle from gl_VertexID: no vertex buffers.
    const vertexShader = compile(gl, gl.VERTEX_SHADER, `#version 300 es
      void main() {
        gl_Position = vec4(float((gl_VertexID & 1) * 4 - 1), float((gl_VertexID >> 1) * 4 - 1), 0.0, 1.0);
      }`);
    state = {vertexShader, vertexArray: gl.createVertexArray()!, programs: new Map()};
    contexts.set(gl, state);
  }
  return state;
}

function programFor(gl: WebGL2RenderingContext, p: MultiTargetProgram): Compiled {
  const state = contextState(gl);
  // Both stages declare the same samplers and uniforms with the same precisions (the linker demands it).
  const declarations = `#version 300 es
    precision highp float;
    precision highp int;
    precision highp sampler2D;
    ${p.variableNames.map((s) => `uniform sampler2D ${s};`).join('\n')}
    ${p.customUniforms.map((u) => `uniform ${u.type} ${u.name};`).join('\n')}`;
  const source = `${declarations}
    ${Array.from({length: p.targets}, (_, i) => `layout(location = ${i}) out vec4 out${i};`).join('\n')}
    ${p.userCode}`;
  const vertexSource = p.cover != null ? `${declarations}\n${p.cover.body}` : null;
  const key = vertexSource != null ? `${source}\n// vertex:\n${vertexSource}` : source;
  let compiled = state.programs.get(key);
  if (compiled == null) {
    const program = gl.createProgram()!;
    gl.attachShader(program, vertexSource != null ? compile(gl, gl.VERTEX_SHADER, vertexSource) : state.vertexShader);
    gl.attachShader(program, compile(gl, gl.FRAGMENT_SHADER, source));
    gl.linkProgram(program);
    if (!gl.getProgramParameter(program, gl.LINK_STATUS)) {
      throw new Error(`webgl attention: a multi-target program failed to link: ${gl.getProgramInfoLog(program)}`);
    }
    const locations = new Map<string, WebGLUniformLocation | null>();
    for (const name of [...p.variableNames, ...p.customUniforms.map((u) => u.name)]) {
      locations.set(name, gl.getUniformLocation(program, name));
    }
    compiled = {program, locations};
    state.programs.set(key, compiled);
  }
  return compiled;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
function textureOf(backend: MathBackendWebGL, info: TensorInfo): WebGLTexture {
  const data = backend.texData.get(info.dataId);
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const texture = data.texture as any;
  return (texture?.texture ?? texture) as WebGLTexture;
}

/**
 * Runs `p` over a `layout`-shaped grid of fragments; returns its `targets` outputs (each a `layout` texel array): new
 * tensors, or `into` (drawn over: fragments the program discards keep their texels).
 */
export function runMultiTarget(
    backend: MathBackendWebGL, p: MultiTargetProgram, inputs: TensorInfo[], layout: TexelLayout,
    into?: TensorInfo[]): TensorInfo[] {
  const gpgpu = gpgpuOf(backend);
  const gl = gpgpu.gl as WebGL2RenderingContext;
  for (const input of inputs) {
    const data = backend.texData.get(input.dataId);
    if (data.texture == null) data.isPacked = true;  // CPU data (the schedule table, keyLengths): upload packed
    backend.uploadToGPU(input.dataId);
    if (!data.isPacked) throw new Error('webgl attention: a multi-target program input is not a packed texture');
  }
  if (into != null && (into.length !== p.targets || into.some((info) => inputs.includes(info)))) {
    throw new Error(`webgl attention: a multi-target program draws into ${p.targets} tensors that it does not read`);
  }
  const outputs = into ?? Array.from({length: p.targets}, () => {
    const info = backend.makeTensorInfo(layout.shape, 'float32');
    backend.texData.get(info.dataId).isPacked = true;
    backend.uploadToGPU(info.dataId);
    return info;
  });
  for (const info of outputs) assertTexelLayout(backend, info, layout);
  if (p.variableNames.length > (gl.getParameter(gl.MAX_TEXTURE_IMAGE_UNITS) as number)) {
    throw new Error(`webgl attention: a multi-target program reads ${p.variableNames.length} textures, more than ` +
                    'this context binds to a fragment shader');
  }
  const {program, locations} = programFor(gl, p);
  const state = contextState(gl);

  const framebuffer = gl.createFramebuffer()!;
  const scissor = gl.isEnabled(gl.SCISSOR_TEST);
  try {
    gl.bindFramebuffer(gl.FRAMEBUFFER, framebuffer);
    outputs.forEach((info, i) => gl.framebufferTexture2D(gl.FRAMEBUFFER, gl.COLOR_ATTACHMENT0 + i, gl.TEXTURE_2D,
                                                          textureOf(backend, info), 0));
    gl.drawBuffers(outputs.map((_, i) => gl.COLOR_ATTACHMENT0 + i));
    if (gl.checkFramebufferStatus(gl.FRAMEBUFFER) !== gl.FRAMEBUFFER_COMPLETE) {
      throw new Error('webgl attention: a multi-target framebuffer is incomplete');
    }
    gl.useProgram(program);
    gl.bindVertexArray(state.vertexArray);
    inputs.forEach((input, i) => {
      gl.activeTexture(gl.TEXTURE0 + i);
      gl.bindTexture(gl.TEXTURE_2D, textureOf(backend, input));
      gl.uniform1i(locations.get(p.variableNames[i])!, i);
    });
    p.customUniforms.forEach((u, i) => {
      const location = locations.get(u.name);
      if (location == null) return;  // optimized out
      if (u.type === 'int') gl.uniform1i(location, p.uniformValues[i][0]);
      else gl.uniform1f(location, p.uniformValues[i][0]);
    });
    gl.disable(gl.SCISSOR_TEST);
    gl.viewport(0, 0, layout.width, layout.lines);
    gl.drawArrays(gl.TRIANGLES, 0, p.cover?.vertices ?? 3);
  } finally {
    // Back to tfjs's state: its framebuffer (it re-attaches its output and sets program, VAO, viewport and textures
    // before each of its draws).
    if (scissor) gl.enable(gl.SCISSOR_TEST);
    gl.bindFramebuffer(gl.FRAMEBUFFER, gpgpu.framebuffer);
    gl.deleteFramebuffer(framebuffer);
    gl.bindVertexArray(null);
    if (gpgpu.program != null) gl.useProgram(gpgpu.program);
  }
  return outputs;
}
