/**
 * Picks the tfjs backend of a node example (`--backend cpu|wasm|webgpu`) and returns a label for its output.
 * wasm: the binary is read from the package's dist/ (a directory path with a trailing slash works in node);
 * webgpu: Dawn (the `webgpu` package), on a GPU or Mesa's software Vulkan driver; navigator.gpu is installed first.
 */
import {createRequire} from 'node:module';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';

export async function setNodeBackend(name: string): Promise<string> {
  if (name === 'wasm') {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    const pkg = createRequire(import.meta.url).resolve('@tensorflow/tfjs-backend-wasm/package.json');
    wasm.setWasmPaths(path.join(path.dirname(pkg), 'dist') + path.sep);
  } else if (name === 'webgpu') {
    const {setupWebGPU} = await import('../../test/webgpu_env.js');
    const env = await setupWebGPU();
    if (env == null) throw new Error('--backend webgpu: WebGPU (Dawn) is not available on this machine');
    return `webgpu (${env.adapterDescription})`;
  } else if (name !== 'cpu') {
    throw new Error(`--backend must be cpu, wasm or webgpu, got ${name}`);
  }
  if (!(await tf.setBackend(name))) throw new Error(`tf.setBackend('${name}') failed`);
  await tf.ready();
  return name;
}
