/**
 * The cpu forward's decode grouping (kernels/cpu/attention_forward.ts, issue 18): for seqQ ≤ 16 with GQA, the query
 * heads of a kv head are stacked into one tile so each K/V element is read once per kv head. Decode-shaped cases
 * against the float64 reference (forward and gradients, the cpu row of test/tolerances.ts), and which plans stack.
 */
import {expect} from 'chai';
import './setup_node.js';
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import * as lib from '../src/index.js';
import {stacksQueryHeads} from '../kernels/cpu/attention_forward.js';
import {makePlan, PlanInput} from '../src/plan/plan.js';
import {getSchedule} from '../src/plan/schedule.js';
import type {AttentionCase} from './cases.js';
import {checkCase} from './check_case.js';
import {assertCaseResult, caseSeed} from './shared_runner.js';
import {TOLERANCES} from './tolerances.js';

const DECODE_CASES: AttentionCase[] = [
  {name: 'cpu decode S1 K300 causal H4/1 D64', op: 'flash', batch: 1, seqQ: 1, seqK: 300, heads: 4, kvHeads: 1,
   headDim: 64, causal: true},
  {name: 'cpu decode S7 K777 causal GQA 8/2 D32 keyLengths', op: 'flash', batch: 2, seqQ: 7, seqK: 777, heads: 8,
   kvHeads: 2, headDim: 32, causal: true, keyLengths: [500, 777], lseGrad: true},
  {name: 'cpu decode S16 K130 GQA 6/2 softcap', op: 'flash', batch: 1, seqQ: 16, seqK: 130, heads: 6, kvHeads: 2,
   headDim: 16, softcap: 3},
  {name: 'cpu decode S2 K600 sliding [40, 0] GQA 6/3 keyLengths (one empty batch)', op: 'sliding', batch: 3, seqQ: 2,
   seqK: 600, heads: 6, kvHeads: 3, headDim: 16, windowSize: [40, 0], keyLengths: [0, 333, 600]},
  {name: 'cpu decode S3 K200 queryOffsets causal GQA 4/2', op: 'flash', batch: 2, seqQ: 3, seqK: 200, heads: 4,
   kvHeads: 2, headDim: 8, causal: true, queryOffsets: [100, 197], keyLengths: [103, 200]},
  {name: 'cpu decode S4 K100 GQA 4/1 + ALiBi (not stacked)', op: 'flash', batch: 1, seqQ: 4, seqK: 100, heads: 4,
   kvHeads: 1, headDim: 8, causal: true, alibi: {}},
];

describe('cpu decode grouping (GQA heads stacked per kv head)', function() {
  this.timeout(120000);
  before(async () => {
    await tf.setBackend('cpu');
  });

  DECODE_CASES.forEach((c, index) => {
    it(c.name, async () => assertCaseResult(await checkCase(tf, lib, c, caseSeed(700 + index)), TOLERANCES.cpu, c));
  });

  it('stacks the heads of decode shapes with GQA only', () => {
    const stacks = (over: Partial<PlanInput>) => {
      const plan = makePlan({
        kind: 'flash', batch: 1, seqQ: 1, seqK: 4096, heads: 32, kvHeads: 8, headDim: 64, scale: 1, softcap: 0,
        windowLeft: -1, windowRight: 0, layout: null, hasKeyLengths: false, ...over,
      });
      // The option flags as OptionOperands derives them (bias / ALiBi: score terms; mask / segments: element-wise).
      const ops = {elementWise: plan.mask != null || plan.hasSegments, hasScoreTerms: plan.alibi != null,
                   dropout: null};
      return stacksQueryHeads(plan, {schedule: getSchedule(plan, 32, 64)}, ops);
    };
    expect(stacks({})).to.equal(true);
    expect(stacks({seqQ: 16})).to.equal(true);
    expect(stacks({seqQ: 17})).to.equal(false);
    expect(stacks({kvHeads: 32})).to.equal(false);
    expect(stacks({alibi: {batchStride: 0}})).to.equal(false);
  });
});
