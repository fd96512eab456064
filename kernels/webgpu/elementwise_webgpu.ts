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

/**
 * The split-dQ backward's last pass, over the batches of one dispatch: dq = scale · Σ_split accumulator[split]
 * (splits summed in ascending order, so the result is the same run to run), and dk, dv copied out of `work`, whose
 * batches are laid out [nsplits dQ accumulators | dK | dV] (attention_backward.ts). e runs over batches ×
 * max(qPerBatch, kPerBatch).
 */
export class DqReduceProgram implements MultiOutputProgram {
  outputNames = ['dq', 'dk', 'dv'];
  outputTypes = ['f32', 'f32', 'f32'];
  variableNames = ['work'];
  variableTypes = ['f32'];
  uniformFields: MultiOutputProgram['uniformFields'] = [
    ['n', 'i32'], ['width', 'i32'], ['nsplits', 'i32'], ['qPerBatch', 'i32'], ['kPerBatch', 'i32'],
    ['workStride', 'i32'], ['workBase', 'i32'], ['dqBase', 'i32'], ['dkBase', 'i32'], ['dvBase', 'i32'],
    ['scale', 'f32'],
  ];
  shaderKey = 'attentionGradDqReduce';
  getUserCode(): string {
    return elementwiseMain(`
    let per = max(uniforms.qPerBatch, uniforms.kPerBatch);
    let b = e / per;
    let idx = e - b * per;
    let w = uniforms.workBase + b * uniforms.workStride;
    if (idx < uniforms.qPerBatch) {
      var sum = 0.0;
      for (var split = 0; split < uniforms.nsplits; split++) {
        sum = sum + work[w + split * uniforms.qPerBatch + idx];
      }
      dq[uniforms.dqBase + b * uniforms.qPerBatch + idx] = sum * uniforms.scale;
    }
    if (idx < uniforms.kPerBatch) {
      let dkAt = w + uniforms.nsplits * uniforms.qPerBatch + idx;
      dk[uniforms.dkBase + b * uniforms.kPerBatch + idx] = work[dkAt];
      dv[uniforms.dvBase + b * uniforms.kPerBatch + idx] = work[dkAt + uniforms.kPerBatch];
    }`);
  }
}
