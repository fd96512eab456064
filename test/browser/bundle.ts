/**
 * The scripts a browser test page loads, besides tfjs itself:
 *   - the library: dist/browser/tfjs-efficient-attention.js from `npm run build` (IIFE, global `tfEfficientAttention`,
 *     reads tfjs from the global `tf`), rebuilt into .cache/browser/ with the same settings when dist/ is missing or
 *     older than the sources, so a test never runs stale kernels;
 *   - the test code: test/browser/page_entry.ts (the shared case runner and reference), bundled into .cache/browser/.
 * Paths are relative to the repository root (what the static server serves).
 */
import {existsSync, mkdirSync, readdirSync, statSync} from 'node:fs';
import path from 'node:path';
import {fileURLToPath} from 'node:url';
import * as esbuild from 'esbuild';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const CACHE_DIR = '.cache/browser';
const DIST_BUNDLE = 'dist/browser/tfjs-efficient-attention.js';

/** Resolves @tensorflow/tfjs(-core|-layers) to the page's global `tf` (as scripts/build.mjs does). */
export const tfGlobalPlugin: esbuild.Plugin = {
  name: 'tf-global',
  setup(build) {
    build.onResolve({filter: /^@tensorflow\/tfjs(-core|-layers)?$/}, (args) => ({path: args.path, namespace: 'tf-global'}));
    build.onLoad({filter: /.*/, namespace: 'tf-global'}, () => ({contents: 'module.exports = globalThis.tf;', loader: 'js'}));
  },
};

function newestSource(dirs: string[]): number {
  let newest = 0;
  const walk = (dir: string) => {
    for (const name of readdirSync(dir)) {
      const file = path.join(dir, name);
      const st = statSync(file);
      if (st.isDirectory()) walk(file);
      else if (name.endsWith('.ts')) newest = Math.max(newest, st.mtimeMs);
    }
  };
  for (const dir of dirs) walk(path.join(REPO_ROOT, dir));
  return newest;
}

/** Bundles `entry` (repo-relative) into .cache/browser/<outName> as an IIFE exposing `globalName`. */
export async function bundleForPage(entry: string, outName: string, globalName: string): Promise<string> {
  mkdirSync(path.join(REPO_ROOT, CACHE_DIR), {recursive: true});
  const outfile = `${CACHE_DIR}/${outName}`;
  await esbuild.build({
    entryPoints: [path.join(REPO_ROOT, entry)], outfile: path.join(REPO_ROOT, outfile), bundle: true, format: 'iife',
    globalName, target: 'es2020', sourcemap: true, logLevel: 'warning', plugins: [tfGlobalPlugin],
  });
  return outfile;
}

/** The library bundle to load: dist/'s when it is up to date, else a fresh build of src/index.ts. */
export async function libraryBundle(): Promise<string> {
  const dist = path.join(REPO_ROOT, DIST_BUNDLE);
  if (existsSync(dist) && statSync(dist).mtimeMs >= newestSource(['src', 'kernels'])) return DIST_BUNDLE;
  return bundleForPage('src/index.ts', 'tfjs-efficient-attention.js', 'tfEfficientAttention');
}

/** The page-side test code (global `attentionTests`). */
export function testBundle(): Promise<string> {
  return bundleForPage('test/browser/page_entry.ts', 'attention-tests.js', 'attentionTests');
}
