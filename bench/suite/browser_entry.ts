/**
 * The benchmark page's script (bundled by browser_runner.ts): the same measurement code as the node worker, on
 * tfjs's webgl or webgpu backend in Chromium.
 */
import * as tf from '@tensorflow/tfjs-core';
// What @tensorflow/tfjs users have (the naive baseline needs both): gradients of the core ops, chained op methods.
import '@tensorflow/tfjs-core/dist/register_all_gradients';
import '@tensorflow/tfjs-core/dist/public/chained_ops/register_all_chained_ops';
import '@tensorflow/tfjs-backend-webgl';
import '@tensorflow/tfjs-backend-webgpu';
// The dedicated webgpu kernels (webgl's come with the library's register.ts).
import '../../kernels/webgpu/register_all_webgpu_kernels.js';
import {describeKernels, runJob} from './measure.js';
import type {Job} from './measure.js';
import type {BackendInfo} from './node_worker.js';

async function benchInit(backend: string): Promise<BackendInfo | string> {
  if (backend === 'webgpu' && !('gpu' in navigator)) return 'navigator.gpu is missing (WebGPU disabled)';
  try {
    if (!(await tf.setBackend(backend))) return `tf.setBackend('${backend}') failed`;
    await tf.ready();
  } catch (e) {
    return `tf.setBackend('${backend}'): ${(e as Error).message}`;
  }
  const info: BackendInfo = {backend, description: `${backend} in Chromium`, tfjsVersion: tf.version_core,
                             externalImpls: []};
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const b = tf.backend() as any;
  if (backend === 'webgpu') {
    const adapterInfo = b.adapterInfo ?? {};
    const device: GPUDevice = b.device;
    const parts = [adapterInfo.vendor, adapterInfo.architecture, adapterInfo.device, adapterInfo.description]
        .filter((s: string) => s);
    info.adapter = parts.join(' / ') || 'unknown adapter';
    info.maxBufferBytes = Math.min(device.limits.maxBufferSize, device.limits.maxStorageBufferBindingSize);
  } else if (backend === 'webgl') {
    const gl: WebGL2RenderingContext = b.gpgpu?.gl;
    const ext = gl?.getExtension('WEBGL_debug_renderer_info');
    info.adapter = ext ? String(gl.getParameter(ext.UNMASKED_RENDERER_WEBGL)) : String(gl?.getParameter(gl.RENDERER));
    info.maxBufferBytes = undefined;
  }
  info.kernels = describeKernels();
  info.description = `${backend} in Chromium ${navigator.userAgent.match(/Chrome\/([\d.]+)/)?.[1] ?? ''}: ${
      info.adapter}`;
  return info;
}

Object.assign(globalThis, {
  benchInit,
  benchRun: (job: Job) => runJob(job),
  benchReady: true,
});
