/**
 * Small element-parallel programs of the backward executor (attention_backward.ts): 256 invocations per workgroup,
 * element e = (wg.y · width + wg.x) · 256 + lid over n elements (flatDispatch there).
 */
import type {MultiOutputProgram} from './program_runner.js';

function elementwiseMain(body: string): string {
  return `
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
  let e = (i32(wg.y) * uniforms.width + i32(wg.x)) * 256 + i32(lid);
  if (e < uniforms.n) {
${body}
  }
}`;
}

/** Splits [dk | dv] (written as one output when mask and bias take two of the 8 bindings) into dk and dv. */
export class SplitProgram implements MultiOutputProgram {
  outputNames = ['first', 'second'];
  outputTypes = ['f32', 'f32'];
  variableNames = ['both'];
  variableTypes = ['f32'];
  uniformFields: MultiOutputProgram['uniformFields'] = [['n', 'i32'], ['width', 'i32']];
  shaderKey = 'attentionGradSplit';
  getUserCode(): string {
    return elementwiseMain('    first[e] = both[e];\n    second[e] = both[uniforms.n + e];');
  }
}

/** Zeros (dBias where the dQ pass writes it directly: tiles it skips stay 0). */
export class FillZeroProgram implements MultiOutputProgram {
  outputNames = ['x'];
  outputTypes = ['f32'];
  variableNames: string[] = [];
  variableTypes: string[] = [];
  uniformFields: MultiOutputProgram['uniformFields'] = [['n', 'i32'], ['width', 'i32']];
  shaderKey = 'attentionFillZero';
  getUserCode(): string {
    return elementwiseMain('    x[e] = 0.0;');
  }
}
