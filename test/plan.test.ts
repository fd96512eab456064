/**
 * The block schedule against brute force: every tile holding a visible (query, key) pair is visited, every tile marked
 * full has all pairs visible, window-only plans visit nothing extra, and the key-major lists are the transpose of the
 * query-major ones.
 */
import {expect} from 'chai';
import {bigBird, fromBlockMask, local, strided} from '../src/patterns/builders.js';
import {BlockLayout} from '../src/patterns/block_layout.js';
import {isVisible, makePlan} from '../src/plan/plan.js';
import {forEachTileInCol, forEachTileInRow, getSchedule, unevenWork} from '../src/plan/schedule.js';

interface PlanCase {
  seqQ: number;
  seqK: number;
  window: [number, number];
  layout?: (seqQ: number, seqK: number) => BlockLayout;
}

const planCases: PlanCase[] = [
  {seqQ: 77, seqK: 77, window: [-1, -1]},
  {seqQ: 77, seqK: 77, window: [-1, 0]},
  {seqQ: 7, seqK: 130, window: [-1, 0]},
  {seqQ: 130, seqK: 40, window: [-1, 0]},
  {seqQ: 130, seqK: 130, window: [16, 0]},
  {seqQ: 100, seqK: 60, window: [5, 9]},
  {seqQ: 33, seqK: 33, window: [0, 0]},
  {seqQ: 77, seqK: 77, window: [4, -1]},
  {seqQ: 130, seqK: 130, window: [-1, -1], layout: (a, b) => local(a, b, 16, {leftBlocks: 2})},
  {seqQ: 130, seqK: 300, window: [-1, 0], layout: (a, b) => strided(a, b, 7, {stride: 3})},
  {seqQ: 96, seqK: 96, window: [-1, 0], layout: (a, b) => bigBird(a, b, 8, {numHeads: 3, seed: 5})},
  {seqQ: 20, seqK: 24, window: [-1, -1], layout: () => fromBlockMask([[1, 0, 1], [0, 0, 0], [0, 1, 1]], 8)},
];

describe('block schedule', () => {
  for (const pc of planCases) {
    for (const [bq, bk] of [[16, 16], [32, 8], [8, 32], [64, 64], [1, 5]]) {
      const name = `seqQ ${pc.seqQ} seqK ${pc.seqK} window [${pc.window}]${pc.layout ? ' + layout' : ''} tiles ${
          bq}x${bk}`;
      it(name, () => {
        const layout = pc.layout ? pc.layout(pc.seqQ, pc.seqK) : null;
        const plan = makePlan({
          kind: layout ? 'sparse' : 'sliding', batch: 1, seqQ: pc.seqQ, seqK: pc.seqK, heads: 3, kvHeads: 1,
          headDim: 8, scale: 1, softcap: 0, windowLeft: pc.window[0], windowRight: pc.window[1], layout,
          hasKeyLengths: false,
        });
        const s = getSchedule(plan, bq, bk);
        for (let h = 0; h < s.numHeads; h++) {
          const visited = new Map<number, boolean>();
          for (let qt = 0; qt < s.numQueryTiles; qt++) {
            let last = -1;
            forEachTileInRow(s, h, qt, (kt, full) => {
              expect(kt, 'key tiles ascend').to.be.greaterThan(last);
              last = kt;
              visited.set(qt * s.numKeyTiles + kt, full);
            });
          }
          for (let qt = 0; qt < s.numQueryTiles; qt++) {
            for (let kt = 0; kt < s.numKeyTiles; kt++) {
              let any = false, all = true;
              for (let i = qt * bq; i < Math.min((qt + 1) * bq, pc.seqQ); i++) {
                for (let j = kt * bk; j < (kt + 1) * bk; j++) {
                  if (isVisible(plan, h, i, j)) any = true; else all = false;
                }
              }
              const v = visited.get(qt * s.numKeyTiles + kt);
              if (any) expect(v, `tile ${qt},${kt} has visible pairs`).to.not.equal(undefined);
              if (v === true) expect(all, `tile ${qt},${kt} marked full`).to.equal(true);
              if (v !== undefined) expect(v, `tile ${qt},${kt} full flag`).to.equal(all);
              if (!layout) expect(v !== undefined, `window tile ${qt},${kt} visited iff visible`).to.equal(any);
            }
          }
          const fromCols = new Map<number, boolean>();
          for (let kt = 0; kt < s.numKeyTiles; kt++) {
            forEachTileInCol(s, h, kt, (qt, full) => fromCols.set(qt * s.numKeyTiles + kt, full));
          }
          expect([...fromCols.entries()].sort()).to.deep.equal([...visited.entries()].sort());
        }
      });
    }
  }
});

describe('unevenWork (GPU workgroup order)', () => {
  const schedule = (windowLeft: number, windowRight: number) => getSchedule(makePlan({
    kind: 'sliding', batch: 1, seqQ: 4096, seqK: 4096, heads: 16, kvHeads: 16, headDim: 64, scale: 1, softcap: 0,
    windowLeft, windowRight, layout: null, hasKeyLengths: false,
  }), 64, 48);
  it('causal rows and columns are uneven', () => {
    expect(unevenWork(schedule(-1, 0))).to.equal(true);
    expect(unevenWork(schedule(-1, 0), true)).to.equal(true);
  });
  it('dense and sliding-window work is even', () => {
    expect(unevenWork(schedule(-1, -1))).to.equal(false);
    expect(unevenWork(schedule(1024, 0))).to.equal(false);
    expect(unevenWork(schedule(1024, 0), true)).to.equal(false);
  });
});
