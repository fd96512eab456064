/**
 * Philox4x32-10 in GLSL ES 3.0, transcribed step for step from src/plan/philox.ts (the reference every backend
 * matches bit for bit). GLSL ES 3.0 has uint arithmetic (wrapping mod 2^32) but no umulExtended, so the high word of
 * the 32×32 product is built from 16-bit halves exactly as mulhi32 does; the ten rounds are unrolled (no loop
 * counter: llvmpipe's 65,535-iteration limit never comes near).
 */
import {PHILOX_M0, PHILOX_M1, PHILOX_ROUNDS, PHILOX_W0, PHILOX_W1} from '../../src/plan/philox.js';

const hex = (x: number) => `0x${x.toString(16).toUpperCase()}u`;

/** GLSL mulhi32(a, b) and philox4x32(counter, key). */
export const PHILOX_GLSL = `
    // High 32 bits of a·b from 16-bit halves (every partial product < 2^32; the middle column < 3·2^16).
    uint mulhi32(uint a, uint b) {
      uint aLo = a & 0xFFFFu, aHi = a >> 16u, bLo = b & 0xFFFFu, bHi = b >> 16u;
      uint lolo = aLo * bLo, hilo = aHi * bLo, lohi = aLo * bHi, hihi = aHi * bHi;
      uint mid = (lolo >> 16u) + (hilo & 0xFFFFu) + (lohi & 0xFFFFu);
      return hihi + (hilo >> 16u) + (lohi >> 16u) + (mid >> 16u);
    }
    uvec4 philox4x32(uvec4 x, uvec2 key) {
      uint hi0, lo0, hi1, lo1;
      ${Array.from({length: PHILOX_ROUNDS}, (_, round) => `${round > 0 ? `
      key += uvec2(${hex(PHILOX_W0)}, ${hex(PHILOX_W1)});` : ''}
      hi0 = mulhi32(${hex(PHILOX_M0)}, x.x); lo0 = ${hex(PHILOX_M0)} * x.x;
      hi1 = mulhi32(${hex(PHILOX_M1)}, x.z); lo1 = ${hex(PHILOX_M1)} * x.z;
      x = uvec4(hi1 ^ x.y ^ key.x, lo1, hi0 ^ x.w ^ key.y, lo0);`).join('')}
      return x;
    }
`;
