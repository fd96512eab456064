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
export function timeOnQueue(fn: () => tf.Tensor[], options: QueueTimingOptions = {}): Promise<number> {
  return timeBackToBack(() => tf.dispose(fn()), syncQueue, options);
}

/**
 * Median ms per call of `call` (awaited when it returns a promise, e.g. an ONNX Runtime session run), calls back to
 * back and one `sync` per batch, as timeOnQueue does for tfjs.
 */
export async function timeBackToBack(call: () => void | Promise<void>, sync: () => Promise<void>,
                                     {targetMs = 250, repeats = 5, maxIters = 100}: QueueTimingOptions = {}):
    Promise<number> {
  // tfjs calls stay synchronous (no await between them); promises are awaited one by one.
  const first0 = call();
  if (first0 instanceof Promise) await first0;
  await sync();
  let t0 = performance.now();
  const first1 = call();
  if (first1 instanceof Promise) await first1;
  await sync();
  const first = performance.now() - t0;
  const iters = Math.max(1, Math.min(maxIters, Math.round(targetMs / Math.max(first, 0.01))));
  const reps = first > 2000 ? 2 : repeats;
  const per: number[] = [];
  for (let r = 0; r < reps; r++) {
    t0 = performance.now();
    for (let i = 0; i < iters; i++) {
      const pending = call();
      if (pending instanceof Promise) await pending;
    }
    await sync();
    per.push((performance.now() - t0) / iters);
  }
  return median(per);
}
