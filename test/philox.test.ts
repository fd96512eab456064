/**
 * The dropout generator (src/plan/philox.ts) against Random123's published known-answer vectors for
 * Philox4x32-10 (kat_vectors in Random123 1.09: counter/key all zero, all ones, and the digits of pi), the 16-bit
 * mulhi against BigInt, and the dropout semantics built on it (counter layout, threshold, keep rate).
 */
import {expect} from 'chai';
import {dropoutKeep, dropoutKeepRow, makeDropoutPlan, mulhi32, philox4x32} from '../src/plan/philox.js';

const hex = (w: Uint32Array) => Array.from(w, (x) => x.toString(16).padStart(8, '0'));

describe('Philox4x32-10', () => {
  it('matches the Random123 known-answer vectors', () => {
    expect(hex(philox4x32(0, 0, 0, 0, 0, 0))).to.deep.equal(['6627e8d5', 'e169c58d', 'bc57ac4c', '9b00dbd8']);
    const ones = 0xffffffff;
    expect(hex(philox4x32(ones, ones, ones, ones, ones, ones)))
        .to.deep.equal(['408f276d', '41c83b0e', 'a20bc7c6', '6d5451fd']);
    expect(hex(philox4x32(0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344, 0xa4093822, 0x299f31d0)))
        .to.deep.equal(['d16cfe09', '94fdcceb', '5001e420', '24126ea1']);
  });

  it('builds the high word of a 32x32 product from 16-bit halves exactly', () => {
    let a = 12345;
    const samples = [0, 1, 0xffff, 0x10000, 0xffffffff, 0x80000000, 0xD2511F53, 0xCD9E8D57];
    for (let n = 0; n < 2000; n++) {
      a = (Math.imul(a, 1103515245) + 12345) >>> 0;
      samples.push(a);
    }
    for (let i = 0; i < samples.length; i++) {
      const x = samples[i], y = samples[(i * 7 + 3) % samples.length];
      expect(mulhi32(x, y), `${x}·${y}`).to.equal(Number((BigInt(x) * BigInt(y)) >> 32n));
    }
  });
});

describe('dropout semantics', () => {
  it('splits the seed into the key (seed mod 2^32, floor(seed / 2^32)) and sets threshold floor(rate·2^32)', () => {
    const d = makeDropoutPlan(0.1, 2 ** 40 + 77);
    expect([d.seedLo, d.seedHi]).to.deep.equal([77, 256]);
    expect(d.threshold).to.equal(Math.floor(0.1 * 2 ** 32));
    expect(d.keepScale).to.be.closeTo(1 / 0.9, 1e-15);
  });

  it('reads word j mod 4 of counter (floor(j/4), i, h, b)', () => {
    const d = makeDropoutPlan(0.5, 99);
    const words = philox4x32(2, 5, 1, 3, 99, 0);
    for (let j = 8; j < 12; j++) expect(dropoutKeep(d, 3, 1, 5, j)).to.equal(words[j - 8] >= d.threshold);
    const row = dropoutKeepRow(d, 3, 1, 5, 6, 13);
    for (let j = 6; j < 13; j++) expect(row[j - 6]).to.equal(dropoutKeep(d, 3, 1, 5, j) ? 1 : 0);
  });

  it('keeps 1 − rate of the elements within statistical bounds; other seeds give other masks', () => {
    for (const rate of [0.1, 0.5, 0.9]) {
      const d = makeDropoutPlan(rate, 1234), e = makeDropoutPlan(rate, 1235);
      let kept = 0, differ = 0;
      const n = 64 * 1024;
      for (let i = 0; i < 64; i++) {
        const a = dropoutKeepRow(d, 0, 1, i, 0, 1024), b = dropoutKeepRow(e, 0, 1, i, 0, 1024);
        for (let j = 0; j < 1024; j++) {
          kept += a[j];
          differ += a[j] !== b[j] ? 1 : 0;
        }
      }
      const sigma = Math.sqrt(n * rate * (1 - rate));
      expect(Math.abs(kept - n * (1 - rate)), `rate ${rate}`).to.be.below(5 * sigma);
      expect(differ, `rate ${rate}: masks of seeds 1234 and 1235 differ`).to.be.above(n * 2 * rate * (1 - rate) * 0.9);
    }
  });

  it('rate 0 keeps everything', () => {
    const d = makeDropoutPlan(0, 5);
    expect(Array.from(dropoutKeepRow(d, 0, 0, 0, 0, 64)).every((x) => x === 1)).to.equal(true);
  });
});
