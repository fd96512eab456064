/**
 * Tilings of the backward tile passes (flash_attention_grad_webgpu.ts) and how one is chosen for a device: the
 * workgroup memory a tiling needs, how its invocations share the score tile and the accumulators (gradThreadMap),
 * and chooseGradTiles, which attention_backward.ts asks once per pass.
 */

export type GradPass = 'dkdv' | 'dq';

/** The tiling of one tile pass; chosen by chooseGradTiles for the device's limits. */
export interface GradTiles {
  /** Rows of the tile a workgroup owns: keys ('dkdv') or queries ('dq'). */
  resident: number;
  /** Rows of each tile streamed past it: queries ('dkdv') or keys ('dq'). */
  streamed: number;
  /** headDim rounded up to a multiple of 16. */
  paddedDim: number;
  /** headDim columns of a streamed tile held at once (divides paddedDim, multiple of 4). */
  chunk: number;
  /** Invocations per workgroup. */
  threads: number;
  /** vec4 columns of the accumulators each invocation owns per chunk (default 1; must divide chunk / 4). */
  accCols?: number;
  /**
   * Load the next streamed tile into registers while this one computes, as the forward prefetches K/V (whole
   * streamed rows only: ignored when chunk < paddedDim, and by the dBias pass). Costs ceil(streamed · paddedDim/4 /
   * threads) × 2 vec4 registers per invocation.
   */
  prefetch?: boolean;
}

/** Bytes of workgroup memory a tile pass uses (with dropout, one u32 of keep bits per 4 entries of the tile). */
export function gradTilesStorageBytes(pass: GradPass, t: GradTiles, dropout = false): number {
  const residentVec4 = 2 * t.resident * (t.paddedDim / 4 + 1);
  const streamedVec4 = 2 * t.streamed * (t.chunk / 4 + 1);
  const tileFloats = (pass === 'dkdv' ? 2 : 1) * t.resident * t.streamed;
  const statFloats = 2 * (pass === 'dkdv' ? t.streamed : t.resident);
  return 16 * (residentVec4 + streamedVec4) + 4 * (tileFloats + statFloats) + (dropout ? t.resident * t.streamed : 0);
}

/** How the invocations share the score tile (phase A/B) and the accumulators (phase C). Throws if t cannot work. */
export interface GradThreadMap {
  /** Score tile: each invocation owns rowsPerThread resident × colsPerThread streamed entries, strided by the
   *  number of invocations along each axis (residentThreads × streamedThreads = threads). */
  rowsPerThread: number;
  colsPerThread: number;
  residentThreads: number;
  streamedThreads: number;
  /** Accumulators: of each chunk, invocation owns vec4 columns colGroup + a·colGroups (a < accCols) of resident rows
   *  rowGroup + m·rowGroups (m < accRows), with colGroup = index % colGroups, rowGroup = index / colGroups. */
  chunkVec4: number;
  accCols: number;
  colGroups: number;
  rowGroups: number;
  accRows: number;
}

export function gradThreadMap(t: GradTiles): GradThreadMap {
  const {resident: BR, streamed: BS, threads: T} = t;
  const scores = BR * BS;
  if (scores % T !== 0) throw new Error(`grad tiles: ${BR}x${BS} scores do not split over ${T} invocations`);
  const perThread = scores / T;
  let colsPerThread = 1;
  for (const c of [4, 2, 1]) {
    if (perThread % c === 0 && BS % c === 0 && T % (BS / c) === 0 && BR % (perThread / c) === 0 &&
        (BS / c) * (BR / (perThread / c)) === T) {
      colsPerThread = c;
      break;
    }
  }
  const rowsPerThread = perThread / colsPerThread;
  const streamedThreads = BS / colsPerThread, residentThreads = BR / rowsPerThread;
  if (streamedThreads * residentThreads !== T || !Number.isInteger(rowsPerThread)) {
    throw new Error(`grad tiles: no score mapping for ${BR}x${BS} over ${T} invocations`);
  }
  const chunkVec4 = t.chunk / 4, accCols = t.accCols ?? 1;
  if (!Number.isInteger(chunkVec4 / accCols)) throw new Error(`grad tiles: accCols ${accCols} must divide ${chunkVec4}`);
  const colGroups = chunkVec4 / accCols;
  if (colGroups > T) throw new Error(`grad tiles: chunk ${t.chunk} wider than 4 × ${accCols} × ${T} invocations`);
  const rowGroups = Math.floor(T / colGroups);
  return {
    rowsPerThread, colsPerThread, residentThreads, streamedThreads, chunkVec4, accCols, colGroups, rowGroups,
    accRows: Math.ceil(BR / rowGroups),
  };
}

/** Device limits the tile choice depends on. */
export interface GradTileLimits {
  maxComputeWorkgroupStorageSize: number;
  maxComputeInvocationsPerWorkgroup: number;
}

/** Floats of accumulators one invocation may hold before the compiler would spill. */
const MAX_ACCUMULATOR_FLOATS = 64;
const ROWS = [64, 32, 16, 8, 4];
const THREADS = [128, 256, 64, 32];

/** Whether `t` is a tiling the tile program can run on a device with `limits`. */
export function gradTilesFit(pass: GradPass, t: GradTiles, limits: GradTileLimits, dropout = false): boolean {
  if (t.threads > limits.maxComputeInvocationsPerWorkgroup || t.paddedDim % t.chunk !== 0 || t.chunk % 4 !== 0) {
    return false;
  }
  if (gradTilesStorageBytes(pass, t, dropout) > limits.maxComputeWorkgroupStorageSize) return false;
  try {
    gradThreadMap(t);
    return true;
  } catch {
    return false;
  }
}

export function paddedHeadDim(headDim: number): number {
  return Math.ceil(headDim / 16) * 16;
}

/**
 * The tiling for a pass: the largest score tile (resident × streamed rows) whose whole streamed rows fit workgroup
 * memory, preferring more resident rows (each is loaded once per workgroup) and 128 invocations; 2-16 scores and at
 * most MAX_ACCUMULATOR_FLOATS accumulator floats per invocation. Only when no such tile fits is headDim streamed in
 * chunks (the fallback for large headDim on devices with little workgroup memory).
 */
export function chooseGradTiles(
    pass: GradPass, headDim: number, limits: GradTileLimits, dropout = false): GradTiles {
  const paddedDim = paddedHeadDim(headDim);
  const accumulators = pass === 'dkdv' ? 2 : 1;
  const candidates: GradTiles[] = [];
  for (const chunked of [false, true]) {
    for (const resident of ROWS) {
      for (const streamed of ROWS) {
        for (const threads of THREADS) {
          const perThread = resident * streamed / threads;
          if (perThread < 2 || perThread > 16) continue;
          const chunks = chunked ? [paddedDim / 2, paddedDim / 4, 32, 16] : [paddedDim];
          for (const chunk of chunks) {
            const t = {resident, streamed, paddedDim, chunk, threads};
            if (!gradTilesFit(pass, t, limits, dropout)) continue;
            const {accRows} = gradThreadMap(t);
            if (accumulators * accRows * 4 * (paddedDim / chunk) > MAX_ACCUMULATOR_FLOATS) continue;
            candidates.push(t);
            break;
          }
        }
      }
    }
    if (candidates.length > 0) break;
  }
  if (candidates.length === 0) {
    throw new Error(`attention backward (webgpu): no tiling for headDim ${headDim} fits ${
        limits.maxComputeWorkgroupStorageSize} bytes of workgroup memory`);
  }
  const rank = (t: GradTiles) => [-t.resident * t.streamed, -t.resident, Math.abs(t.threads - 128), -t.chunk];
  candidates.sort((a, b) => {
    const ra = rank(a), rb = rank(b);
    for (let i = 0; i < ra.length; i++) if (ra[i] !== rb[i]) return ra[i] - rb[i];
    return 0;
  });
  // Prefetch wherever whole streamed rows fit (the chunked fallback reloads chunks and cannot).
  return {...candidates[0], prefetch: candidates[0].chunk === paddedDim};
}
