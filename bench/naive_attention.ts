/**
 * tfjs's naive attention, the baseline every benchmark races: matMul → (additive mask) → softmax → matMul.
 * It materializes a [batch, heads, seqQ, seqK] score tensor, which is exactly what the fused kernels avoid.
 * One implementation serves the benchmarks and the layers' `attention: 'naive'` mode: src/layers/naive_attention.ts.
 * This module keeps the benchmarks' names:
 * - additiveMask(plan): [seqQ, seqK] additive mask (0 visible, -1e30 masked) for head 0 of the plan.
 * - naiveAttention(q [B, Sq, H, D], k/v [B, Sk, Hkv, D], scale, mask: [Sq, Sk] bias or null (dense)) → [B, Sq, H, D];
 *   GQA repeats kv heads with a rank-4 tile, as a tfjs user would.
 */
export {additiveMask, naiveAttentionWithBias as naiveAttention} from '../src/layers/naive_attention.js';
