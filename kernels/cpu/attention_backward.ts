/**
 * The cpu backward executor shared by the three *Grad kernels (FlashAttention-2 backward): scores are recomputed tile
 * by tile from q, k and the saved lse, never stored whole.
 *
 * One pass over the scheduled (query tile, key tile) pairs: dQ of the query tile accumulates in place, dK and dV in
 * per-kv-head accumulators (so GQA's sum over the query heads of a group falls out, deterministically since this is
 * single-threaded). With t the final score, P = exp(t − lse), δ = rowsum(dO∘O) − dLse:
 *   dV += Pᵀ·dO,  dS = P∘(dO·Vᵀ − δ)∘(1 − (t/softcap)²),  dQ += scale·dS·K,  dK += scale·dSᵀ·Q.
 * dS is stored with its factor scale, so dQ = dS·K and dK = dSᵀ·Q need no further scaling.
 *
 * Masked keys reach no row: on masked tiles P and dS are exactly 0 at the masked elements whatever the row's lse (a
 * NaN lse would make exp(−Infinity − lse) NaN), and where the tile holds a key with a NaN or infinity in k, dQ takes
 * dS·K over K with those elements zeroed plus dS·k of the non-finite elements of the keys each row sees — a plain
 * product would give 0·NaN = NaN in the dq of rows that cannot see the key. A visible key still contributes its
 * 0·Infinity (= NaN, as in the reference) when its score is -Infinity. Heads whose keys are all finite (the usual
 * case) pay only one scan of K per kv head. The same for q in dK = dSᵀ·Q (a NaN or infinity in a row's q, times a
 * masked key's dS = 0), with one scan of each query tile; an empty row's q is zeroed.
 */
import type {MathBackendCPU} from '@tensorflow/tfjs-backend-cpu';
import type {TensorInfo} from '@tensorflow/tfjs-core';
import type {AttentionPlan} from '../../src/plan/plan.js';
import type {AttentionGradInputs} from '../attention_kernel_func.js';
import {
  finalScores, float32Values, gatherHead, gatherHeadTransposed, gatherQueryTile, gemmABt, readAttentionInputs,
  transposeTile,
} from './attention_cpu_util.js';
import {OptionOperands} from './option_operands_cpu.js';
import {KeyTileWalk} from './schedule_walk_cpu.js';

export function runAttentionBackward(backend: MathBackendCPU, plan: AttentionPlan, inputs: AttentionGradInputs):
    TensorInfo[] {
  const {q: qv, k: kv, v: vv, keyLens} = readAttentionInputs(backend, plan, inputs);
  const {batch: B, seqQ: Sq, seqK: Sk, heads: H, kvHeads: Hk, headDim: D, groupSize: G, scale, softcap} = plan;
  const ov = float32Values(backend, inputs.output), lsev = float32Values(backend, inputs.lse);
  const dov = float32Values(backend, inputs.dOutput), dlsev = float32Values(backend, inputs.dLse);
  const ops = new OptionOperands(backend, plan, inputs);
  const walk = new KeyTileWalk(plan, ops);
  const {blockQ, blockK} = walk;
  const {numQueryTiles} = walk.schedule;

  const dq = new Float32Array(B * Sq * H * D);
  const dk = new Float32Array(B * Sk * Hk * D), dv = new Float32Array(B * Sk * Hk * D);
  // Per kv head: K as [seqK, D] and [D, seqK], V as [seqK, D], and the dK, dV accumulators [seqK, D].
  const kc = new Float32Array(Sk * D), kt = new Float32Array(D * Sk), vc = new Float32Array(Sk * D);
  // Keys of the current kv head with a NaN or infinity in k (ascending), and Kᵀ with those elements zeroed (allocated
  // on first use) for the dQ product of masked tiles.
  const badKeys = new Int32Array(Sk);
  let ktFinite: Float32Array | null = null;
  const dkAcc = new Float64Array(Sk * D), dvAcc = new Float64Array(Sk * D);
  // Per query tile: Q and dO as [rows, D] and transposed [D, blockQ]; the dQ accumulator; per-row lse and δ.
  const qTile = new Float32Array(blockQ * D), qT = new Float32Array(D * blockQ);
  // Rows of the current query tile with a NaN or infinity in q (ascending), and Qᵀ with those elements zeroed, for the
  // dK product of masked tiles (the mirror of badKeys / ktFinite).
  const badRows = new Int32Array(blockQ), qTFinite = new Float32Array(D * blockQ);
  const doTile = new Float32Array(blockQ * D), doT = new Float32Array(D * blockQ);
  const dqTile = new Float64Array(blockQ * D);
  const rowLse = new Float64Array(blockQ), rowDelta = new Float64Array(blockQ);
  // Per tile pair: scores and dP [blockQ, blockK]; dS as [blockQ, blockK]; Pᵀ and dSᵀ [blockK, blockQ].
  const s = new Float64Array(blockQ * blockK), dp = new Float64Array(blockQ * blockK);
  const ds = new Float32Array(blockQ * blockK);
  const hidden = new Uint8Array(blockQ * blockK);  // masked elements of a masked tile (same layout as s)
  const pT = new Float32Array(blockK * blockQ), dsT = new Float32Array(blockK * blockQ);
  const invCap = softcap > 0 ? 1 / softcap : 0;
  // Options: the score terms (bias, ALiBi); dropout's keep decisions of a tile; with a bias, the gradient of each
  // final score of a tile (dt, before the softcap and scale chain) and dBias, summed over the bias's broadcast axes
  // in a fixed order.
  const {hasScoreTerms, dropout, bias} = ops;
  const kept = dropout == null ? null : new Uint8Array(blockQ * blockK);
  const dt = bias == null ? null : new Float64Array(blockQ * blockK);
  const dBiasAcc = bias == null ? null : new Float64Array(bias.values.length);
  // The softcap's derivative needs the softcapped scores before the score terms.
  const capped = hasScoreTerms && softcap > 0 ? new Float64Array(blockQ * blockK) : null;
  const withOptions = kept != null || dt != null || hasScoreTerms;

  for (let b = 0; b < B; b++) {
    const keyLen = keyLens[b];
    if (keyLen === 0) continue;  // every row is empty: all gradients 0
    for (let hk = 0; hk < Hk; hk++) {
      gatherHead(kv, plan, b, hk, keyLen, kc);
      gatherHeadTransposed(kv, plan, b, hk, keyLen, kt);
      gatherHead(vv, plan, b, hk, keyLen, vc);
      let numBad = 0;
      for (let j = 0; j < keyLen; j++) {
        if (hasNonFinite(kc, j * D, D)) badKeys[numBad++] = j;
      }
      if (numBad > 0) {
        ktFinite ??= new Float32Array(D * Sk);
        for (let a = 0; a < D * Sk; a++) ktFinite[a] = Number.isFinite(kt[a]) ? kt[a] : 0;
      }
      dkAcc.fill(0, 0, keyLen * D);
      dvAcc.fill(0, 0, keyLen * D);
      for (let h = hk * G; h < (hk + 1) * G; h++) {
        for (let qt = 0; qt < numQueryTiles; qt++) {
          const listed = walk.startQueryTile(b, h, qt, keyLen);
          const {q0, rows} = walk;
          // Rows with lse = -Infinity saw no key in the forward pass: they contribute nothing.
          let live = 0;
          for (let r = 0; r < rows; r++) {
            const row = (b * H + h) * Sq + q0 + r;
            rowLse[r] = lsev[row];
            if (rowLse[r] === -Infinity) continue;
            live++;
            const o = ((b * Sq + q0 + r) * H + h) * D;
            let delta = 0;
            for (let d = 0; d < D; d++) delta += dov[o + d] * ov[o + d];
            rowDelta[r] = delta - dlsev[row];
          }
          if (live === 0 || !listed) continue;
          gatherQueryTile(qv, plan, b, h, q0, rows, qTile);
          // An empty row contributes nothing; its q is zeroed so that dK's 0·q stays 0 at an infinite q. The others'
          // non-finite q: see badRows.
          let numBadRows = 0;
          for (let r = 0; r < rows; r++) {
            if (rowLse[r] === -Infinity) {
              qTile.fill(0, r * D, (r + 1) * D);
              continue;
            }
            if (hasNonFinite(qTile, r * D, D)) badRows[numBadRows++] = r;
          }
          transposeTile(qTile, rows, D, qT, blockQ);
          if (numBadRows > 0) {
            for (let a = 0; a < D * blockQ; a++) qTFinite[a] = Number.isFinite(qT[a]) ? qT[a] : 0;
          }
          gatherQueryTile(dov, plan, b, h, q0, rows, doTile);
          transposeTile(doTile, rows, D, doT, blockQ);
          dqTile.fill(0);
          while (walk.nextKeyTile()) {
            const {k0, c0, c1, masked} = walk, n = c1 - c0;
            gemmABt(qTile, 0, D, kc, (k0 + c0) * D, D, s, c0, blockK, rows, n, D, false);      // Q·Kᵀ
            gemmABt(doTile, 0, D, vc, (k0 + c0) * D, D, dp, c0, blockK, rows, n, D, false);    // dP = dO·Vᵀ
            finalScores(s, blockK, rows, c0, c1, scale, softcap);
            if (capped != null) capped.set(s.subarray(0, rows * blockK));
            if (hasScoreTerms) walk.addScoreTerms(s, blockK);
            if (masked) walk.mask(s, blockK, hidden);
            if (withOptions) {
              if (kept != null) walk.keepMask(kept, blockK);
              probabilitiesAndScoreGradsWithOptions(
                  s, dp, blockK, rows, c0, c1, rowLse, rowDelta, scale, invCap, masked ? hidden : null, ds, pT, dsT,
                  blockQ, kept, dropout?.keepScale ?? 1, dt, capped ?? s);
              if (dt != null) addBiasGrads(dt, blockK, rows, c0, c1, dBiasAcc!, bias!, b, h, q0, k0, Sk);
            } else {
              probabilitiesAndScoreGrads(
                  s, dp, blockK, rows, c0, c1, rowLse, rowDelta, scale, invCap, masked ? hidden : null, ds, pT, dsT,
                  blockQ);
            }
            if (masked && numBad > 0 && hasKeyIn(badKeys, numBad, k0 + c0, k0 + c1)) {
              gemmABt(ds, c0, blockK, ktFinite!, k0 + c0, Sk, dqTile, 0, D, rows, D, n, true);  // dQ += dS·K, finite part
              addVisibleNonFinite(ds, hidden, blockK, kc, badKeys, numBad, k0, c0, c1, dqTile, rows, D);
            } else {
              gemmABt(ds, c0, blockK, kt, k0 + c0, Sk, dqTile, 0, D, rows, D, n, true);         // dQ += dS·K
            }
            gemmABt(pT, 0, blockQ, doT, 0, blockQ, dvAcc, (k0 + c0) * D, D, n, D, rows, true);  // dV += Pᵀ·dO
            if (masked && numBadRows > 0) {
              gemmABt(dsT, 0, blockQ, qTFinite, 0, blockQ, dkAcc, (k0 + c0) * D, D, n, D, rows, true);  // finite part
              addVisibleNonFiniteQ(ds, hidden, blockK, qTile, badRows, numBadRows, k0, c0, c1, dkAcc, D);
            } else {
              gemmABt(dsT, 0, blockQ, qT, 0, blockQ, dkAcc, (k0 + c0) * D, D, n, D, rows, true);   // dK += dSᵀ·Q
            }
          }
          for (let r = 0; r < rows; r++) {
            // An empty row's dS is 0, but 0·k is NaN at an infinite k whose score was -Infinity: its dq stays 0.
            if (rowLse[r] === -Infinity) continue;
            const o = ((b * Sq + q0 + r) * H + h) * D;
            for (let d = 0, a = r * D; d < D; d++) dq[o + d] = dqTile[a + d];
          }
        }
      }
      const rowStride = Hk * D;
      for (let j = 0, o = (b * Sk * Hk + hk) * D; j < keyLen; j++, o += rowStride) {
        for (let d = 0, a = j * D; d < D; d++) {
          dk[o + d] = dkAcc[a + d];
          dv[o + d] = dvAcc[a + d];
        }
      }
    }
  }
  const grads = [
    backend.makeTensorInfo([B, Sq, H, D], 'float32', dq),
    backend.makeTensorInfo([B, Sk, Hk, D], 'float32', dk),
    backend.makeTensorInfo([B, Sk, Hk, D], 'float32', dv),
  ];
  if (plan.bias != null) grads.push(backend.makeTensorInfo([...plan.bias.shape], 'float32', Float32Array.from(dBiasAcc!)));
  return grads;
}

/**
 * dBias[b, h, q0 + r, k0 + c] += dt[r·ld + c] for the tile's columns [c0, c1), at the bias's broadcast index (the
 * sum over a broadcast axis falls out of the fixed walk order: deterministic).
 */
function addBiasGrads(
    dt: Float64Array, ld: number, rows: number, c0: number, c1: number, dBias: Float64Array,
    bias: {batchStride: number, headStride: number}, b: number, h: number, q0: number, k0: number, Sk: number): void {
  for (let r = 0; r < rows; r++) {
    const o = b * bias.batchStride + h * bias.headStride + (q0 + r) * Sk + k0;
    for (let c = c0, i = r * ld + c0; c < c1; c++, i++) dBias[o + c] += dt[i];
  }
}

/**
 * probabilitiesAndScoreGrads with the options' terms: dropout (kept, 0/1 per element, or null) makes
 * dP = (dO·Vᵀ)∘Z·keepScale and Pᵀ (for dV) P∘Z·keepScale; dt (or null) receives the gradient of each final score,
 * P∘(dP − δ), before the softcap and scale chain (dBias). capped holds the softcapped scores before the score terms
 * (s itself when there are none), for the softcap's derivative.
 */
function probabilitiesAndScoreGradsWithOptions(
    s: Float64Array, dp: Float64Array, ld: number, rows: number, c0: number, c1: number, rowLse: Float64Array,
    rowDelta: Float64Array, scale: number, invCap: number, hidden: Uint8Array | null, ds: Float32Array,
    pT: Float32Array, dsT: Float32Array, ldT: number, kept: Uint8Array | null, keepScale: number,
    dt: Float64Array | null, capped: Float64Array): void {
  for (let r = 0; r < rows; r++) {
    const lse = rowLse[r], delta = rowDelta[r];
    const empty = lse === -Infinity;
    for (let c = c0, i = r * ld + c0, o = r; c < c1; c++, i++, o += ldT) {
      let p = 0, pz = 0, d = 0, g = 0;
      if (!empty && (hidden === null || hidden[i] === 0)) {
        const t = s[i];
        const z = kept === null ? 1 : kept[i] === 1 ? keepScale : 0;
        p = Math.exp(t - lse);
        pz = p * z;
        d = p * (dp[i] * z - delta);
        g = d * scale;
        if (invCap !== 0) {  // the softcapped score (before the score terms) is finite
          const u = capped[i] * invCap;
          g *= 1 - u * u;
        }
      }
      if (dt !== null) dt[i] = d;
      ds[i] = g;
      pT[o] = pz;
      dsT[o] = g;
    }
  }
}

/** Whether a[start, start + n) holds a NaN or an infinity. */
function hasNonFinite(a: Float32Array, start: number, n: number): boolean {
  for (let i = start; i < start + n; i++) if (!Number.isFinite(a[i])) return true;
  return false;
}

/** Whether a key of keys[0, n) (ascending) lies in [from, to). */
function hasKeyIn(keys: Int32Array, n: number, from: number, to: number): boolean {
  for (let i = 0; i < n; i++) if (keys[i] >= from) return keys[i] < to;
  return false;
}

/**
 * The part of dQ += dS·K that the zeroed elements of Kᵀ left out: for each key of badKeys in columns [c0, c1) of the
 * tile (keys from k0) and each row that sees it (hidden 0), dS·k of the key's non-finite elements (NaN or ±Infinity,
 * also where dS = 0: the reference's 0·Infinity). kc is K as [seqK, D].
 */
function addVisibleNonFinite(
    ds: Float32Array, hidden: Uint8Array, ld: number, kc: Float32Array, badKeys: Int32Array, numBad: number,
    k0: number, c0: number, c1: number, dqTile: Float64Array, rows: number, D: number): void {
  for (let n = 0; n < numBad; n++) {
    const c = badKeys[n] - k0;
    if (c < c0 || c >= c1) continue;
    for (let r = 0; r < rows; r++) {
      const i = r * ld + c;
      if (hidden[i] !== 0) continue;
      const g = ds[i];
      for (let d = 0, a = (k0 + c) * D; d < D; d++) {
        const x = kc[a + d];
        if (!Number.isFinite(x)) dqTile[r * D + d] += g * x;
      }
    }
  }
}

/**
 * The part of dK += dSᵀ·Q that the zeroed elements of Qᵀ left out: for each row of badRows and each key of columns
 * [c0, c1) it sees (hidden 0), dS·q of the row's non-finite elements. qTile is Q as [rows, D]; dkAcc rows are keys.
 */
function addVisibleNonFiniteQ(
    ds: Float32Array, hidden: Uint8Array, ld: number, qTile: Float32Array, badRows: Int32Array, numBad: number,
    k0: number, c0: number, c1: number, dkAcc: Float64Array, D: number): void {
  for (let n = 0; n < numBad; n++) {
    const r = badRows[n];
    for (let c = c0; c < c1; c++) {
      const i = r * ld + c;
      if (hidden[i] !== 0) continue;
      const g = ds[i];
      for (let d = 0, a = r * D, o = (k0 + c) * D; d < D; d++) {
        const x = qTile[a + d];
        if (!Number.isFinite(x)) dkAcc[o + d] += g * x;
      }
    }
  }
}

/**
 * For columns [c0, c1) of each row, from the final scores t in s and dP in dp: P = exp(t − lse) into pT (transposed,
 * [col, row] with row stride ldT) and dS = scale·P∘(dP − δ)∘(1 − (t/softcap)²) into ds (same layout as s) and dsT
 * (transposed). Rows with lse = -Infinity get 0, and so do the masked elements (hidden 1, given on masked tiles), also
 * in a row whose lse is NaN. A visible score of -Infinity (an infinite k) gives P = 0 and dS = 0·(dP − δ), which is NaN
 * where dP or δ is, as in the reference.
 */
function probabilitiesAndScoreGrads(
    s: Float64Array, dp: Float64Array, ld: number, rows: number, c0: number, c1: number, rowLse: Float64Array,
    rowDelta: Float64Array, scale: number, invCap: number, hidden: Uint8Array | null, ds: Float32Array,
    pT: Float32Array, dsT: Float32Array, ldT: number): void {
  for (let r = 0; r < rows; r++) {
    const lse = rowLse[r], delta = rowDelta[r];
    const empty = lse === -Infinity;
    for (let c = c0, i = r * ld + c0, o = r; c < c1; c++, i++, o += ldT) {
      let p = 0, g = 0;
      if (!empty && (hidden === null || hidden[i] === 0)) {
        const t = s[i];
        p = Math.exp(t - lse);
        g = p * (dp[i] - delta) * scale;
        if (invCap !== 0) {  // t is finite with softcap
          const u = t * invCap;
          g *= 1 - u * u;
        }
      }
      ds[i] = g;
      pT[o] = p;
      dsT[o] = g;
    }
  }
}
