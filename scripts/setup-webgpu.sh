#!/usr/bin/env bash
# Makes a software Vulkan driver available to Dawn (the `webgpu` npm package) on a machine without a GPU, without
# touching the system: Mesa 25's lavapipe from Debian bookworm-backports is downloaded with apt-get (private source
# list and package lists, so the system's apt configuration is unchanged) and unpacked with dpkg -x into
# .cache/webgpu/root. Falls back to Chromium's SwiftShader ICD when lavapipe cannot be had.
#
# Prints the environment to use, one `export NAME=value` per line:
#   eval "$(bash scripts/setup-webgpu.sh)"
# test/webgpu_env.ts runs this script itself (and preloads the unpacked libraries), so `npx mocha` needs no setup.
# Idempotent: a second run only checks the stamp file and prints the environment.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cache="$root/.cache/webgpu"
dest="$cache/root"
libdir="$dest/usr/lib/x86_64-linux-gnu"
icd="$cache/lvp_icd.json"
stamp="$cache/lavapipe.ok"

log() { echo "setup-webgpu: $*" >&2; }

print_env() {  # $1 = ICD json, $2 = extra library dir (may be empty)
  echo "export VK_ICD_FILENAMES=$1"
  echo "export VK_DRIVER_FILES=$1"
  if [ -n "$2" ]; then echo "export LD_LIBRARY_PATH=$2${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"; fi
}

install_lavapipe() {
  [ "$(uname -m)" = x86_64 ] || { log "lavapipe download is set up for x86_64 only"; return 1; }
  command -v apt-get >/dev/null && command -v dpkg >/dev/null || { log "no apt-get/dpkg"; return 1; }
  local apt="$cache/apt"
  rm -rf "$apt" "$dest"
  mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/debs" "$dest"
  cat > "$apt/sources.list" <<LIST
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-backports main
LIST
  local o=(-o "Dir::Etc::SourceList=$apt/sources.list" -o Dir::Etc::SourceParts=/dev/null
           -o "Dir::State::Lists=$apt/lists" -o "Dir::Cache=$apt/cache" -o APT::Sandbox::User=root
           -o Debug::NoLocking=1 -o APT::Get::List-Cleanup=0)
  log "apt-get update (private lists in $apt)"
  apt-get "${o[@]}" -qq update >&2 || return 1
  # What the system lacks (or has too old) for mesa-vulkan-drivers from backports, restricted to its dependency
  # closure (the simulation also upgrades unrelated Mesa packages through Breaks).
  local closure wanted
  closure=$(apt-cache "${o[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
              --no-replaces --no-enhances mesa-vulkan-drivers/bookworm-backports 2>/dev/null | grep -v '^ ' | sort -u)
  wanted=$(apt-get "${o[@]}" -s install -t bookworm-backports --no-install-recommends mesa-vulkan-drivers 2>/dev/null |
             awk '/^Inst /{print $2}' | sort -u | comm -12 - <(echo "$closure"))
  [ -n "$wanted" ] || wanted=mesa-vulkan-drivers
  [[ $'\n'$wanted$'\n' == *$'\n'libvulkan1$'\n'* ]] || wanted="$wanted libvulkan1"  # the loader, always from our copy
  log "downloading: $(echo $wanted)"
  local pkgs=() p
  for p in $wanted; do
    # Packages from backports need the release pinned; the others resolve to bookworm.
    # (policy is captured first: `grep -q` closing the pipe early would fail the pipeline under pipefail)
    local policy; policy=$(apt-cache "${o[@]}" policy "$p" 2>/dev/null || true)
    if [[ $policy == *bpo12* ]]; then pkgs+=("$p/bookworm-backports"); else pkgs+=("$p"); fi
  done
  (cd "$apt/debs" && apt-get "${o[@]}" -qq download "${pkgs[@]}" >&2) || return 1
  for p in "$apt/debs"/*.deb; do dpkg -x "$p" "$dest"; done
  [ -f "$libdir/libvulkan_lvp.so" ] || { log "libvulkan_lvp.so missing after unpacking"; return 1; }
  cat > "$icd" <<JSON
{"file_format_version": "1.0.1", "ICD": {"library_path": "$libdir/libvulkan_lvp.so", "api_version": "1.4.305"}}
JSON
  rm -rf "$apt/lists" "$apt/cache"
  date -u +%FT%TZ > "$stamp"
}

swiftshader_icd() {
  local json=/usr/lib/chromium/vk_swiftshader_icd.json
  if [ ! -f "$json" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing chromium for its SwiftShader Vulkan driver"
    DEBIAN_FRONTEND=noninteractive apt-get -qq install -y --no-install-recommends chromium libvulkan1 >&2 || true
  fi
  [ -f "$json" ] && echo "$json"
}

if [ -f "$stamp" ] && [ -f "$icd" ] && [ -f "$libdir/libvulkan_lvp.so" ]; then
  print_env "$icd" "$libdir"
  exit 0
fi
mkdir -p "$cache"
if install_lavapipe; then
  log "lavapipe ready: $icd"
  print_env "$icd" "$libdir"
  exit 0
fi
log "lavapipe unavailable; trying SwiftShader"
if json=$(swiftshader_icd); then
  print_env "$json" ""
  exit 0
fi
log "no software Vulkan driver could be set up"
exit 1
