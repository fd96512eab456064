#!/usr/bin/env bash
# The next GPU lease's measurements in one call (bench/NOTES.md, "What the next lease runs"), so that a short lease
# spends its minutes measuring. Two halves:
#
#   here (the build machine, after npm ci):   bash bench/device/next_lease.sh pack
#       builds the benchmark bundles (.bench-dist), runs ../shared/gpu/pack.sh (.gpu/: node, node_modules, Vulkan
#       loader) and puts the bundles into .gpu/bench.tar.xz;
#   there (the device's `run`, carry [".gpu"]):  bash bench/device/next_lease.sh run
#       runs every step below with its own time limit, writing one log per step into $OUT (at most 8 files come
#       back: the steps write 7). Each log starts with the GPU's name (nvidia-smi), so every number names its card.
#
# Order = priority: a lease cut short still returns the first logs.
set -uo pipefail
cd "$(dirname "$0")/../.."

case "${1:-}" in
  pack)
    set -e
    npm run -s bench:bundle
    for b in tc forward options decode backward paths tc-backward; do npm run -s "bench:$b-bundle"; done
    bash ../shared/gpu/pack.sh
    rm -f .gpu/bench.tar.xz
    tar -cJf .gpu/bench.tar.xz .bench-dist
    ls -la .gpu
    ;;
  run)
    : "${OUT:?run on the device: \$OUT is where the logs go}"
    mkdir -p "$OUT"
    tar -xJf .gpu/bench.tar.xz
    R="bash .gpu/run.sh node"
    # Dawn's shader warnings drown the logs (their quoted WGSL lines call subgroupMatrix…( / <; the scripts' own
    # lines, e.g. "subgroupMatrixConfigs [...]", stay).
    F='Warning\|warning\|\^\|subgroupMatrix[A-Za-z]*[(<]\|^\s*$\|Compilation log'
    step() {  # step NAME SECONDS COMMAND...
      local name=$1 limit=$2; shift 2
      { nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>&1; date -u; echo "\$ $*";
        timeout "$limit" "$@" 2>&1 | grep -v "$F"; echo "exit ${PIPESTATUS[0]}"; } > "$OUT/$name.log"
    }
    # 1. The tensor-core backward on real MMAs (→ ATTENTION_WEBGPU_TC_BACKWARD default).
    step tc_backward 150 $R .bench-dist/tc_backward.mjs
    # 2. 'high' on the staged kernel, the staged 'medium' variants (→ DEFAULT_HIGH_TC_KERNEL, FAST_TILES).
    step tc_check 200 $R .bench-dist/tc_check.mjs --lean
    # 3. Decode split-score variants (→ decodeSetup defaults for 32/8 D128).
    step decode_sweep 120 $R .bench-dist/decode_sweep.mjs --seqq 1 --seqk 8192,32768,131072 \
        --variants new,split,splitwg,split4,splitpv1,pv4,splitT512
    # 4. The baselines of the same lease: PyTorch's SDPA.
    step torch 60 python3 bench/device/torch_sdpa.py --out "$OUT/torch_sdpa.json"
    # 5. The issue-16/17 option ratios and the fp32 forward / backward rows (suite sections, one process each).
    step suite_options 200 $R .bench-dist/suite.mjs --section webgpu-options --rounds 2 --out "$OUT"
    ;;
  *)
    echo "usage: bash bench/device/next_lease.sh pack | run" >&2
    exit 2
    ;;
esac
