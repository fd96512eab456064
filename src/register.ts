/**
 * Importing the package registers every kernel and gradient it has (like tfjs's register_all_kernels).
 * Dedicated kernels: cpu, webgpu and webgl (registered by backend name; the backend packages themselves are only
 * needed at run time by whoever uses those backends). The composite kernels serve wasm and tensorflow by name and,
 * on first use (the ops' missing-kernel handler, src/ops/kernel_fallback.ts), any backend without dedicated kernels.
 */
import '../kernels/cpu/register_all_cpu_kernels.js';
import '../kernels/webgl/register_all_webgl_kernels.js';
import '../kernels/webgpu/register_all_webgpu_kernels.js';
import './register_all_gradients.js';
import {registerCompositeKernels} from '../kernels/composite/register_composite_kernels.js';
import {setMissingKernelHandler} from './ops/kernel_fallback.js';

for (const backendName of ['wasm', 'tensorflow']) registerCompositeKernels(backendName);
setMissingKernelHandler(registerCompositeKernels);
