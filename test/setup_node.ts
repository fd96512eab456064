/**
 * Imported first by every node test file that runs attention cases: tfjs-core's op gradients, which check_case's
 * loss (tf.sum / mul / add / where) and the naive baselines differentiate through; tfjs-core's node entry registers
 * none. Required, not imported: the ESM build of register_all_gradients imports directories, which node's ESM loader
 * rejects (tsx's require hook compiles it). The registry is global, so it serves the tfjs-core instance the library
 * uses. Under mocha a test file is loaded as CommonJS; static imports keep one module instance per file (a second
 * instance of webgpu_env.ts would open a second Dawn device).
 */
import {createRequire} from 'node:module';

createRequire(import.meta.url)('@tensorflow/tfjs-core/dist/register_all_gradients');
