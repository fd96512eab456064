/**
 * The fp32 rounding floor of the tests (the fuzzers and the shared case table): where the exact value of lse, dq, dk or
 * dBias is (nearly) zero, a relative error cannot tell fp32 rounding from a bug, so those quantities also pass when
 * their absolute error is within what fp32 rounding allows for the case (roundingFloor). Output and dv never do.
 */
import type {AttentionCase} from './cases.js';
import type {CaseResult} from './check_case.js';
import type {Tolerances} from './tolerances.js';

/** The quantities that can pass by an absolute fp32 rounding floor (roundingFloor) when the relative check fails. */
export const FLOORED = ['lse', 'dq', 'dk', 'dBias'] as const;
export type Floored = typeof FLOORED[number];
export type RoundingFloor = Record<Floored, number>;

/**
 * fp32's floor on the absolute error of lse, dq, dk and dBias, for one case (inputs uniform in [-1, 1)): what relative errors
 * cannot express when the exact value is (nearly) zero.
 *
 * lse: a score is an fp32 dot product of headDim products, each |q_i·k_i| < 1; when they cancel (a score near 0) its
 * rounding, a few eps32 · Σ|q_i·k_i| · |scale|, is large next to the score itself. lse moves by at most the largest
 * score error (∂lse/∂s_j = p_j, Σ p_j = 1; a softcap's slope is ≤ 1), so when every row's lse is tiny (one key, a
 * cancelling score) the relative error against the 1e-3 floor of check_case.ts is that rounding / 1e-3. Found by the
 * long wasm fuzz: seqK 1, headDim 2, scale −0.42, q·k = 0.4026 − 0.4055, lse 1.185e-3 off by 1.27e-8 (0.43 ulp of
 * a 0.40 product), relative 1.07e-5. The floor allows 4·eps32·|scale|·headDim.
 *
 * dq, dk: dS = P∘(dP − D) subtracts D = rowsum(dO∘O) from dP = dO·v. On a row whose probability sits on one key the
 * two are the same dot product (O = v up to a few ulps), summed in a different order, so dS is the rounding
 * difference of two fp32 sums of headDim products, where the exact value is 0: a few roundings of |dP| ≤ headDim.
 * Measured on webgl up to 2.5·eps32·headDim (headDim 1, where O ≠ v by a few ulps) and 1.3·eps32·headDim (headDim
 * 125, sum order); the floor allows 4·eps32·headDim. dq = scale·dS·k carries that times |scale|; dk sums it over the
 * rows that see a key, at most seqQ·groupSize of them, as a random walk. When every row sees one key (seqK = 1, say)
 * the exact dq and dk are all zero and the relative error is this rounding / 1e-3: up to 1e-2 at headDim 125 on webgl,
 * while the kernels are as exact as fp32 allows.
 *
 * dBias is dS itself (before the scale), summed over the bias's broadcast axes (batch, heads) as a random walk. Dropout
 * multiplies dP by up to 1 / (1 − rate), and the cancellation's rounding with it. cpu accumulates in float64 but
 * stores O in fp32, so D = rowsum(dO∘O) carries O's rounding: the fuzz found dBias 1.4e-8 absolute (exact 0) on
 * `flash B1 Sq1 Sk1 D2 bias q dropout 0.01` on cpu.
 */
export function roundingFloor(c: AttentionCase): RoundingFloor {
  const eps32 = 2 ** -23;
  const scale = Math.abs(c.scale ?? 1 / Math.sqrt(c.headDim));
  const keepScale = c.dropout ? 1 / (1 - c.dropout.rate) : 1;
  const perScore = 4 * eps32 * scale * c.headDim;
  const perDS = 4 * eps32 * c.headDim * keepScale;
  let biasRows = 1;
  if (c.bias != null) {
    const shape = c.bias.shape;
    if (!['bq', 'b1', 'bh'].includes(shape)) biasRows *= c.batch;
    if (shape !== '1h' && shape !== 'bh') biasRows *= c.heads;
  }
  return {
    lse: perScore, dq: perDS * scale, dk: perDS * scale * Math.sqrt(c.seqQ * (c.heads / c.kvHeads)),
    dBias: perDS * Math.sqrt(biasRows),
  };
}

/**
 * Why a result fails the tolerance (empty when it passes). lse, dq, dk, dBias over their relative tolerance still pass
 * when their absolute error is within roundingFloor (`rounding` gives the case's floor and the reference magnitudes;
 * without it they fail as the relative check says).
 */
export function caseFailures(
    r: CaseResult, tol: Tolerances, rounding?: {floor: RoundingFloor; maxRef: RoundingFloor}): string[] {
  const failures = [...r.problems];
  const check = (key: keyof CaseResult['errors'], tolerance: number) => {
    if (r.errors[key] <= tolerance) return;
    if (rounding != null && (FLOORED as readonly string[]).includes(key) && Number.isFinite(r.errors[key])) {
      // check_case.ts: error = max |actual − expected| / max(max |expected|, 1e-3).
      const absolute = r.errors[key] * Math.max(rounding.maxRef[key as Floored], 1e-3);
      if (absolute <= rounding.floor[key as Floored]) return;
      failures.push(`${key} error ${r.errors[key]} > ${tolerance} (absolute ${absolute.toExponential(2)} > fp32 ` +
                    `rounding floor ${rounding.floor[key as Floored].toExponential(2)})`);
      return;
    }
    failures.push(`${key} error ${r.errors[key]} > ${tolerance}`);
  };
  check('output', tol.forward);
  check('lse', tol.forward);
  for (const key of ['dq', 'dk', 'dv', 'dBias'] as const) check(key, tol.gradients);
  if (r.leakedTensors !== 0) failures.push(`leaked ${r.leakedTensors} tensors`);
  return failures;
}

