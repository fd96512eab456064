/**
 * WebGPU in node for the tests: Dawn (the `webgpu` package) on a software Vulkan driver when the machine has no GPU.
 *
 * `await setupWebGPU()` makes sure a Vulkan driver is reachable (running scripts/setup-webgpu.sh, which downloads
 * Mesa's lavapipe into .cache/ the first time), installs `navigator.gpu` BEFORE '@tensorflow/tfjs-backend-webgpu' is
 * imported (the package registers its backend only when navigator.gpu exists at import time), and sets the 'webgpu'
 * backend through the library's setupWebGPU, so that the device has the optional features lavapipe offers
 * (shader-f16, subgroups). It returns null when WebGPU cannot be had, and throws instead when CI=true: in CI a
 * missing WebGPU is a failure, not a skip.
 *
 * `withGPUErrorCheck(fn)` runs fn inside validation and out-of-memory error scopes and fails on any error, so that a
 * bad bind group or shader cannot pass silently (Dawn reports them asynchronously, without throwing).
 */
import {execFileSync} from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {fileURLToPath} from 'node:url';
import * as tf from '@tensorflow/tfjs-core';
import type {WebGPUBackend} from '@tensorflow/tfjs-backend-webgpu';
import {withErrorScopes} from './gpu_error_scopes.js';
import {setupWebGPU as setupBackend} from '../src/index.js';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

export interface WebGPUEnv {
  backend: WebGPUBackend;
  device: GPUDevice;
  /** e.g. "llvmpipe (LLVM 15.0.6, 256 bits) / Mesa 25.0.7" */
  adapterDescription: string;
}

/**
 * One environment per process, kept on globalThis: mocha may load this module twice (a static import in one test file,
 * a dynamic one in reliability_backends.ts), and a second setupWebGPU would replace — and dispose — the 'webgpu'
 * backend the first one made, under the other test files' feet.
 */
interface SharedState {
  envPromise: Promise<WebGPUEnv | null> | null;
  /** Errors Dawn reported outside an error scope (device.onuncapturederror), drained by withGPUErrorCheck. */
  uncaptured: string[];
}
const shared: SharedState = ((globalThis as Record<symbol, SharedState>)[
    Symbol.for('tfjs-efficient-attention/test/webgpu_env')] ??= {envPromise: null, uncaptured: []});

export function setupWebGPU(): Promise<WebGPUEnv | null> {
  shared.envPromise ??= createEnv().catch((e) => {
    if (process.env.CI === 'true') throw e;
    console.warn(`    WebGPU unavailable, skipping: ${(e as Error).message}`);
    return null;
  });
  return shared.envPromise;
}

/**
 * A mocha `before` body: the shared WebGPU environment with tfjs's 'webgpu' backend set, or the suite skipped where
 * WebGPU is unavailable (never in CI: setupWebGPU throws there).
 */
export async function webgpuBackendOrSkip(ctx: Mocha.Context): Promise<WebGPUEnv> {
  const env = await setupWebGPU();
  if (env == null) ctx.skip();
  await tf.setBackend('webgpu');
  return env!;
}

async function createEnv(): Promise<WebGPUEnv> {
  ensureVulkanDriver();
  const {create, globals} = await import('webgpu');
  Object.assign(globalThis, globals);
  const gpu = create([]);
  Object.defineProperty(globalThis, 'navigator', {value: {gpu}, configurable: true, writable: true});
  const adapter = await gpu.requestAdapter();
  if (adapter == null) throw new Error('WebGPU: navigator.gpu.requestAdapter() returned null (no Vulkan device)');
  // The library's setupWebGPU: the device gets every optional feature lavapipe offers (shader-f16, subgroups).
  await setupBackend({gpu});
  await tf.ready();
  const backend = tf.backend() as unknown as WebGPUBackend;
  const device = backend.device;
  device.onuncapturederror = (e: GPUUncapturedErrorEvent) => shared.uncaptured.push(e.error.message);
  const info = adapter.info;
  const adapterDescription = [info.vendor, info.architecture, info.device, info.description].filter((s) => s)
      .join(' / ');
  return {backend, device, adapterDescription};
}

/** Runs fn inside 'validation' and 'out-of-memory' error scopes; rejects if Dawn reported any error. */
export function withGPUErrorCheck<T>(device: GPUDevice, fn: () => Promise<T>): Promise<T> {
  shared.uncaptured.length = 0;
  return withErrorScopes(device, fn, () => shared.uncaptured.splice(0));
}

/**
 * Makes a Vulkan ICD visible to the Vulkan loader Dawn will dlopen. Uses the system's drivers or an ICD named in
 * the environment when there is one; otherwise runs scripts/setup-webgpu.sh. The loader and the driver it unpacked
 * live outside the library path, and LD_LIBRARY_PATH is only read at process start, so their libraries are
 * preloaded here by absolute path (dependencies first): later dlopen calls by soname find them already loaded.
 */
function ensureVulkanDriver(): void {
  if (process.env.VK_ICD_FILENAMES || process.env.VK_DRIVER_FILES) return;
  const systemIcds = ['/usr/share/vulkan/icd.d', '/etc/vulkan/icd.d'].some(
      (d) => fs.existsSync(d) && fs.readdirSync(d).some((f) => f.endsWith('.json')));
  const hasLoader = ['/usr/lib/x86_64-linux-gnu/libvulkan.so.1', '/lib/x86_64-linux-gnu/libvulkan.so.1',
                     '/usr/lib/libvulkan.so.1', '/usr/lib64/libvulkan.so.1'].some((f) => fs.existsSync(f));
  if (systemIcds && hasLoader) return;
  if (process.platform !== 'linux') return;
  const script = path.join(root, 'scripts', 'setup-webgpu.sh');
  const out = execFileSync('bash', [script], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit']});
  let libDir = '';
  for (const line of out.split('\n')) {
    const m = /^export (\w+)=(.*)$/.exec(line.trim());
    if (m == null) continue;
    if (m[1] === 'LD_LIBRARY_PATH') libDir = m[2].split(':')[0];
    else process.env[m[1]] = m[2];
  }
  const current = (process.env.LD_LIBRARY_PATH ?? '').split(':');
  if (libDir && !current.includes(libDir)) preloadLibraries(libDir);
}

function preloadLibraries(dir: string): void {
  const files = fs.readdirSync(dir).filter((f) => /\.so(\.\d+)*$/.test(f) && !f.startsWith('libVkLayer'));
  const needed = new Map<string, string[]>();  // soname (file name) -> DT_NEEDED
  for (const f of files) needed.set(f, readNeeded(path.join(dir, f)));
  const loaded = new Set<string>();
  const {RTLD_NOW, RTLD_GLOBAL} = os.constants.dlopen as Record<string, number>;
  const RTLD_NODELETE = 0x1000;  // glibc's value; node's os.constants.dlopen does not list it
  const load = (name: string, stack: Set<string>) => {
    if (loaded.has(name) || stack.has(name) || !needed.has(name)) return;
    stack.add(name);
    for (const dep of needed.get(name)!) load(dep, stack);
    loaded.add(name);
    try {
      // A plain shared library is no node addon: dlopen succeeds, then node reports "did not self-register" and
      // closes it; RTLD_NODELETE keeps it loaded.
      process.dlopen({exports: {}}, path.join(dir, name), RTLD_NOW | RTLD_GLOBAL | RTLD_NODELETE);
    } catch (e) {
      if (!/self-register/.test((e as Error).message)) throw e;
    }
  };
  // The ICD itself is dlopened by the loader by path; preload only what is found by soname.
  for (const f of files) if (!f.startsWith('libvulkan_')) load(f, new Set());
}

/** DT_NEEDED entries of a 64-bit little-endian ELF shared library ([] if it is not one). */
function readNeeded(file: string): string[] {
  const buf = fs.readFileSync(fs.realpathSync(file));
  if (buf.readUInt32BE(0) !== 0x7f454c46 || buf[4] !== 2 || buf[5] !== 1) return [];
  const phoff = Number(buf.readBigUInt64LE(0x20)), phentsize = buf.readUInt16LE(0x36), phnum = buf.readUInt16LE(0x38);
  const loads: Array<[number, number, number]> = [];  // [vaddr, offset, filesz]
  let dynOffset = -1, dynSize = 0;
  for (let i = 0; i < phnum; i++) {
    const p = phoff + i * phentsize, type = buf.readUInt32LE(p);
    const offset = Number(buf.readBigUInt64LE(p + 8)), vaddr = Number(buf.readBigUInt64LE(p + 16));
    const filesz = Number(buf.readBigUInt64LE(p + 32));
    if (type === 1) loads.push([vaddr, offset, filesz]);
    if (type === 2) [dynOffset, dynSize] = [offset, filesz];
  }
  if (dynOffset < 0) return [];
  const toOffset = (addr: number) => {
    for (const [v, o, s] of loads) if (addr >= v && addr < v + s) return addr - v + o;
    return -1;
  };
  let strtab = -1;
  const neededOffsets: number[] = [];
  for (let p = dynOffset; p < dynOffset + dynSize; p += 16) {
    const tag = Number(buf.readBigInt64LE(p)), val = Number(buf.readBigUInt64LE(p + 8));
    if (tag === 0) break;
    if (tag === 1) neededOffsets.push(val);
    if (tag === 5) strtab = toOffset(val);
  }
  if (strtab < 0) return [];
  return neededOffsets.map((o) => {
    const start = strtab + o;
    return buf.toString('latin1', start, buf.indexOf(0, start));
  });
}
