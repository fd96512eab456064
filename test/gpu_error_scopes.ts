/**
 * Runs fn inside WebGPU 'validation' and 'out-of-memory' error scopes and rejects if the device reported an error
 * there (WebGPU reports them asynchronously and never throws). Environment-agnostic: used in node (webgpu_env.ts)
 * and in the browser test pages. `moreErrors` adds errors collected elsewhere (e.g. uncaptured-error events).
 */
export async function withErrorScopes<T>(
    device: GPUDevice, fn: () => Promise<T>, moreErrors: () => string[] = () => []): Promise<T> {
  device.pushErrorScope('validation');
  device.pushErrorScope('out-of-memory');
  let result: T;
  try {
    result = await fn();
  } finally {
    const oom = await device.popErrorScope();
    const validation = await device.popErrorScope();
    const messages = [validation?.message, oom?.message, ...moreErrors()].filter((m) => m);
    if (messages.length > 0) throw new Error(`WebGPU error: ${messages.join('\n')}`);
  }
  return result;
}
