/**
 * The suite's 'ort' implementation (node webgpu worker only): ONNX Runtime Web's MultiHeadAttention on the same
 * inputs as ours, timed with the suite's timing loop, checked against our output.
 */
import {Hooks, RunResult} from '../suite/measure.js';
import {timeIt} from '../suite/timing.js';
import {loadOrtWebGPU, OrtMultiHeadAttention, OrtTensor} from './ort_webgpu.js';

export async function createOrtHook(): Promise<NonNullable<Hooks['external']>> {
  const ort = await loadOrtWebGPU();
  return async (spec, c, timing, ctx): Promise<RunResult> => {
    const run: RunResult = {...spec};
    if (spec.mode !== 'forward' || c.kvHeads !== c.heads || c.op !== 'flash') {
      return {...run, error: 'ort: only the dense forward (MultiHeadAttention) is compared'};
    }
    let mha: OrtMultiHeadAttention | null = null;
    try {
      mha = await OrtMultiHeadAttention.create(ort, c, ctx.inputs[0], ctx.inputs[1], ctx.inputs[2]);
      const first = await mha.call();
      const out = await first.getData();
      first.dispose();
      if (ctx.oursOutput != null) run.maxRelDiffVsOurs = maxRelDiff(out, ctx.oursOutput);
      const m = mha;
      run.timing = await timeIt<OrtTensor>({
        call: () => m.call(),
        sync: () => m.sync(),
        dispose: (t) => t.dispose(),
      }, timing);
    } catch (e) {
      run.error = `ort: ${(e as Error).message.split('\n')[0].slice(0, 300)}`;
    } finally {
      await mha?.release().catch(() => undefined);
    }
    return run;
  };
}

/** max |a − b| / max(max |b|, 1e-3) */
export function maxRelDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) return Infinity;
  let err = 0, ref = 1e-3;
  for (let i = 0; i < a.length; i++) {
    err = Math.max(err, Math.abs(a[i] - b[i]));
    ref = Math.max(ref, Math.abs(b[i]));
  }
  return Number.isNaN(err) ? Infinity : err / ref;
}
