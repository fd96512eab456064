/**
 * The shared test table: every backend runs these cases (a backend adds a runner, not copies of cases).
 * Cases are plain JSON so a browser page can run them too. Runners select cases by tag (see CaseTag).
 */
export type LayoutSpec =
    | {name: 'local' | 'strided' | 'fixed' | 'bigBird' | 'longformer'; blockSize: number; params?: object}
    | {name: 'union' | 'intersect'; parts: LayoutSpec[]}
    | {name: 'fromBlockMask'; blockSize: number; mask: number[][][]};

/**
 * Shape of a mask or bias case: q = [seqQ, seqK]; bq = [batch, seqQ, seqK]; 1q = [1, seqQ, seqK];
 * 11 / b1 / 1h / bh = [1 | batch, 1 | heads, seqQ, seqK].
 */
export type PairShape = 'q' | 'bq' | '1q' | '11' | 'b1' | '1h' | 'bh';
export const PAIR_SHAPES: readonly PairShape[] = ['q', 'bq', '1q', '11', 'b1', '1h', 'bh'];

export interface MaskSpec {
  shape: PairShape;
  dtype?: 'bool' | 'int32' | 'float32';
  /** random: each pair visible with probability `density` (default 0.6); causal: top-left j <= i; padding: right
   *  padding of `density`·seqK keys per batch; empty-row: random, with query row 0 fully masked. */
  pattern?: 'random' | 'causal' | 'padding' | 'empty-row';
  density?: number;
}

export interface BiasSpec {
  shape: PairShape;
  /** Fraction of entries set to -Infinity (masking through the bias). */
  negInf?: number;
}

/**
 * What a runner selects a case by:
 * - 'quick': the small subset for slow runners (SwiftShader, lavapipe's webgpu grad run);
 * - 'long': larger shapes (node webgpu runs them with WEBGPU_LONG=1);
 * - 'browser': sized for GPU traps of the Chromium runners (65,535-iteration loops, 4096-long sequences); the node
 *   runners (shared_runner.ts) leave these out;
 * - 'chromium-webgl', 'chromium-webgpu': besides the 'quick' cases and the option cases, what the WebGL runner on
 *   SwiftShader runs; the subset the WebGPU runner on SwiftShader runs (every new head size compiles pipelines);
 * - 'llvmpipe': the WebGL runner on Mesa llvmpipe; 'single-target': the WebGL runner without multiple render
 *   targets; 'webgl1': the WebGL1 context (the composite fallback).
 */
export type CaseTag =
    'quick' | 'long' | 'browser' | 'chromium-webgl' | 'chromium-webgpu' | 'llvmpipe' | 'single-target' | 'webgl1';

export interface AttentionCase {
  name: string;
  op: 'flash' | 'sliding' | 'sparse';
  batch: number;
  seqQ: number;
  seqK: number;
  heads: number;
  kvHeads: number;
  headDim: number;
  causal?: boolean;
  windowSize?: number | [number, number];
  layout?: LayoutSpec;
  scale?: number;
  softcap?: number;
  keyLengths?: number[];
  /** Pass keyLengths as an int32 tensor instead of a number[]. */
  keyLengthsTensor?: boolean;
  /** Also back-propagate a random gradient into lse (returnLse). */
  lseGrad?: boolean;
  /** Query offsets (per batch, or one number); as an int32 tensor when queryOffsetsTensor. */
  queryOffsets?: number | number[];
  queryOffsetsTensor?: boolean;
  mask?: MaskSpec;
  bias?: BiasSpec;
  /** ALiBi slopes (2^(-8(h+1)/H), varied per batch when perBatch), as a tensor when asTensor. */
  alibi?: {perBatch?: boolean; asTensor?: boolean};
  /** Segment lengths per batch row (contiguous documents); keySegments when the key ids differ from the query's. */
  segments?: number[][];
  keySegments?: number[][];
  dropout?: {rate: number; seed: number};
  /** The ops' precision option (absent: the default, 'highest'); runners set it to run the table in another. */
  precision?: 'highest' | 'high' | 'medium';
  /** Check output and lse only (shapes whose backward would be too slow for a software renderer). */
  forwardOnly?: boolean;
  tags?: CaseTag[];
}

export const hasTag = (c: AttentionCase, tag: CaseTag): boolean => c.tags?.includes(tag) === true;

const base = {batch: 1, heads: 2, kvHeads: 2};

export const CASES: AttentionCase[] = [
  // flashAttention
  {...base, name: 'flash tiny S7 D16', op: 'flash', seqQ: 7, seqK: 7, headDim: 16, tags: ['quick', 'chromium-webgpu']},
  {...base, name: 'flash single token S1 D40', op: 'flash', seqQ: 1, seqK: 1, headDim: 40, tags: ['quick']},
  {...base, name: 'flash causal S77 H3 D64', op: 'flash', seqQ: 77, seqK: 77, heads: 3, kvHeads: 3, headDim: 64,
   causal: true, tags: ['quick', 'llvmpipe', 'single-target']},
  {...base, name: 'flash causal bottom-right seqQ7 seqK130', op: 'flash', seqQ: 7, seqK: 130, headDim: 64,
   causal: true, tags: ['quick']},
  {...base, name: 'flash causal seqQ130 > seqK77 (empty top rows)', op: 'flash', seqQ: 130, seqK: 77, headDim: 32,
   causal: true, tags: ['quick']},
  {name: 'flash GQA B2 S300 H4/2 D64', op: 'flash', batch: 2, seqQ: 300, seqK: 300, heads: 4, kvHeads: 2,
   headDim: 64, tags: ['long']},
  {name: 'flash MQA causal S130 H4/1 D128', op: 'flash', batch: 1, seqQ: 130, seqK: 130, heads: 4, kvHeads: 1,
   headDim: 128, causal: true, tags: ['quick']},
  {...base, name: 'flash D256 S77', op: 'flash', seqQ: 77, seqK: 77, heads: 1, kvHeads: 1, headDim: 256,
   tags: ['chromium-webgl']},
  {...base, name: 'flash D80 S33', op: 'flash', seqQ: 33, seqK: 33, headDim: 80},
  {...base, name: 'flash D96 causal S65', op: 'flash', seqQ: 65, seqK: 65, headDim: 96, causal: true},
  {...base, name: 'flash softcap 5, scale 1', op: 'flash', seqQ: 77, seqK: 77, headDim: 40, scale: 1, softcap: 5,
   tags: ['quick', 'single-target']},
  {name: 'flash keyLengths [77, 0, 30] (empty batch)', op: 'flash', batch: 3, seqQ: 20, seqK: 77, heads: 2,
   kvHeads: 2, headDim: 16, keyLengths: [77, 0, 30], tags: ['quick', 'llvmpipe', 'single-target', 'chromium-webgpu']},
  {name: 'flash causal keyLengths tensor', op: 'flash', batch: 2, seqQ: 77, seqK: 77, heads: 2, kvHeads: 1,
   headDim: 64, causal: true, keyLengths: [50, 77], keyLengthsTensor: true, tags: ['chromium-webgl']},
  {...base, name: 'flash scale 0.5', op: 'flash', seqQ: 33, seqK: 130, headDim: 16, scale: 0.5},
  {...base, name: 'flash decode seqQ1 seqK300 causal', op: 'flash', seqQ: 1, seqK: 300, headDim: 64, causal: true},
  {...base, name: 'flash lse output with lse gradient', op: 'flash', seqQ: 40, seqK: 70, headDim: 32, causal: true,
   lseGrad: true, tags: ['quick', 'chromium-webgpu']},
  // slidingWindowAttention
  {...base, name: 'sliding w16 S130 D64', op: 'sliding', seqQ: 130, seqK: 130, headDim: 64, windowSize: 16,
   tags: ['quick', 'llvmpipe', 'single-target']},
  {...base, name: 'sliding [8, 8] S77', op: 'sliding', seqQ: 77, seqK: 77, headDim: 40, windowSize: [8, 8]},
  {...base, name: 'sliding [-1, 4] S77', op: 'sliding', seqQ: 77, seqK: 77, headDim: 16, windowSize: [-1, 4]},
  {...base, name: 'sliding [4, -1] S77', op: 'sliding', seqQ: 77, seqK: 77, headDim: 16, windowSize: [4, -1]},
  {...base, name: 'sliding [0, 0] diagonal only', op: 'sliding', seqQ: 33, seqK: 33, headDim: 16, windowSize: [0, 0]},
  {...base, name: 'sliding seqQ7 seqK300 [20, 3]', op: 'sliding', seqQ: 7, seqK: 300, headDim: 64,
   windowSize: [20, 3], tags: ['quick', 'chromium-webgpu']},
  {...base, name: 'sliding seqQ130 > seqK40 w5 (empty rows)', op: 'sliding', seqQ: 130, seqK: 40, headDim: 16,
   windowSize: 5},
  {name: 'sliding GQA keyLengths softcap', op: 'sliding', batch: 2, seqQ: 100, seqK: 100, heads: 4, kvHeads: 2,
   headDim: 32, windowSize: [30, 10], keyLengths: [100, 61], softcap: 3, scale: 0.7, lseGrad: true,
   tags: ['chromium-webgl']},
  // sparseAttention
  {...base, name: 'sparse local bs16 S130', op: 'sparse', seqQ: 130, seqK: 130, headDim: 64,
   layout: {name: 'local', blockSize: 16, params: {leftBlocks: 2}}, tags: ['quick']},
  {...base, name: 'sparse strided bs16 S300', op: 'sparse', seqQ: 300, seqK: 300, headDim: 32,
   layout: {name: 'strided', blockSize: 16, params: {stride: 3, localBlocks: 1}}, tags: ['long']},
  {...base, name: 'sparse fixed bs16 S300 causal', op: 'sparse', seqQ: 300, seqK: 300, headDim: 16, causal: true,
   layout: {name: 'fixed', blockSize: 16, params: {blocksPerSegment: 4, summaryBlocks: 1}}, tags: ['long']},
  {...base, name: 'sparse bigBird per-head causal S300', op: 'sparse', seqQ: 300, seqK: 300, headDim: 40,
   causal: true, layout: {name: 'bigBird', blockSize: 16, params: {numHeads: 2, seed: 7}}, tags: ['chromium-webgl']},
  {...base, name: 'sparse longformer bs7 S77', op: 'sparse', seqQ: 77, seqK: 77, headDim: 16,
   layout: {name: 'longformer', blockSize: 7, params: {windowBlocks: 1, globalBlocks: [0, 5]}}, tags: ['quick']},
  {...base, name: 'sparse union seqQ130 seqK300 bs32', op: 'sparse', seqQ: 130, seqK: 300, headDim: 64,
   layout: {name: 'union', parts: [{name: 'local', blockSize: 32}, {name: 'strided', blockSize: 32,
                                                                     params: {stride: 4}}]}},
  {...base, name: 'sparse intersect bigBird∩local', op: 'sparse', seqQ: 96, seqK: 96, headDim: 16,
   layout: {name: 'intersect', parts: [{name: 'bigBird', blockSize: 8, params: {seed: 3}},
                                       {name: 'local', blockSize: 8, params: {leftBlocks: 3, rightBlocks: 1}}]}},
  {...base, name: 'sparse fromBlockMask with empty rows', op: 'sparse', seqQ: 20, seqK: 24, headDim: 16,
   layout: {name: 'fromBlockMask', blockSize: 8,
            mask: [[[1, 0, 1], [0, 0, 0], [0, 1, 1]], [[0, 0, 0], [1, 1, 0], [0, 0, 1]]]},
   tags: ['quick', 'llvmpipe', 'single-target', 'chromium-webgpu']},
  {name: 'sparse GQA keyLengths softcap causal', op: 'sparse', batch: 2, seqQ: 77, seqK: 77, heads: 4, kvHeads: 1,
   headDim: 16, causal: true, softcap: 2, keyLengths: [40, 77], keyLengthsTensor: true, lseGrad: true,
   layout: {name: 'bigBird', blockSize: 8, params: {seed: 11, windowBlocks: 3, randomBlocks: 1}},
   tags: ['chromium-webgl', 'single-target']},
  // masks, biases, ALiBi, segments, query offsets, dropout (every option, on every backend)
  {...base, name: 'mask random bool [seqQ, seqK] S77', op: 'flash', seqQ: 77, seqK: 77, headDim: 32,
   mask: {shape: 'q'}, tags: ['quick']},
  {name: 'mask random int32 [B, Sq, Sk] + causal seqQ33 seqK70', op: 'flash', batch: 2, seqQ: 33, seqK: 70,
   heads: 2, kvHeads: 1, headDim: 16, causal: true, mask: {shape: 'bq', dtype: 'int32', density: 0.4}},
  {name: 'mask float32 [B, H, Sq, Sk] with an empty row, GQA', op: 'flash', batch: 2, seqQ: 40, seqK: 40, heads: 4,
   kvHeads: 2, headDim: 16, mask: {shape: 'bh', dtype: 'float32', pattern: 'empty-row'}, lseGrad: true,
   tags: ['quick', 'llvmpipe', 'single-target']},
  {name: 'mask [1, H, Sq, Sk] causal pattern (as a mask)', op: 'flash', batch: 2, seqQ: 130, seqK: 130, heads: 2,
   kvHeads: 2, headDim: 32, mask: {shape: '1h', pattern: 'causal'}},
  {name: 'mask [B, 1, Sq, Sk] padding + sliding [8, 8]', op: 'sliding', batch: 2, seqQ: 65, seqK: 65, heads: 2,
   kvHeads: 2, headDim: 16, windowSize: [8, 8], mask: {shape: 'b1', pattern: 'padding', density: 0.3}},
  {name: 'bias [seqQ, seqK] seqQ1 seqK1 D8 (fuzz minimal case)', op: 'flash', batch: 1, seqQ: 1, seqK: 1, heads: 1,
   kvHeads: 1, headDim: 8, bias: {shape: 'q'}, tags: ['chromium-webgpu']},
  {...base, name: 'bias [seqQ, seqK] + softcap', op: 'flash', seqQ: 77, seqK: 77, headDim: 32, softcap: 4,
   bias: {shape: 'q'}, tags: ['quick']},
  {name: 'bias [1, H, Sq, Sk] with -Infinity entries + causal', op: 'flash', batch: 2, seqQ: 50, seqK: 50, heads: 3,
   kvHeads: 1, headDim: 16, causal: true, bias: {shape: '1h', negInf: 0.2}, lseGrad: true, tags: ['quick']},
  {name: 'bias [B, Sq, Sk] + mask [B, H, Sq, Sk] seqQ7 seqK130', op: 'flash', batch: 2, seqQ: 7, seqK: 130,
   heads: 2, kvHeads: 2, headDim: 64, bias: {shape: 'bq'}, mask: {shape: 'bh', density: 0.7}, tags: ['single-target']},
  {name: 'bias [B, H, Sq, Sk] sparse bigBird', op: 'sparse', batch: 2, seqQ: 64, seqK: 64, heads: 2, kvHeads: 2,
   headDim: 16, bias: {shape: 'bh'}, layout: {name: 'bigBird', blockSize: 8, params: {seed: 5}}},
  {...base, name: 'ALiBi [heads] dense S130', op: 'flash', seqQ: 130, seqK: 130, headDim: 32, alibi: {},
   tags: ['quick', 'single-target']},
  {name: 'ALiBi [B, heads] tensor + sliding w16 seqQ20 seqK77', op: 'sliding', batch: 2, seqQ: 20, seqK: 77,
   heads: 2, kvHeads: 1, headDim: 16, windowSize: 16, alibi: {perBatch: true, asTensor: true}},
  {name: 'segments 3 docs + causal + GQA', op: 'flash', batch: 2, seqQ: 77, seqK: 77, heads: 4, kvHeads: 2,
   headDim: 16, causal: true, segments: [[30, 20, 27], [77]], tags: ['quick', 'single-target']},
  {name: 'segments query/key differ seqQ20 seqK50', op: 'flash', batch: 1, seqQ: 20, seqK: 50, heads: 2,
   kvHeads: 2, headDim: 16, segments: [[5, 15]], keySegments: [[20, 30]]},
  {name: 'queryOffsets per batch causal (chunked prefill in a cache) + keyLengths', op: 'flash', batch: 3, seqQ: 5,
   seqK: 40, heads: 2, kvHeads: 1, headDim: 32, causal: true, queryOffsets: [0, 12, 35], keyLengths: [5, 17, 40],
   tags: ['quick']},
  {name: 'queryOffsets tensor, sliding decode seqQ1', op: 'sliding', batch: 2, seqQ: 1, seqK: 64, heads: 2,
   kvHeads: 2, headDim: 16, windowSize: 8, queryOffsets: [20, 63], queryOffsetsTensor: true, keyLengths: [21, 64],
   tags: ['single-target']},
  {...base, name: 'queryOffsets 0 (top-left causal) seqQ40 seqK77 + ALiBi', op: 'flash', seqQ: 40, seqK: 77,
   headDim: 16, causal: true, queryOffsets: 0, alibi: {}},
  {name: 'dropout 0.3 dense GQA', op: 'flash', batch: 2, seqQ: 33, seqK: 45, heads: 4, kvHeads: 2, headDim: 16,
   dropout: {rate: 0.3, seed: 1234}, lseGrad: true, tags: ['quick', 'llvmpipe', 'single-target']},
  {...base, name: 'dropout 0.1 causal + mask + bias, seed > 2^32', op: 'flash', seqQ: 77, seqK: 77, headDim: 32,
   causal: true, mask: {shape: 'q', density: 0.8}, bias: {shape: 'q'}, dropout: {rate: 0.1, seed: 2 ** 40 + 77},
   tags: ['single-target']},
  {...base, name: 'dropout 0.5 sparse local', op: 'sparse', seqQ: 70, seqK: 70, headDim: 16,
   layout: {name: 'local', blockSize: 16, params: {leftBlocks: 1}}, dropout: {rate: 0.5, seed: 9},
   tags: ['single-target']},
  // The Chromium runners' own cases (tag 'browser'; node runners leave them out)
  // Keys past 65,535 in one row: a kernel with one loop over the keys would stop early on llvmpipe.
  {name: 'flash seqQ 4, seqK 70000 (65,535-iteration trap)', op: 'flash', batch: 1, seqQ: 4, seqK: 70000, heads: 1,
   kvHeads: 1, headDim: 16, tags: ['browser', 'chromium-webgl', 'llvmpipe']},
  {name: 'flash causal seq 4096 forward', op: 'flash', batch: 1, seqQ: 4096, seqK: 4096, heads: 1, kvHeads: 1,
   headDim: 64, causal: true, forwardOnly: true, tags: ['browser', 'chromium-webgl']},
  {name: 'sliding w256 seq 4096 GQA forward', op: 'sliding', batch: 1, seqQ: 4096, seqK: 4096, heads: 2, kvHeads: 1,
   headDim: 32, windowSize: 256, forwardOnly: true, tags: ['browser', 'chromium-webgl']},
  // A WebGL1 context falls back to the composite kernels.
  {name: 'webgl1 causal S40', op: 'flash', batch: 1, seqQ: 40, seqK: 40, heads: 2, kvHeads: 1, headDim: 16,
   causal: true, tags: ['browser', 'webgl1']},
  {name: 'webgl1 sliding', op: 'sliding', batch: 1, seqQ: 40, seqK: 40, heads: 2, kvHeads: 1, headDim: 16,
   windowSize: 8, tags: ['browser', 'webgl1']},
];

/**
 * Decode-shaped cases (1…16 query rows against hundreds of keys: GQA, causal, window, keyLengths, softcap) that both
 * split-K decode runners force onto their path (test/webgpu_decode.test.ts, test/browser_decode.test.ts), each
 * adding its own cases after these.
 */
export const SPLIT_K_DECODE_CASES: AttentionCase[] = [
  {name: 'decode S1 K300 causal H4/1 D64', op: 'flash', batch: 1, seqQ: 1, seqK: 300, heads: 4, kvHeads: 1,
   headDim: 64, causal: true},
  {name: 'decode S7 K777 causal GQA 8/2 D128 keyLengths', op: 'flash', batch: 2, seqQ: 7, seqK: 777, heads: 8,
   kvHeads: 2, headDim: 128, causal: true, keyLengths: [500, 777], lseGrad: true},
  {name: 'decode S16 K1030 dense D32 softcap', op: 'flash', batch: 1, seqQ: 16, seqK: 1030, heads: 2, kvHeads: 2,
   headDim: 32, softcap: 3},
  {name: 'decode S2 K600 sliding [40, 0] D16 keyLengths tensor (one empty batch)', op: 'sliding', batch: 3, seqQ: 2,
   seqK: 600, heads: 6, kvHeads: 3, headDim: 16, windowSize: [40, 0], keyLengths: [0, 333, 600],
   keyLengthsTensor: true},
];
