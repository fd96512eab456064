/**
 * Timing for the WebGPU benchmarks in node: `iters` calls back to back (outputs disposed as they come), then one
 * sync on the device queue (submit + onSubmittedWorkDone, no read-back); the result is the median per-call time
 * over `repeats` such batches (2 for calls over 2 s). iters grows until a batch lasts about `targetMs`.
 */
import * as tf from '@tensorflow/tfjs-core';
import {median} from './timing.js';

type Backendish = {
  ensureCommandEncoderReady(): void; endComputePassEncoder(): void; submitQueue(): void; device: GPUDevice;
};

/** Submits tfjs's pending WebGPU commands and waits until the GPU has run them. */
export async function syncQueue(): Promise<void> {
  const b = tf.backend() as unknown as Backendish;
  b.ensureCommandEncoderReady();
  b.endComputePassEncoder();
  b.submitQueue();
  await b.device.queue.onSubmittedWorkDone();
}

export interface QueueTimingOptions {
  targetMs?: number;
  repeats?: number;
  maxIters?: number;
}

/** Median ms per call of fn (which returns the tensors to dispose). */
export async function timeOnQueue(
    fn: () => tf.Tensor[], {targetMs = 250, repeats = 5, maxIters = 100}: QueueTimingOptions = {}): Promise<number> {
  tf.dispose(fn());
  await syncQueue();
  let t0 = performance.now();
  tf.dispose(fn());
  await syncQueue();
  const once = performance.now() - t0;
  const iters = Math.max(1, Math.min(maxIters, Math.round(targetMs / Math.max(once, 0.01))));
  const reps = once > 2000 ? 2 : repeats;
  const per: number[] = [];
  for (let r = 0; r < reps; r++) {
    t0 = performance.now();
    for (let i = 0; i < iters; i++) tf.dispose(fn());
    await syncQueue();
    per.push((performance.now() - t0) / iters);
  }
  return median(per);
}
