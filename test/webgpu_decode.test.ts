/**
 * The webgpu split-K decode path (kernels/webgpu/attention_decode.ts) against the float64 reference: decode-shaped
 * cases (1…16 query rows, GQA groups, causal / window / keyLengths / softcap), forced onto the decode path, forward
 * and (through the tiled backward) gradients, at the webgpu row of test/tolerances.ts; plus the split choice.
 */
import {expect} from 'chai';
import './setup_node.js';
import '@tensorflow/tfjs-backend-cpu';
import * as tf from '@tensorflow/tfjs-core';
import * as lib from '../src/index.js';
import '../kernels/webgpu/register_all_webgpu_kernels.js';
import {
  chooseDecodeShape, chooseScoreLanes, chooseSplits, DecodeVariant, decodeRunsForTests, setDecodePathForTests,
  setDecodeVariantForTests, useDecodePath,
} from '../kernels/webgpu/attention_decode.js';
import {planCacheSizeForTests} from '../src/ops/run_attention.js';
import {makePlan} from '../src/plan/plan.js';
import {type AttentionCase, SPLIT_K_DECODE_CASES} from './cases.js';
import {checkCase, randomArray} from './check_case.js';
import {assertCaseResult, caseSeed} from './shared_runner.js';
import {TOLERANCES} from './tolerances.js';
import {setupWebGPU, WebGPUEnv, withGPUErrorCheck} from './webgpu_env.js';

const DECODE_CASES: AttentionCase[] = [
  ...SPLIT_K_DECODE_CASES,
  {name: 'decode S1 K257 D40 (4-aligned, odd tiles)', op: 'flash', batch: 1, seqQ: 1, seqK: 257, heads: 1, kvHeads: 1,
   headDim: 40},
  {name: 'decode S3 K400 queryOffsets per batch + keyLengths D32', op: 'flash', batch: 2, seqQ: 3, seqK: 400,
   heads: 4, kvHeads: 2, headDim: 32, causal: true, queryOffsets: [297, 390], keyLengths: [300, 400]},
  // Odd sizes and the remaining options (forward only: the backward is the tiled kernel's, checked above).
  {name: 'decode S1 K1000 causal GQA 32/8 D128 ALiBi [B, heads] tensor', op: 'flash', batch: 2, seqQ: 1, seqK: 1000,
   heads: 32, kvHeads: 8, headDim: 128, causal: true, alibi: {perBatch: true, asTensor: true}, forwardOnly: true},
  {name: 'decode S1 K1 MQA 4/1 D64', op: 'flash', batch: 1, seqQ: 1, seqK: 1, heads: 4, kvHeads: 1, headDim: 64,
   forwardOnly: true},
  {name: 'decode S2 K7 GQA 6/2 D80 softcap causal', op: 'flash', batch: 1, seqQ: 2, seqK: 7, heads: 6, kvHeads: 2,
   headDim: 80, causal: true, softcap: 4, forwardOnly: true},
  {name: 'decode S5 K77 D256 causal', op: 'flash', batch: 1, seqQ: 5, seqK: 77, heads: 2, kvHeads: 1, headDim: 256,
   causal: true, forwardOnly: true},
  {name: 'decode S1 K130 sliding [16, 0] ALiBi [heads] MQA 8/1 D128 queryOffsets tensor', op: 'sliding', batch: 2,
   seqQ: 1, seqK: 130, heads: 8, kvHeads: 1, headDim: 128, windowSize: [16, 0], alibi: {},
   queryOffsets: [60, 129], queryOffsetsTensor: true, keyLengths: [61, 130], forwardOnly: true},
];

/** The variants the device sweep compares (bench/device/decode_sweep.ts), each on a case that reaches its code. */
const VARIANT_CASES: Array<[string, DecodeVariant, AttentionCase]> = [
  ['first-session kernel (P·V on row threads, 256-key blocks)', {pvRowParts: 'rows', block: 256}, DECODE_CASES[1]],
  ['P·V in 4 row parts × 8 key parts, 256-key blocks', {pvRowParts: 4, block: 256}, DECODE_CASES[2]],
  ['P·V on every thread, every row in registers, 256-key blocks', {pvRowParts: 1, block: 256}, DECODE_CASES[0]],
  ['up to 32 rows per workgroup', {maxRows: 32}, DECODE_CASES[1]],
  ['keyLengths / queryOffsets through their buffers', {smallInputsInUniforms: false}, DECODE_CASES[5]],
];

/**
 * The split score layout and the P·V loads ahead (decode_sweep.ts `split…` / `pv4`): the two score reductions on
 * every decode case, the other settings on a case that reaches their code (forward only: these variants change the
 * forward alone; on lavapipe each new program takes about a minute to compile, so not every pair is run).
 */
const SPLIT_VARIANTS: Array<[string, DecodeVariant, AttentionCase[]]> = [
  ['split (auto lanes, subgroup adds where offered), P·V 4 ahead', {scoreLanes: 'auto', pvUnroll: 4}, DECODE_CASES],
  ['split (auto lanes) through workgroup memory', {scoreLanes: 'auto', scoreSubgroups: false}, DECODE_CASES],
  // More lanes than lavapipe's subgroups have: the lane check fails and the workgroups add through memory.
  ['split 16 lanes', {scoreLanes: 16}, [DECODE_CASES[1]]],
  ['split 2 lanes, 64-key blocks, P·V 4 ahead', {scoreLanes: 2, block: 64, pvUnroll: 4}, [DECODE_CASES[6]]],
  ['split 8 lanes, 128-key blocks, 32 rows', {scoreLanes: 8, block: 128, maxRows: 32}, [DECODE_CASES[1]]],
  ['P·V 4 ahead', {pvUnroll: 4}, [DECODE_CASES[2]]],
];

let env: WebGPUEnv | null = null;

describe('webgpu decode path (split-K)', function() {
  this.timeout(600000);
  before(async function() {
    env = await setupWebGPU();
    if (env == null) this.skip();
    setDecodePathForTests('always');
  });
  after(() => setDecodePathForTests(null));

  DECODE_CASES.forEach((c, index) => {
    it(c.name, async () => {
      await tf.setBackend('webgpu');
      const before = decodeRunsForTests();
      const r = await withGPUErrorCheck(env!.device, () => checkCase(tf, lib, c, caseSeed(900 + index)));
      expect(decodeRunsForTests(), 'the decode path ran').to.be.above(before);
      assertCaseResult(r, TOLERANCES.webgpu);
    });
  });

  VARIANT_CASES.forEach(([what, variant, c], index) => {
    it(`variant: ${what}: ${c.name}`, async () => {
      await tf.setBackend('webgpu');
      setDecodeVariantForTests(variant);
      try {
        const before = decodeRunsForTests();
        const r = await withGPUErrorCheck(env!.device, () => checkCase(tf, lib, c, caseSeed(950 + index)));
        expect(decodeRunsForTests(), 'the decode path ran').to.be.above(before);
        assertCaseResult(r, TOLERANCES.webgpu);
      } finally {
        setDecodeVariantForTests({});
      }
    });
  });

  SPLIT_VARIANTS.forEach(([what, variant, cases], v) => cases.forEach((c, index) => {
    it(`variant: ${what}: ${c.name}`, async () => {
      await tf.setBackend('webgpu');
      setDecodeVariantForTests(variant);
      try {
        const before = decodeRunsForTests();
        const r = await withGPUErrorCheck(env!.device,
            () => checkCase(tf, lib, {...c, forwardOnly: true}, caseSeed(1000 + 20 * v + index)));
        expect(decodeRunsForTests(), 'the decode path ran').to.be.above(before);
        assertCaseResult(r, TOLERANCES.webgpu);
      } finally {
        setDecodeVariantForTests({});
      }
    });
  }));

  it('split scores: the subgroup and workgroup-memory adds give the same bits', async () => {
    // Same tree of adds either way (decode_attention_webgpu.ts splitScoreCode); lavapipe offers subgroups.
    await tf.setBackend('webgpu');
    const q = tf.randomUniform([1, 1, 32, 128], -1, 1, 'float32', 1) as tf.Tensor4D;
    const k = tf.randomUniform([1, 1000, 8, 128], -1, 1, 'float32', 2) as tf.Tensor4D;
    const v = tf.randomUniform([1, 1000, 8, 128], -1, 1, 'float32', 3) as tf.Tensor4D;
    const run = async (variant: DecodeVariant) => {
      setDecodeVariantForTests(variant);
      try {
        const out = lib.flashAttention(q, k, v, {causal: true, returnLse: true});
        const values = [await out.output.data(), await out.lse.data()];
        tf.dispose([out.output, out.lse]);
        return values.map((x) => Array.from(x));
      } finally {
        setDecodeVariantForTests({});
      }
    };
    const memory = await withGPUErrorCheck(env!.device, () => run({scoreLanes: 8, scoreSubgroups: false}));
    const shuffled = await withGPUErrorCheck(env!.device, () => run({scoreLanes: 8}));
    expect(shuffled).to.deep.equal(memory);
    const unrolled = await withGPUErrorCheck(env!.device, () => run({scoreLanes: 8, pvUnroll: 4}));
    expect(unrolled).to.deep.equal(memory);
    tf.dispose([q, k, v]);
  });

  it('per-call caches (plans, decode setups, program state) give the same answers call after call', async () => {
    // Calls with different shapes, options and values in a row, on the decode path and on the tiled forward: every
    // result equals the cpu backend's, a call repeated after others is bit-identical to its first run (which built
    // the caches), and nothing leaks. Then bad input still fails with the argument's name.
    await tf.setBackend('webgpu');
    setDecodePathForTests(null);
    // Inputs made on the active backend (tensors do not move from webgpu to cpu in node: no synchronous readback).
    const rand = (shape: number[], seed: number) => tf.tensor(randomArray(shape.reduce((a, b) => a * b), seed), shape);
    const shapes = {a: [2, 1, 8, 32, 600], b: [1, 3, 4, 64, 300], f: [1, 20, 4, 32, 40]};  // b, sq, h, d, sk
    const makeInputs = () => Object.fromEntries(Object.entries(shapes).map(([name, [b, sq, h, d, sk]], i) => [name, {
      q: rand([b, sq, h, d], 10 * i), k: rand([b, sk, h / 2, d], 10 * i + 1), v: rand([b, sk, h / 2, d], 10 * i + 2),
    }]));
    let inputs = makeInputs();
    const disposeInputs = () => tf.dispose(Object.values(inputs).flatMap((x) => [x.q, x.k, x.v]));
    type Call = [keyof typeof shapes, lib.FlashAttentionOptions];
    const calls: Call[] = [
      ['a', {causal: true}], ['b', {causal: true}], ['a', {causal: true, scale: 0.1}], ['a', {causal: false}],
      ['a', {causal: true, keyLengths: [300, 600], queryOffsets: [299, 599]}],
      ['a', {causal: true, keyLengths: [600, 17], queryOffsets: [599, 16]}], ['a', {causal: true, softcap: 2}],
      ['f', {causal: true}], ['f', {causal: true, scale: 0.3}], ['b', {causal: true}], ['a', {causal: true}],
      ['a', {causal: true, keyLengths: [300, 600], queryOffsets: [299, 599]}], ['f', {causal: true}],
    ];
    const run = async (name: keyof typeof shapes, options: lib.FlashAttentionOptions) => {
      const {q, k, v} = inputs[name];
      const out = lib.flashAttention(q, k, v, {...options, returnLse: true});
      const values = [await out.output.data(), await out.lse.data()] as Float32Array[];
      tf.dispose([out.output, out.lse]);
      return values;
    };
    const tensors = tf.memory().numTensors;
    const decodeBefore = decodeRunsForTests();
    const first = new Map<string, Float32Array[]>();
    const results: Float32Array[][] = [];
    for (const [name, options] of calls) {
      const key = `${name}:${JSON.stringify(options)}`;
      const r = await withGPUErrorCheck(env!.device, () => run(name, options));
      if (first.has(key)) {
        first.get(key)!.forEach((x, i) => expect(Array.from(r[i]), `${key} repeated`).to.deep.equal(Array.from(x)));
      } else {
        first.set(key, r);
      }
      results.push(r);
    }
    expect(decodeRunsForTests() - decodeBefore, 'calls on the decode path').to.equal(10);
    expect(tf.memory().numTensors, 'tensors after the calls').to.equal(tensors);
    expect(planCacheSizeForTests()).to.be.at.least(9);
    const {q, k, v} = inputs.a;
    expect(() => lib.flashAttention(q, k, v, {causal: 'yes' as unknown as boolean})).to.throw(/causal/);
    expect(() => lib.flashAttention(q, k, v, {causal: true, scale: NaN})).to.throw(/scale/);
    expect(() => lib.flashAttention(q, k, v, {causal: true, keyLengths: [601, 1]})).to.throw(/keyLengths\[0\]/);
    const narrowK = tf.slice(k, [0, 0, 0, 0], [2, 600, 4, 16]);
    expect(() => lib.flashAttention(q, narrowK, v, {causal: true})).to.throw(/k must/);
    narrowK.dispose();
    expect(tf.memory().numTensors, 'tensors after the rejected calls').to.equal(tensors);
    disposeInputs();
    await tf.setBackend('cpu');
    inputs = makeInputs();
    try {
      for (let i = 0; i < calls.length; i++) {
        const expected = await run(...calls[i]);
        expected.forEach((x, j) => x.forEach((e, n) => {
          const got = results[i][j][n];
          if (e === -Infinity) expect(got, `${calls[i][0]} ${JSON.stringify(calls[i][1])}`).to.equal(-Infinity);
          else expect(Math.abs(got - e), `${calls[i][0]} ${JSON.stringify(calls[i][1])} [${j}][${n}]`).to.be.below(2e-4);
        }));
      }
    } finally {
      disposeInputs();
      await tf.setBackend('webgpu');
      setDecodePathForTests('always');
    }
  });

  it('chooses decode for few query rows over many keys, and enough splits to fill the GPU', () => {
    setDecodePathForTests(null);
    try {
      const plan = (seqQ: number, seqK: number) => makePlan({
        kind: 'flash', batch: 1, seqQ, seqK, heads: 32, kvHeads: 8, headDim: 128, scale: 1, softcap: 0,
        windowLeft: -1, windowRight: 0, layout: null, hasKeyLengths: false,
      });
      expect(useDecodePath(plan(1, 32768))).to.equal(true);
      expect(useDecodePath(plan(16, 4096))).to.equal(true);
      expect(useDecodePath(plan(17, 4096))).to.equal(false);
      expect(useDecodePath(plan(1, 128))).to.equal(false);
      const {splits, splitLength} = chooseSplits(plan(1, 32768), 4, 256);
      expect(splits * 8).to.be.at.least(512);
      expect(splitLength % 256).to.equal(0);
      expect(splits * splitLength).to.be.at.least(32768);
      // Blocks: the largest that still fills the GPU (≥ 1024 workgroups), else the smallest.
      const limits = {maxComputeWorkgroupStorageSize: 32768, maxComputeInvocationsPerWorkgroup: 256};
      expect(chooseDecodeShape(plan(1, 32768), limits)).to.deep.equal({rows: 4, block: 256});
      expect(chooseDecodeShape(plan(1, 8192), limits)).to.deep.equal({rows: 4, block: 64});
      expect(chooseDecodeShape(plan(1, 1024), limits)).to.deep.equal({rows: 4, block: 64});
      expect(chooseDecodeShape(plan(16, 8192), limits)).to.deep.equal({rows: 16, block: 256});
      // Split score lanes: up to 8, lanes × rows ≤ 32 partial dots, no more lanes than vec4s, within the memory.
      expect(chooseScoreLanes('auto', {headDim: 128, rows: 4, block: 256}, 32768)).to.equal(8);
      expect(chooseScoreLanes('auto', {headDim: 64, rows: 16, block: 256}, 65536)).to.equal(2);
      // Two rounds of 16 rows × 256 partial dots (32 KiB) do not fit beside the rest in 48 KiB: one lane.
      expect(chooseScoreLanes('auto', {headDim: 64, rows: 16, block: 256}, 49152)).to.equal(1);
      expect(chooseScoreLanes('auto', {headDim: 16, rows: 1, block: 256}, 32768)).to.equal(4);
      expect(chooseScoreLanes('auto', {headDim: 256, rows: 16, block: 256}, 32768)).to.equal(1);
      expect(chooseScoreLanes(16, {headDim: 128, rows: 4, block: 256}, 32768)).to.equal(16);
      expect(chooseScoreLanes(3, {headDim: 128, rows: 4, block: 256}, 32768)).to.equal(1);
    } finally {
      setDecodePathForTests('always');
    }
  });
});
