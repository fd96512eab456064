/**
 * The walk over the block schedule that the cpu forward and backward executors share: for one (query head, query
 * tile), the key tiles its run-length coded runs list, in ascending key order, each with the columns the tile products
 * need and whether the tile needs the per-element mask.
 *
 * It is a cursor (startQueryTile, then nextKeyTile until false) rather than a callback so the executors keep their
 * per-tile work inline in their own loops: no closure per query tile, one monomorphic call per key tile.
 */
import type {AttentionPlan} from '../../src/plan/plan.js';
import {type BlockSchedule, getSchedule} from '../../src/plan/schedule.js';
import {chooseTiles, PartialTile} from './attention_cpu_util.js';
import type {OptionOperands} from './option_operands_cpu.js';

export class KeyTileWalk {
  /** Query rows × keys per tile (chooseTiles). */
  readonly blockQ: number;
  readonly blockK: number;
  readonly schedule: BlockSchedule;

  /**
   * The current query tile: rows [q0, q0 + rows) of query head h of batch b, keys below keyLen (keyLengths of its
   * batch), query positions from q0 + offset (the batch's query offset).
   */
  q0 = 0;
  rows = 0;
  b = 0;
  h = 0;
  keyLen = 0;
  offset = 0;

  /**
   * The current key tile: keys from k0; columns [c0, c1) of it (tile-relative) are the only ones with a visible key;
   * masked: some element in them is not visible, so scores need mask() before use.
   */
  k0 = 0;
  c0 = 0;
  c1 = 0;
  masked = false;

  private readonly partial: PartialTile;
  private run = 0;
  private runEnd = 0;
  /** Key tiles [tile, tileEnd) of the open run are still to come; `full` is that run's flag. */
  private tile = 0;
  private tileEnd = 0;
  private full = false;

  /** Every tile gets the per-element conditions of the options (mask, segment ids, bias). */
  private readonly elementWise: boolean;

  constructor(readonly plan: AttentionPlan, readonly ops: OptionOperands) {
    this.elementWise = ops.elementWise;
    const {blockQ, blockK} = chooseTiles(plan);
    this.blockQ = blockQ;
    this.blockK = blockK;
    this.schedule = getSchedule(plan, blockQ, blockK);
    this.partial = new PartialTile(blockQ);
  }

  /**
   * Moves to query tile qt of query head h (mask head h % numHeads) of batch b with keyLen keys; sets q0 and rows
   * even when it returns false, which it does when the schedule lists no key tile for this query tile.
   */
  startQueryTile(b: number, h: number, qt: number, keyLen: number): boolean {
    const {rowRunStart, numQueryTiles, numHeads} = this.schedule;
    const row = (h % numHeads) * numQueryTiles + qt;
    this.q0 = qt * this.blockQ;
    this.rows = Math.min(this.blockQ, this.plan.seqQ - this.q0);
    this.b = b;
    this.h = h;
    this.keyLen = keyLen;
    this.offset = this.ops.offsets[b];
    this.run = rowRunStart[row];
    this.runEnd = rowRunStart[row + 1];
    this.tile = this.tileEnd = 0;
    return this.run !== this.runEnd;
  }

  /**
   * Moves to the next listed key tile that has a visible key (k0, c0, c1, masked); false when none is left. Tiles at or
   * past keyLen end the walk: key tiles ascend, so the rest is padding.
   */
  nextKeyTile(): boolean {
    const {blockK, keyLen} = this;
    for (;;) {
      if (this.tile === this.tileEnd) {
        if (this.run === this.runEnd) return false;
        const runs = this.schedule.rowRuns, i = 3 * this.run++;
        this.tile = runs[i];
        this.tileEnd = this.tile + runs[i + 1];
        this.full = runs[i + 2] === 1;
        continue;
      }
      const k0 = this.tile++ * blockK;
      if (k0 >= keyLen) {
        this.run = this.runEnd;
        this.tile = this.tileEnd;
        return false;
      }
      const cols = Math.min(blockK, this.plan.seqK - k0);
      this.k0 = k0;
      this.masked = !this.full || k0 + cols > keyLen || this.elementWise;
      if (!this.masked) {
        this.c0 = 0;
        this.c1 = cols;
        return true;
      }
      const partial = this.partial;
      if (partial.setRanges(this.plan, this.q0, this.rows, k0, cols, keyLen, this.offset) &&
          (!this.elementWise ||
           partial.restrict(this.plan, this.ops, this.b, this.h, this.q0, this.rows, k0, blockK, cols))) {
        this.c0 = partial.c0;
        this.c1 = partial.c1;
        // A tile whose element conditions allow everything takes the unmasked path (issue 16: blocked products, no
        // per-element mask), as tiles the schedule lists as full do.
        if (this.elementWise && partial.allVisible) this.masked = false;
        return true;
      }
    }
  }

  /**
   * Sets the masked scores of the current (masked) key tile to -Infinity: s holds its rows with row stride ld. With
   * `hidden` (same layout), also marks the masked elements of columns [c0, c1) with 1 and the visible ones with 0.
   */
  mask(s: Float64Array, ld: number, hidden: Uint8Array | null = null): void {
    this.partial.mask(this.plan, this.h, this.q0, this.rows, this.k0, s, ld, hidden);
  }

  /** Adds the bias and ALiBi terms (ops.scoreTerms) to columns [c0, c1) of the current tile's scores. */
  addScoreTerms(s: Float64Array, ld: number): void {
    const {b, h, q0, k0, c0, c1, ops} = this;
    for (let r = 0; r < this.rows; r++) ops.scoreTerms(s, r * ld, b, h, q0 + r, k0, c0, c1);
  }

  /** kept[r·ld + c] = dropout keep decision (0/1) of the current tile's elements, columns [c0, c1). */
  keepMask(kept: Uint8Array, ld: number): void {
    const {b, h, q0, k0, c0, c1, ops} = this;
    for (let r = 0; r < this.rows; r++) ops.keepRow(kept, r * ld, b, h, q0 + r, k0, c0, c1);
  }
}
