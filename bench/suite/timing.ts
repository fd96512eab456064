/**
 * Wall-clock timing of an asynchronous GPU (or synchronous CPU) call, env-agnostic.
 *
 * A sample is `reps` back-to-back calls followed by ONE sync on the last call's result (on GPUs the queue runs in
 * order, so the last result being readable means every call finished); sample time / reps is one call's time.
 * reps grows only when one call is shorter than `targetSampleMs`, so the sync's read-back latency is amortized on
 * fast GPUs and absent everywhere else. The reported figure is the median over samples.
 */
export interface TimingOptions {
  /** Calls before timing (shader compilation, allocator warm-up). */
  warmup: number;
  /** Time to spend on samples, roughly (at least minSamples are taken). */
  budgetMs: number;
  minSamples: number;
  maxSamples: number;
  /** Batch calls into one sample until it lasts this long (amortizes the sync). */
  targetSampleMs: number;
}

export interface Timing {
  medianMs: number;
  minMs: number;
  maxMs: number;
  /** Per-call times of each sample. */
  samplesMs: number[];
  repsPerSample: number;
}

/** One call of the thing being timed: start it (returns a handle), wait for it, free it. */
export interface Timed<H> {
  call(): H | Promise<H>;
  sync(handle: H): Promise<void>;
  dispose(handle: H): void;
}

const now = () => performance.now();

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m] : (s[m - 1] + s[m]) / 2;
}

async function sample<H>(t: Timed<H>, reps: number): Promise<number> {
  const start = now();
  let last: H | null = null;
  for (let r = 0; r < reps; r++) {
    const h = await t.call();
    if (last != null) t.dispose(last);
    last = h;
  }
  await t.sync(last!);
  const ms = (now() - start) / reps;
  t.dispose(last!);
  return ms;
}

export async function timeIt<H>(t: Timed<H>, o: TimingOptions): Promise<Timing> {
  // Warm-up compiles shaders and fills caches: once is enough for calls that outlast the whole budget.
  for (let i = 0; i < o.warmup; i++) {
    if (await sample(t, 1) > o.budgetMs) break;
  }
  const first = await sample(t, 1);
  const reps = Math.max(1, Math.min(1000, Math.ceil(o.targetSampleMs / Math.max(first, 1e-3))));
  // At least minSamples, except for calls longer than the budget: two samples then.
  const minSamples = first > o.budgetMs ? Math.min(2, o.minSamples) : o.minSamples;
  const count = Math.max(minSamples, Math.min(o.maxSamples, Math.floor(o.budgetMs / (first * reps))));
  const samplesMs = reps === 1 ? [first] : [];
  while (samplesMs.length < count) samplesMs.push(await sample(t, reps));
  return {
    medianMs: median(samplesMs), minMs: Math.min(...samplesMs), maxMs: Math.max(...samplesMs), samplesMs,
    repsPerSample: reps,
  };
}
