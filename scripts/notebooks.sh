#!/usr/bin/env bash
# `npm run notebooks`: executes the TypeScript notebooks in examples/notebooks headlessly with the tslab kernel and
# saves them with their outputs. Any cell error (an exception, or a type error tslab reports) fails the run.
#
#   npm run notebooks                         execute every notebook in place
#   npm run notebooks -- attention_ops        only the named notebook(s) (with or without .ipynb)
#   npm run notebooks -- --check              execute, but leave the files as they are (what `npm test` runs)
#   npm run notebooks -- --setup              only install and register the kernel, then print how to open Jupyter
#   --timeout S                               per-cell limit in seconds (default 600)
#
# Sets up what is missing, and is quick when everything is there:
# - Debian's jupyter-nbconvert, python3-nbclient and python3-ipykernel (apt), run with /usr/bin/python3;
# - tslab (the TypeScript kernel) from examples/notebooks/kernel/package-lock.json, in that folder's node_modules
#   (not a dependency of the library);
# - the kernel spec in .cache/jupyter/kernels/tslab (JUPYTER_PATH points there; nothing is written to ~/.local);
# - examples/notebooks/node_modules/tfjs-efficient-attention -> the repository, so the notebooks import the package
#   by its name, as an app would; it resolves to the build in dist/ (built first if missing or older than the sources).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
NOTEBOOKS=examples/notebooks
KERNEL_PKG=$NOTEBOOKS/kernel
PYTHON=/usr/bin/python3

mode=execute
timeout=600
names=()
while [ $# -gt 0 ]; do
  case "$1" in
    --check) mode=check ;;
    --setup) mode=setup ;;
    --timeout) timeout=$2; shift ;;
    --timeout=*) timeout=${1#--timeout=} ;;
    -*) echo "notebooks: unknown option $1 (see scripts/notebooks.sh)" >&2; exit 2 ;;
    *) names+=("$1") ;;
  esac
  shift
done

# 1. Jupyter from Debian.
packages=()
for p in jupyter-nbconvert python3-nbclient python3-ipykernel; do
  dpkg -s "$p" >/dev/null 2>&1 || packages+=("$p")
done
if [ ${#packages[@]} -gt 0 ]; then
  echo "notebooks: installing ${packages[*]} (apt)"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

# 2. tslab, pinned by its own lockfile. zeromq (its transport) ships prebuilt binaries in the npm tarball; its install
#    script only checks that they load, so npm may skip it (allowScripts there says so).
if [ ! -f "$KERNEL_PKG/node_modules/tslab/package.json" ] ||
   [ "$KERNEL_PKG/package-lock.json" -nt "$KERNEL_PKG/node_modules/.package-lock.json" ]; then
  echo "notebooks: installing tslab into $KERNEL_PKG/node_modules"
  (cd "$KERNEL_PKG" && npm ci --no-audit --no-fund --loglevel=error)
fi

# 3. The kernel spec, project-local (kernel/start.js is tslab's entry point with a startup-race fix).
export JUPYTER_PATH=$ROOT/.cache/jupyter
export JUPYTER_RUNTIME_DIR=$ROOT/.cache/jupyter/runtime
export PYDEVD_DISABLE_FILE_VALIDATION=1
mkdir -p "$JUPYTER_PATH/kernels/tslab"
cat > "$JUPYTER_PATH/kernels/tslab/kernel.json" <<EOF
{
  "argv": ["$(command -v node)", "$ROOT/$KERNEL_PKG/start.js", "kernel", "--config-path", "{connection_file}"],
  "display_name": "TypeScript",
  "language": "typescript"
}
EOF

# 4. The package, by name, from the notebooks' folder; and its build.
mkdir -p "$NOTEBOOKS/node_modules"
ln -sfn ../../.. "$NOTEBOOKS/node_modules/tfjs-efficient-attention"
if [ ! -f dist/cjs/src/index.js ] ||
   [ -n "$(find src kernels package.json -newer dist/cjs/src/index.js -type f -print -quit)" ]; then
  echo "notebooks: building dist/"
  node scripts/build.mjs
fi

if [ "$mode" = setup ]; then
  cat <<EOF
notebooks: the tslab kernel is registered in $JUPYTER_PATH. To open the notebooks interactively (needs a Jupyter
front end, e.g. Debian's jupyter-notebook package):
  JUPYTER_PATH=$JUPYTER_PATH jupyter notebook $NOTEBOOKS
EOF
  exit 0
fi

# 5. Execute.
files=()
if [ ${#names[@]} -eq 0 ]; then
  files=("$NOTEBOOKS"/*.ipynb)
else
  for n in "${names[@]}"; do
    f=$NOTEBOOKS/$(basename "${n%.ipynb}").ipynb
    [ -f "$f" ] || { echo "notebooks: no notebook $f" >&2; exit 2; }
    files+=("$f")
  done
fi
extra=()
if [ "$mode" = check ]; then extra+=(--check); fi
exec "$PYTHON" "$KERNEL_PKG/execute.py" --timeout "$timeout" "${extra[@]}" "${files[@]}"
