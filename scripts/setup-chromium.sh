#!/usr/bin/env bash
# Installs Debian's Chromium (and Mesa's llvmpipe GL driver for the --use-angle=gl-egl test run) for the
# browser tests and benchmarks. Playwright's own browser downloads are not used: the driver launches
# /usr/bin/chromium through playwright-core.
set -euo pipefail

packages=()
[ -x /usr/bin/chromium ] || packages+=(chromium)
# llvmpipe (Mesa's software GL) for the GL-on-llvmpipe run; SwiftShader ships inside Chromium itself.
dpkg -s libgl1-mesa-dri >/dev/null 2>&1 || packages+=(libgl1-mesa-dri)
dpkg -s libegl1 >/dev/null 2>&1 || packages+=(libegl1)

if [ ${#packages[@]} -eq 0 ]; then
  echo "setup-chromium: $( /usr/bin/chromium --version 2>/dev/null || echo chromium ) already installed"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
/usr/bin/chromium --version
