/**
 * Philox4x32-10 in WGSL: the stream of src/plan/philox.ts (the reference every backend matches bit for bit). WGSL has
 * no mulhi, so the high word of each 32×32 product is built from 16-bit halves; u32 arithmetic wraps, like `>>> 0`
 * there. The dropout parameters come from uniforms (seedLo, seedHi, dropThreshold: they change every training step
 * and must never be baked into the shader).
 *
 * Two ways to build the high word, the same bits (every partial sum below < 2^32, so both are exact):
 *   'halves'  mulhi32 of the reference, step for step: four 16×16 products, then a middle column and a sum of four
 *             shifted terms (17 operations; ~15 instructions with 3-input adds);
 *   'hd'      Hacker's Delight's mulhu (2nd ed., fig. 8-2) with the multiplier's halves folded in as constants: the
 *             same four products, but the carries ride in two 32-bit partial sums, t = aHi·x0 + (aLo·x0 >> 16) and
 *             w = aLo·x1 + (t & 0xffff), so three of them are multiply-adds (14 operations, ~11 instructions with
 *             integer mad). The default: dropout's cost in the forward is mostly these (20 per Philox call, one call
 *             per 4 keys). Whether it is faster is for the device to say (bench/device/options_sweep.ts).
 */
import {PHILOX_M0, PHILOX_M1, PHILOX_ROUNDS, PHILOX_W0, PHILOX_W1} from '../../src/plan/philox.js';

const hex = (x: number) => `0x${x.toString(16)}u`;

export type PhiloxMulhi = 'halves' | 'hd';

/** WGSL `name(x) -> u32`: the high word of m·x for the constant m, Hacker's Delight's mulhu. */
function constantMulhi(name: string, m: number): string {
  const lo = hex(m & 0xffff), hi = hex(m >>> 16);
  return `
fn ${name}(x: u32) -> u32 {
  let x0 = x & 0xffffu;
  let x1 = x >> 16u;
  let t = ${hi} * x0 + ((${lo} * x0) >> 16u);
  let w = ${lo} * x1 + (t & 0xffffu);
  return ${hi} * x1 + (t >> 16u) + (w >> 16u);
}`;
}

const HALVES_MULHI = `
fn mulhi32(a: u32, b: u32) -> u32 {
  let aLo = a & 0xffffu;
  let aHi = a >> 16u;
  let bLo = b & 0xffffu;
  let bHi = b >> 16u;
  let lolo = aLo * bLo;
  let hilo = aHi * bLo;
  let lohi = aLo * bHi;
  let hihi = aHi * bHi;
  let mid = (lolo >> 16u) + (hilo & 0xffffu) + (lohi & 0xffffu);
  return hihi + (hilo >> 16u) + (lohi >> 16u) + (mid >> 16u);
}
fn mulhiM0(x: u32) -> u32 { return mulhi32(${hex(PHILOX_M0)}, x); }
fn mulhiM1(x: u32) -> u32 { return mulhi32(${hex(PHILOX_M1)}, x); }`;

/** philox4x32(counter, seed) and dropoutKeepBits(g, i, h, b), with the high words built the `mulhi` way. */
export function philoxWgsl(mulhi: PhiloxMulhi = 'hd'): string {
  return `${mulhi === 'hd' ? constantMulhi('mulhiM0', PHILOX_M0) + constantMulhi('mulhiM1', PHILOX_M1) : HALVES_MULHI}

fn philox4x32(counter: vec4<u32>, seed: vec2<u32>) -> vec4<u32> {
  var x = counter;
  var key = seed;
  for (var round = 0; round < ${PHILOX_ROUNDS}; round++) {
    if (round > 0) { key = key + vec2<u32>(${hex(PHILOX_W0)}, ${hex(PHILOX_W1)}); }
    let hi0 = mulhiM0(x.x);
    let lo0 = ${hex(PHILOX_M0)} * x.x;
    let hi1 = mulhiM1(x.z);
    let lo1 = ${hex(PHILOX_M1)} * x.z;
    x = vec4<u32>(hi1 ^ x.y ^ key.x, lo1, hi0 ^ x.w ^ key.y, lo0);
  }
  return x;
}

// Keep bits of keys 4g .. 4g + 3 of row (b, h, i): bit e is key 4g + e (src/plan/philox.ts dropoutKeepRow).
fn dropoutKeepBits(g: i32, i: i32, h: i32, b: i32) -> u32 {
  let w = philox4x32(vec4<u32>(u32(g), u32(i), u32(h), u32(b)), vec2<u32>(uniforms.seedLo, uniforms.seedHi));
  let t = uniforms.dropThreshold;
  return select(0u, 1u, w.x >= t) | select(0u, 2u, w.y >= t) | select(0u, 4u, w.z >= t) | select(0u, 8u, w.w >= t);
}
`;
}

/** The default (Hacker's Delight) Philox, as every webgpu program includes it. */
export const PHILOX_WGSL = philoxWgsl('hd');

/**
 * Dropout through workgroup memory (the fp32 forward and backward): `keepTile` holds the keep bits of the (query tile
 * q0, key tile k0), one u32 per 4 keys, `rowWords` per query row. fillKeepTile computes them, one dropoutKeepBits
 * call per entry spread over the `threads` invocations (tid, h in scope); keepTileBit reads one.
 */
export function fillKeepTile(entries: string | number, rowWords: string | number, threads: string | number,
                             batch: string): string {
  return `
      for (var e = tid; e < ${entries}; e += ${threads}) {
        keepTile[e] = dropoutKeepBits(k0 / 4 + e % ${rowWords}, q0 + e / ${rowWords}, h, ${batch});
      }`;
}

/** The keep bit of (query `row`, key `key`) of the tile, both relative to it, from keepTile: a WGSL bool. */
export function keepTileBit(row: string, rowWords: string | number, key: string): string {
  return `((keepTile[(${row}) * ${rowWords} + (${key}) / 4] >> u32((${key}) % 4)) & 1u) == 1u`;
}
