/**
 * What every webgl attention program shares: the tile size, the compile-time variant, the uniforms, and the two
 * program bases — AttentionProgram (a tfjs GPGPUProgram: one RGBA output, run by backend.runWebGLProgram) and
 * BlockProgram (up to eight outputs, run by multi_target.ts). Both are classes whose fields say what the shader
 * needs (variableNames, customUniforms and their values) and whose userCode is the shader body; the programs
 * themselves live in the *_gpu.ts files, one per family:
 *   row_packing_gpu.ts         q/k/v/lse into row and quad buffers, and back out
 *   scores_gpu.ts              the scores t (or the backward's P), one tile buffer or eight block targets
 *   row_statistics_gpu.ts      lse (online logsumexp over a chunk's scores) and the backward's D
 *   probabilities_gpu.ts       P = exp(t − lse)
 *   value_accumulation_gpu.ts  O = P·V (and dQ = dS·K), and the merge of a chunk's O into the O so far
 *   key_tables_gpu.ts          the per-batch key limits and per-key-tile NaN/Inf flags of the eight-target path
 *   score_grad_gpu.ts          dS
 *   key_accumulation_gpu.ts    dK = dSᵀ·Q, dV = Pᵀ·dO
 *   bias_grad_gpu.ts           dBias (the gradient of the final scores, summed over the bias's broadcast axes)
 *   option_packing_gpu.ts      the option inputs (mask, bias, offsets, slopes, segment ids) into texel arrays, and
 *                              the per-tile summaries (mask states, id ranges) that let the passes skip tiles
 * The options of issues 16–18 (offsets, mask, bias, ALiBi, segments, dropout) as a whole: attention_options.ts.
 * Their GLSL building blocks: glsl_helpers.ts (and philox_glsl.ts for dropout). Texel layouts: texel_layout.ts.
 *
 * Loop bounds: Mesa's llvmpipe silently ends a loop after 65,535 iterations — counted over every entry into the loop
 * within one fragment, so nesting does not help. Loops over channels and over the rows/keys of a tile are therefore
 * unrolled when the shader is generated, and a draw covers at most MAX_SLOTS_PER_DRAW key tiles per query tile
 * (the executors split longer rows into slot ranges and merge them: lse by logaddexp, O/dQ/dK/dV by addition), so
 * the longest remaining loop runs at most MAX_SLOTS_PER_DRAW * TILE / 2 times.
 */
import type {GPGPUProgram} from '@tensorflow/tfjs-backend-webgl';
import type {OptionVariant} from './attention_options.js';
import type {MultiTargetProgram, Uniform} from './multi_target.js';

/** Query rows per tile and keys per tile (the schedule's block size on webgl). */
export const TILE = 32;
/** Key tiles per query tile in one draw (keeps every loop far below llvmpipe's 65,535 iterations). */
export const MAX_SLOTS_PER_DRAW = 1024;

export type UniformValues = Record<string, number>;

const FLOAT_UNIFORMS = new Set(['scale', 'softcap', 'keepScale']);

/** What the plan-level GLSL helpers read (declared by every program that masks or walks the schedule). */
export const PLAN_UNIFORMS = [
  'seqQ', 'seqK', 'seqQPad', 'seqKPad', 'heads', 'kvHeads', 'groupSize', 'diagOffset', 'windowLeft', 'windowRight',
  'numQueryTiles', 'numKeyTiles', 'maskHeads', 'layoutBlock', 'layoutQueryBlocks', 'layoutKeyBlocks', 'tableWidth',
  'rowSlotBase', 'colHeaderBase', 'colEntryBase', 'layoutBase', 'scale', 'softcap',
];

/** Compile-time variants of a program (part of its shader key). */
export interface AttentionVariant {
  /** Head dimension in texels (channel pairs). */
  headTexels: number;
  hasLayout: boolean;
  hasKeyLengths: boolean;
  hasSoftcap: boolean;
  /** The plan's mask / bias / ALiBi / segments / offsets / dropout options (attention_options.ts); absent: none. */
  options?: OptionVariant;
}

/** Score block outputs: target 4·ρ + n holds row pair 2g + ρ × key pair 4·kg + n of fragment (g, slot, kg). */
export const BLOCK_TARGETS = 8;

/**
 * Where the score / probability blocks of a chunk live (fragment = 4 rows × 8 keys, eight targets). Each query tile
 * of the chunk owns blockLinesPerTile lines; a line holds blockSlotsPerLine slots; a slot is a run of TILE fragments
 * (group g = 0 … 7 of 4 rows, then kg = 0 … 3 of 8 keys). So the slots a query tile visits are a prefix of its lines:
 * one or two rectangles, and the draws cover only those (blockCoverVertices) — causal's empty slots, half of a dense
 * chunk, are never shaded (an empty fragment that only checked the schedule cost ~half a full one on SwiftShader).
 * Regions outside the rectangles stay unwritten and are never read.
 */
export const BLOCK_LAYOUT_UNIFORMS = ['blockSlotsPerLine', 'blockLinesPerTile'];

/** Sampler names of the eight block targets, in target order. */
export function blockNames(prefix = 'scores'): string[] {
  return Array.from({length: BLOCK_TARGETS}, (_, o) => `${prefix}${o}`);
}

/** Channel groups of the eight-target output blocks: 4 channel pairs (8 channels) per fragment. */
export function channelGroups(headTexels: number): number {
  return Math.ceil(headTexels / 4);
}

/** Declared uniforms and their values for this draw: the part both program bases share. */
abstract class ProgramWithUniforms {
  customUniforms: Uniform[] = [];
  /** One value per uniform, in customUniforms order (tfjs's customUniformValues shape). */
  uniformValues: number[][] = [];

  /**
   * Declares the uniforms `names` (float for scale / softcap, else int) with their values; throws if one is missing,
   * so a program never runs with an unset uniform.
   */
  protected declareUniforms(names: string[], values: UniformValues): void {
    for (const name of names) {
      const value = values[name];
      if (value === undefined || Number.isNaN(value)) throw new Error(`webgl attention: uniform ${name} not set`);
      this.customUniforms.push({name, type: FLOAT_UNIFORMS.has(name) ? 'float' : 'int'});
      this.uniformValues.push([value]);
    }
  }
}

/**
 * Base of the one-output attention programs: tfjs GPGPUProgram fields plus the uniform values of this draw.
 *
 * Texel-array programs read their inputs with texelFetch and write [2L, 2W] packed outputs, so they use shape
 * uniforms (one compiled shader serves every size). Programs that read user tensors through tfjs's generated getters
 * (or write user-facing shapes) turn them off: with shape uniforms on, tfjs 4.22 can reuse a shader compiled for an
 * input whose texture matched its shape for an input whose texture was squarified (e.g. more rows than
 * MAX_TEXTURE_SIZE), and read garbage.
 */
export abstract class AttentionProgram extends ProgramWithUniforms implements GPGPUProgram {
  abstract variableNames: string[];
  outputShape: number[];
  userCode = '';
  packedInputs = true;
  packedOutput = true;
  enableShapeUniforms = true;

  constructor(outputShape: number[]) {
    super();
    this.outputShape = outputShape;
  }
}

/**
 * Base of the multiple-render-target programs (multi_target.ts): `targets` outputs out0 … out<targets - 1>, all of
 * one texel layout, inputs read with texelFetch from the samplers `variableNames`; `cover` optionally limits the draw
 * to part of the output (a vertex stage, see MultiTargetProgram).
 */
export abstract class BlockProgram extends ProgramWithUniforms implements MultiTargetProgram {
  abstract variableNames: string[];
  userCode = '';
  targets = BLOCK_TARGETS;
  cover?: {vertices: number, body: string};
}
