/**
 * Philox4x32-10 in WGSL: a line-by-line transcription of src/plan/philox.ts (the reference every backend matches bit
 * for bit). WGSL has no mulhi, so the high half of the 32×32 product is built from 16-bit halves exactly as mulhi32
 * there; u32 arithmetic wraps, like `>>> 0` there. The dropout parameters come from uniforms (seedLo, seedHi,
 * dropThreshold: they change every training step and must never be baked into the shader).
 */
import {PHILOX_M0, PHILOX_M1, PHILOX_ROUNDS, PHILOX_W0, PHILOX_W1} from '../../src/plan/philox.js';

const hex = (x: number) => `0x${x.toString(16)}u`;

export const PHILOX_WGSL = `
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

fn philox4x32(counter: vec4<u32>, seed: vec2<u32>) -> vec4<u32> {
  var x = counter;
  var key = seed;
  for (var round = 0; round < ${PHILOX_ROUNDS}; round++) {
    if (round > 0) { key = key + vec2<u32>(${hex(PHILOX_W0)}, ${hex(PHILOX_W1)}); }
    let hi0 = mulhi32(${hex(PHILOX_M0)}, x.x);
    let lo0 = ${hex(PHILOX_M0)} * x.x;
    let hi1 = mulhi32(${hex(PHILOX_M1)}, x.z);
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
