#!/usr/bin/env bash
# `npm test`: type-check, build, then every suite. Each group runs in its own process because each sets up a
# different world: the node backends (cpu, wasm, composite fallback, layers, fuzz, reliability), the notebooks
# (tslab kernel; scripts/notebooks.sh installs Debian's Jupyter and tslab), WebGPU through Dawn
# on a software Vulkan driver (scripts/setup-webgpu.sh fetches Mesa's lavapipe), and headless Chromium (WebGL2 and
# WebGPU on SwiftShader, WebGL on llvmpipe; scripts/setup-chromium.sh installs Debian's chromium).
# All groups run even if one fails; the exit status is non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n=== %s ===\n' "$*"; }
failed=()
timings=()
# Runs one group, recording its wall time (printed in the summary: CI keeps `npm test` well under 90 minutes).
run() {
  local name=$1; shift
  step "$name"
  local start=$SECONDS
  "$@" || failed+=("$name")
  timings+=("$(printf '%5d s  %s' $((SECONDS - start)) "$name")")
}

step "type-check"
npx tsc --noEmit -p . || exit 1
step "build"
node scripts/build.mjs || exit 1

node_tests=()
for f in test/*.test.ts; do
  case "$(basename "$f")" in
    webgpu*|browser*|_*) ;;
    *) node_tests+=("$f") ;;
  esac
done
run "node: cpu, wasm, composite, layers, reliability" npx mocha "${node_tests[@]}"
# The notebooks in examples/notebooks, executed without saving their outputs: any cell error fails the group.
run "notebooks" npm run notebooks -- --check
run "webgpu in node (Dawn)" npx mocha test/webgpu*.test.ts
# The NaN/Inf semantics checks of test/semantics.test.ts on webgpu (a few minutes on a cold lavapipe shader cache).
run "webgpu semantics in node (Dawn)" env RELIABILITY_BACKENDS=webgpu npx mocha test/semantics.test.ts
run "browser setup" bash scripts/setup-chromium.sh
run "browser: headless Chromium" npx mocha test/browser*.test.ts

step "summary"
printf '%s\n' "${timings[@]}"
printf '%5d s  total\n' "$SECONDS"
if [ ${#failed[@]} -gt 0 ]; then
  printf 'failed groups: %s\n' "${failed[*]}"
  exit 1
fi
echo "all test groups passed"
