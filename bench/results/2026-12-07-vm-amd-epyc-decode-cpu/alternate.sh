#!/usr/bin/env bash
# Alternates the bundled bench of the base commit and of this branch, N rounds; one JSON per run.
set -euo pipefail
cd "$(dirname "$0")"
out=$1; rounds=${2:-4}; shift 2 || true  # before.mjs / after.mjs: the bundles (README.md)
mkdir -p "$out"
for r in $(seq 1 "$rounds"); do
  for v in before after; do
    node $v.mjs --json "$out/$v-$r.json" "$@" 2>&1 | grep -v Warning | tail -n +3 | sed "s/^/[$v $r] /"
  done
done
