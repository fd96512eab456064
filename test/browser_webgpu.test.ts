/**
 * The webgpu kernels in headless Chromium (WebGPU on SwiftShader), through the browser bundle users load
 * (dist/browser/tfjs-efficient-attention.js with tf.min.js + tf-backend-webgpu.min.js): a subset of the shared cases
 * (SwiftShader's WebGPU is a slow CPU implementation) covering every op, keyLengths with an empty batch, empty rows
 * and lse gradients,
 * and the kernels the path runs.
 *
 * Tolerance as in node (test/webgpu.test.ts): 1e-5 forward; 2e-4 gradients, for the dS = P∘(dP − D) cancellation on
 * rows whose probability sits on one key (measured up to 1.2e-4 against the 1e-3 floor of the error metric).
 */
import {expect} from 'chai';
import {hasTag} from './cases.js';
import {runSharedCasesInBrowser} from './browser/attention_page.js';
import {TOLERANCES} from './tolerances.js';

const TOLERANCE = TOLERANCES['webgpu-chromium'];

// The cases tagged 'chromium-webgpu': few head sizes, since each new one compiles new pipelines, which takes
// SwiftShader a minute or two.
runSharedCasesInBrowser('webgpu', TOLERANCE, (c) => hasTag(c, 'chromium-webgpu'), {angle: 'swiftshader'}, (page) => {
  it('runs the dedicated kernels, no BatchMatMul or Softmax (tf.profile)', async () => {
    const kernels = await page().kernelsOfCase({name: 'profile', op: 'flash', batch: 1, seqQ: 64, seqK: 64, heads: 2,
                                                kvHeads: 1, headDim: 16, causal: true});
    expect(kernels).to.include.members(['FlashAttention', 'FlashAttentionGrad']);
    expect(kernels.filter((k) => /BatchMatMul|Softmax/.test(k))).to.deep.equal([]);
  });
});
