/**
 * Executes an AttentionPlan's backward pass on the webgl backend (WebGL2), FlashAttention-2 style: from O, lse and
 * D = rowsum(dO∘O) − dLse, per chunk of query tiles recompute P (ScoresProgram), form dS (ScoreGradProgram), then
 * dQ += dS·K (rows), dK += dSᵀ·Q and dV += Pᵀ·dO (keys, summing a GQA group's query heads). With dropout, dV takes
 * P∘Z/(1 − rate) (DropoutTileProgram) and dS uses dP∘Z/(1 − rate); with a bias, dBias (BiasGradProgram) is the
 * gradient of the final scores summed over the bias's broadcast axes. Tiles the data hide (a mask, segment ids, per-batch
 * offsets: attention_options.ts's tileHidden) are skipped by the scores and by the dQ, dK and dV accumulations; dS
 * is not computed there either (its P is all masked).
 */
import type {TensorInfo} from '@tensorflow/tfjs-core';
import type {MathBackendWebGL} from '@tensorflow/tfjs-backend-webgl';
import type {AttentionGradInputs} from '../attention_kernel_func.js';
import {AttentionPlan} from '../../src/plan/plan.js';
import {attentionGeometry, disposeAll, packOptions, packRows, runProgram, unpackRows} from './attention_geometry.js';
import {BiasGradProgram} from './bias_grad_gpu.js';
import {DropoutTileProgram} from './probabilities_gpu.js';
import {KeyAccumulateProgram} from './key_accumulation_gpu.js';
import {PackRowStatsProgram} from './row_packing_gpu.js';
import {RowDeltaProgram} from './row_statistics_gpu.js';
import {ScoreGradProgram, scoreGradReadsOptions} from './score_grad_gpu.js';
import {ScoresProgram} from './scores_gpu.js';
import {RowAccumulateProgram} from './value_accumulation_gpu.js';

/** [dq [batch, seqQ, heads, D], dk, dv [batch, seqK, kvHeads, D]] of `plan`, and dBias when it has a bias. */
export function runAttentionBackward(
    backend: MathBackendWebGL, plan: AttentionPlan, inputs: AttentionGradInputs): TensorInfo[] {
  const {q, k, v, output, lse, dOutput, dLse, keyLengths} = inputs;
  const g = attentionGeometry(backend, plan);
  const options = packOptions(backend, g, inputs);
  const dropout = g.variant.options?.dropout === true;
  const u = g.uniforms;
  const rowCount = u.rowCount;
  const qRows = packRows(backend, g, q, plan.seqQ, g.seqQPad, plan.heads, g.queryRows);
  const dORows = packRows(backend, g, dOutput, plan.seqQ, g.seqQPad, plan.heads, g.queryRows);
  const kRows = packRows(backend, g, k, plan.seqK, g.seqKPad, plan.kvHeads, g.keyRows);
  const vRows = packRows(backend, g, v, plan.seqK, g.seqKPad, plan.kvHeads, g.keyRows);
  const statsUniforms = {outWidth: g.rowStats.width, rowCount, seq: plan.seqQ, seqPad: g.seqQPad, heads: plan.heads};
  const lseQuads = runProgram(backend, new PackRowStatsProgram(g.rowStats.shape, statsUniforms), [lse], g.rowStats);
  const delta = runProgram(backend, new RowDeltaProgram(g.rowStats.shape, {...statsUniforms, dim: plan.headDim}),
                           [output, dOutput, dLse], g.rowStats);

  let dq: TensorInfo|null = null, dk: TensorInfo|null = null, dv: TensorInfo|null = null;
  for (const chunk of g.rowRanges.flatMap((range) => range.slotRanges)) {
    const c = {...u, ...chunk.uniforms};
    const probs = runProgram(backend,
                             new ScoresProgram(chunk.tiles.shape, g.variant, {...c, outWidth: chunk.tiles.width}),
                             [qRows, kRows, lseQuads, g.table.tensor, keyLengths, ...options.scoreInputs], chunk.tiles);
    const dScores = runProgram(
        backend,
        new ScoreGradProgram(chunk.tiles.shape, g.variant,
                             {...c, outWidth: chunk.tiles.width, dOWidth: g.queryRows.width, vWidth: g.keyRows.width}),
        [dORows, vRows, probs, delta, lseQuads, g.table.tensor, keyLengths,
         ...(scoreGradReadsOptions(g.variant) ? options.inputs : [])],
        chunk.tiles);
    // dV sums the dropped-out P (the P that O used).
    const keptProbs = !dropout ? probs :
        runProgram(backend, new DropoutTileProgram(chunk.tiles.shape, g.variant, {...c, outWidth: chunk.tiles.width}),
                   [probs, g.table.tensor, keyLengths], chunk.tiles);

    const newDq = runProgram(
        backend,
        new RowAccumulateProgram(g.queryRows.shape, g.variant, dq != null,
                                 {...c, outWidth: g.queryRows.width, valuesWidth: g.keyRows.width}),
        [dScores, kRows, g.table.tensor, keyLengths, ...(dq != null ? [dq] : []), ...options.tileSkipInputs],
        g.queryRows);
    const keySide = (tiles: TensorInfo, rows: TensorInfo, previous: TensorInfo|null) => runProgram(
        backend,
        new KeyAccumulateProgram(g.keyRows.shape, g.variant, previous != null,
                                 {...c, outWidth: g.keyRows.width, rowsWidth: g.queryRows.width}),
        [tiles, rows, g.table.tensor, keyLengths, ...(previous != null ? [previous] : []), ...options.tileSkipInputs],
        g.keyRows);
    const newDk = keySide(dScores, qRows, dk);
    const newDv = keySide(keptProbs, dORows, dv);
    disposeAll(backend, [probs, dScores, dq, dk, dv, ...(keptProbs !== probs ? [keptProbs] : [])]);
    [dq, dk, dv] = [newDq, newDk, newDv];
  }

  const result = [
    unpackRows(backend, g, dq!, plan.seqQ, g.seqQPad, plan.heads, g.queryRows),
    unpackRows(backend, g, dk!, plan.seqK, g.seqKPad, plan.kvHeads, g.keyRows),
    unpackRows(backend, g, dv!, plan.seqK, g.seqKPad, plan.kvHeads, g.keyRows),
  ];
  if (plan.bias != null) {
    result.push(runProgram(backend, new BiasGradProgram(plan.bias.shape as number[], g.variant,
                                                       {...u, batch: plan.batch}),
                           [qRows, kRows, dORows, vRows, lseQuads, delta, g.table.tensor, keyLengths, ...options.inputs],
                           null));
  }
  disposeAll(backend, [qRows, dORows, kRows, vRows, lseQuads, delta, dq, dk, dv, ...options.all]);
  return result;
}
