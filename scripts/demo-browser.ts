/**
 * `npm run demo:browser`: bundles the browser demo (examples/browser/main.ts, with tfjs, its webgpu backend and this
 * package's sources) with esbuild into examples/browser/dist/demo.js, then serves examples/browser on 127.0.0.1 and
 * prints the URL. Flags: --build-only (bundle and exit), --minify.
 */
import path from 'node:path';
import {fileURLToPath, pathToFileURL} from 'node:url';
import * as esbuild from 'esbuild';
import {startStaticServer} from '../test/browser/server.js';

export const DEMO_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../examples/browser');
/** Relative to DEMO_DIR (index.html loads it). */
export const DEMO_BUNDLE = 'dist/demo.js';

/** Bundles the demo page's code; returns the bundle's absolute path. */
export async function buildDemo(options: {minify?: boolean} = {}): Promise<string> {
  const outfile = path.join(DEMO_DIR, DEMO_BUNDLE);
  await esbuild.build({
    entryPoints: [path.join(DEMO_DIR, 'main.ts')], outfile, bundle: true, format: 'esm', platform: 'browser',
    target: 'es2020', sourcemap: true, minify: options.minify ?? false, logLevel: 'warning',
  });
  return outfile;
}

async function main(argv: string[]): Promise<void> {
  const t0 = performance.now();
  await buildDemo({minify: argv.includes('--minify')});
  console.log(`bundled ${path.relative(process.cwd(), path.join(DEMO_DIR, DEMO_BUNDLE))} in ` +
              `${((performance.now() - t0) / 1000).toFixed(1)} s`);
  if (argv.includes('--build-only')) return;
  const server = await startStaticServer(DEMO_DIR);
  console.log(`browser demo: ${server.url}/index.html   (Ctrl+C to stop)`);
  const stop = () => void server.close().then(() => process.exit(0));
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (process.argv[1] != null && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  main(process.argv.slice(2)).catch((e) => {
    console.error(e);
    process.exit(1);
  });
}
