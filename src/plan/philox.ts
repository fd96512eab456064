/**
 * Philox4x32-10 (Salmon, Moraes, Dror, Shaw: "Parallel random numbers: as easy as 1, 2, 3", SC'11), the
 * counter-based generator behind FlashAttention's and PyTorch's dropout, and the dropout semantics built on it.
 * This file is the reference every backend matches bit for bit: the cpu and composite kernels call it, the WGSL and
 * GLSL kernels transcribe it (kernels/webgpu/philox_wgsl.ts, kernels/webgl/philox_glsl.ts).
 *
 * Dropout of element (b, h, i, j) — batch, query head, query row, key — with seed s and rate r:
 *   key     = (s mod 2^32, floor(s / 2^32))
 *   counter = (floor(j / 4), i, h, b)
 *   word    = output word (j mod 4) of philox4x32_10(counter, key)
 *   kept    = word >= floor(r · 2^32); kept probabilities are scaled by 1 / (1 − r).
 *
 * Only 32-bit unsigned arithmetic is used; the 32×32→64 multiply is built from 16-bit halves (WGSL has no mulhi and
 * GLSL ES 3.0 no umulExtended), so the same steps run exactly in every shading language.
 */

export const PHILOX_M0 = 0xD2511F53;
export const PHILOX_M1 = 0xCD9E8D57;
export const PHILOX_W0 = 0x9E3779B9;
export const PHILOX_W1 = 0xBB67AE85;
export const PHILOX_ROUNDS = 10;

/** High 32 bits of the 64-bit product a·b of two uint32, from 16-bit halves (every partial product < 2^32). */
export function mulhi32(a: number, b: number): number {
  const aLo = a & 0xffff, aHi = a >>> 16, bLo = b & 0xffff, bHi = b >>> 16;
  const lolo = aLo * bLo;            // < 2^32
  const hilo = aHi * bLo;            // < 2^32
  const lohi = aLo * bHi;            // < 2^32
  const hihi = aHi * bHi;            // < 2^32
  // Middle column: the high half of lolo plus the low halves of the cross terms (< 3·2^16, no overflow).
  const mid = (lolo >>> 16) + (hilo & 0xffff) + (lohi & 0xffff);
  return (hihi + (hilo >>> 16) + (lohi >>> 16) + (mid >>> 16)) >>> 0;
}

/** The four output words of Philox4x32-10 for counter (c0..c3) and key (k0, k1), all uint32. */
export function philox4x32(
    c0: number, c1: number, c2: number, c3: number, k0: number, k1: number,
    out: Uint32Array = new Uint32Array(4)): Uint32Array {
  let x0 = c0 >>> 0, x1 = c1 >>> 0, x2 = c2 >>> 0, x3 = c3 >>> 0;
  let key0 = k0 >>> 0, key1 = k1 >>> 0;
  for (let round = 0; round < PHILOX_ROUNDS; round++) {
    if (round > 0) {  // the key schedule bumps before every round but the first
      key0 = (key0 + PHILOX_W0) >>> 0;
      key1 = (key1 + PHILOX_W1) >>> 0;
    }
    const hi0 = mulhi32(PHILOX_M0, x0), lo0 = Math.imul(PHILOX_M0, x0) >>> 0;
    const hi1 = mulhi32(PHILOX_M1, x2), lo1 = Math.imul(PHILOX_M1, x2) >>> 0;
    const n0 = (hi1 ^ x1 ^ key0) >>> 0;
    const n2 = (hi0 ^ x3 ^ key1) >>> 0;
    x0 = n0; x1 = lo1; x2 = n2; x3 = lo0;
  }
  out[0] = x0; out[1] = x1; out[2] = x2; out[3] = x3;
  return out;
}

/** Dropout parameters as the kernels take them (all exact uint32 / float32 values). */
export interface DropoutPlan {
  rate: number;
  /** The integer seed the user gave, in [0, 2^53). */
  seed: number;
  /** key = (seedLo, seedHi) = (seed mod 2^32, floor(seed / 2^32)). */
  seedLo: number;
  seedHi: number;
  /** An element is kept iff its word >= threshold = floor(rate · 2^32). */
  threshold: number;
  /** 1 / (1 − rate): the scale of kept probabilities. */
  keepScale: number;
}

export function makeDropoutPlan(rate: number, seed: number): DropoutPlan {
  return {
    rate, seed,
    seedLo: seed % 4294967296,
    seedHi: Math.floor(seed / 4294967296),
    threshold: Math.min(Math.floor(rate * 4294967296), 4294967295),
    keepScale: 1 / (1 - rate),
  };
}

/**
 * Keep decisions of keys [j0, j1) of row (b, h, i): keep[j - j0] = 1 if kept. One Philox call serves four keys.
 */
export function dropoutKeepRow(
    d: DropoutPlan, b: number, h: number, i: number, j0: number, j1: number,
    keep: Uint8Array = new Uint8Array(j1 - j0)): Uint8Array {
  const words = new Uint32Array(4);
  let group = -1;
  for (let j = j0; j < j1; j++) {
    const g = j >>> 2;
    if (g !== group) {
      philox4x32(g, i, h, b, d.seedLo, d.seedHi, words);
      group = g;
    }
    keep[j - j0] = words[j & 3] >= d.threshold ? 1 : 0;
  }
  return keep;
}

/** Whether element (b, h, i, j) is kept (one Philox call; use dropoutKeepRow for runs of keys). */
export function dropoutKeep(d: DropoutPlan, b: number, h: number, i: number, j: number): boolean {
  const w = philox4x32(j >>> 2, i, h, b, d.seedLo, d.seedHi);
  return w[j & 3] >= d.threshold;
}
