/**
 * Executes an AttentionPlan's backward pass on the webgl backend (WebGL2), FlashAttention-2 style: from O, lse and
 * D = rowsum(dO∘O) − dLse, per chunk of query tiles recompute P (ScoresProgram), form dS (ScoreGradProgram), then
 * dQ += dS·K (rows), dK += dSᵀ·Q and dV += Pᵀ·dO (keys, summing a GQA group's query heads).
 */
import type {TensorInfo} from '@tensorflow/tfjs-core';
import type {MathBackendWebGL} from '@tensorflow/tfjs-backend-webgl';
import type {AttentionGradInputs} from '../attention_kernel_func.js';
import {AttentionPlan} from '../../src/plan/plan.js';
import {attentionGeometry, disposeAll, packRows, runProgram, unpackRows} from './attention_geometry.js';
import {KeyAccumulateProgram} from './key_accumulation_gpu.js';
import {PackRowStatsProgram} from './row_packing_gpu.js';
import {RowDeltaProgram} from './row_statistics_gpu.js';
import {ScoreGradProgram} from './score_grad_gpu.js';
import {ScoresProgram} from './scores_gpu.js';
import {RowAccumulateProgram} from './value_accumulation_gpu.js';

/** [dq [batch, seqQ, heads, D], dk, dv [batch, seqK, kvHeads, D]] of `plan`. */
export function runAttentionBackward(
    backend: MathBackendWebGL, plan: AttentionPlan, inputs: AttentionGradInputs): TensorInfo[] {
  const {q, k, v, output, lse, dOutput, dLse, keyLengths} = inputs;
  const g = attentionGeometry(backend, plan);
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
                             [qRows, kRows, lseQuads, g.table.tensor, keyLengths], chunk.tiles);
    const dScores = runProgram(
        backend,
        new ScoreGradProgram(chunk.tiles.shape, g.variant,
                             {...c, outWidth: chunk.tiles.width, dOWidth: g.queryRows.width, vWidth: g.keyRows.width}),
        [dORows, vRows, probs, delta, lseQuads, g.table.tensor, keyLengths], chunk.tiles);

    const newDq = runProgram(
        backend,
        new RowAccumulateProgram(g.queryRows.shape, g.variant, dq != null,
                                 {...c, outWidth: g.queryRows.width, valuesWidth: g.keyRows.width}),
        [dScores, kRows, g.table.tensor, keyLengths, ...(dq != null ? [dq] : [])], g.queryRows);
    const keySide = (tiles: TensorInfo, rows: TensorInfo, previous: TensorInfo|null) => runProgram(
        backend,
        new KeyAccumulateProgram(g.keyRows.shape, g.variant, previous != null,
                                 {...c, outWidth: g.keyRows.width, rowsWidth: g.queryRows.width}),
        [tiles, rows, g.table.tensor, keyLengths, ...(previous != null ? [previous] : [])], g.keyRows);
    const newDk = keySide(dScores, qRows, dk);
    const newDv = keySide(probs, dORows, dv);
    disposeAll(backend, [probs, dScores, dq, dk, dv]);
    [dq, dk, dv] = [newDq, newDk, newDv];
  }

  const result = [
    unpackRows(backend, g, dq!, plan.seqQ, g.seqQPad, plan.heads, g.queryRows),
    unpackRows(backend, g, dk!, plan.seqK, g.seqKPad, plan.kvHeads, g.keyRows),
    unpackRows(backend, g, dv!, plan.seqK, g.seqKPad, plan.kvHeads, g.keyRows),
  ];
  disposeAll(backend, [qRows, dORows, kRows, vRows, lseQuads, delta, dq, dk, dv]);
  return result;
}
