/**
 * A block-sparse attention layout: which (query block, key block) pairs may attend.
 *
 * `mask[(h * numQueryBlocks + qb) * numKeyBlocks + kb]` is 1 when every query of block `qb` may see every key of
 * block `kb` for layout head `h`. `numHeads` is 1 (same pattern for every head) or the op's `heads`.
 */
export interface BlockLayout {
  readonly blockSize: number;
  readonly numHeads: number;
  readonly numQueryBlocks: number;
  readonly numKeyBlocks: number;
  readonly mask: Uint8Array;
}

export function createLayout(
    numHeads: number, numQueryBlocks: number, numKeyBlocks: number, blockSize: number,
    isOn: (h: number, qb: number, kb: number) => boolean): BlockLayout {
  checkPositiveInt('blockSize', blockSize);
  const mask = new Uint8Array(numHeads * numQueryBlocks * numKeyBlocks);
  for (let h = 0; h < numHeads; h++) {
    for (let qb = 0; qb < numQueryBlocks; qb++) {
      for (let kb = 0; kb < numKeyBlocks; kb++) {
        if (isOn(h, qb, kb)) mask[(h * numQueryBlocks + qb) * numKeyBlocks + kb] = 1;
      }
    }
  }
  return {blockSize, numHeads, numQueryBlocks, numKeyBlocks, mask};
}

export function layoutBlockOn(layout: BlockLayout, h: number, qb: number, kb: number): boolean {
  return layout.mask[(h * layout.numQueryBlocks + qb) * layout.numKeyBlocks + kb] !== 0;
}

/** Number of on blocks divided by all blocks (over every layout head). */
export function layoutDensity(layout: BlockLayout): number {
  let on = 0;
  for (let i = 0; i < layout.mask.length; i++) on += layout.mask[i];
  return layout.mask.length === 0 ? 0 : on / layout.mask.length;
}

export function checkPositiveInt(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 1) {
    throw new Error(`${name} must be a positive integer, got ${value}`);
  }
}

export function checkNonNegativeInt(name: string, value: number): void {
  if (!Number.isInteger(value) || value < 0) {
    throw new Error(`${name} must be a non-negative integer, got ${value}`);
  }
}
