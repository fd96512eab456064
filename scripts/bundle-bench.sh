#!/usr/bin/env bash
# Bundles a benchmark entry (TypeScript) into .bench-dist/<name>.mjs for machines without TypeScript or npx (the lent
# GPU: `bash .gpu/run.sh node .bench-dist/<name>.mjs`). Everything but the `webgpu` native addon is bundled.
#   bash scripts/bundle-bench.sh bench/device/decode.ts [name]
set -euo pipefail
cd "$(dirname "$0")/.."
entry=$1
name=${2:-$(basename "$entry" .ts)}
npx esbuild "$entry" --bundle --platform=node --format=esm --external:webgpu --main-fields=module,main \
  --outfile=".bench-dist/$name.mjs" --log-level=warning \
  "--banner:js=import {createRequire as __cr} from 'node:module'; const require = __cr(import.meta.url);"
echo ".bench-dist/$name.mjs"
