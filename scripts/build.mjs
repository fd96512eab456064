// Builds dist/: ESM and CommonJS (one output file per source file), .d.ts (tsc), and browser bundles
// (dist/browser/tfjs-efficient-attention.js: IIFE exposing `tfEfficientAttention`, reading tfjs from the global `tf`;
//  dist/browser/tfjs-efficient-attention.esm.js: ESM importing @tensorflow/tfjs-core and -layers).
import {execFileSync} from 'node:child_process';
import {mkdirSync, readdirSync, rmSync, statSync, writeFileSync} from 'node:fs';
import {join} from 'node:path';
import * as esbuild from 'esbuild';

const root = new URL('..', import.meta.url).pathname;
const dist = join(root, 'dist');
rmSync(dist, {recursive: true, force: true});

function sources(dir) {
  return readdirSync(join(root, dir)).flatMap((name) => {
    const rel = join(dir, name);
    if (statSync(join(root, rel)).isDirectory()) return sources(rel);
    return name.endsWith('.ts') && !name.endsWith('.d.ts') ? [rel] : [];
  });
}
const entryPoints = [...sources('src'), ...sources('kernels')].map((f) => join(root, f));

const common = {entryPoints, outbase: root, bundle: false, sourcemap: false, target: 'es2020', logLevel: 'warning'};
await esbuild.build({...common, outdir: join(dist, 'esm'), format: 'esm'});
await esbuild.build({...common, outdir: join(dist, 'cjs'), format: 'cjs'});
writeFileSync(join(dist, 'esm', 'package.json'), '{"type": "module"}\n');
writeFileSync(join(dist, 'cjs', 'package.json'), '{"type": "commonjs"}\n');

// tfjs packages come from the page: the global `tf` (tf.min.js bundles core, layers and the webgl/cpu backends;
// tf-backend-webgpu.min.js adds WebGPUBackend to it, which setupWebGPU imports dynamically).
const tfGlobal = {
  name: 'tf-global',
  setup(build) {
    build.onResolve({filter: /^@tensorflow\/tfjs(-core|-layers|-backend-webgpu)?$/}, (args) => ({path: args.path, namespace: 'tf-global'}));
    build.onLoad({filter: /.*/, namespace: 'tf-global'}, () => ({contents: 'module.exports = globalThis.tf;', loader: 'js'}));
  },
};
const browser = {entryPoints: [join(root, 'src/index.ts')], bundle: true, sourcemap: false, target: 'es2020',
                 logLevel: 'warning'};
await esbuild.build({...browser, outfile: join(dist, 'browser/tfjs-efficient-attention.js'), format: 'iife',
                     globalName: 'tfEfficientAttention', plugins: [tfGlobal]});
await esbuild.build({...browser, outfile: join(dist, 'browser/tfjs-efficient-attention.min.js'), format: 'iife',
                     globalName: 'tfEfficientAttention', plugins: [tfGlobal], minify: true});
await esbuild.build({...browser, outfile: join(dist, 'browser/tfjs-efficient-attention.esm.js'), format: 'esm',
                     external: ['@tensorflow/*']});

mkdirSync(join(dist, 'types'), {recursive: true});
execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json')],
             {stdio: 'inherit'});
console.log('built dist/ (esm, cjs, types, browser)');
