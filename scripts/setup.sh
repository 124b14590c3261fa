#!/usr/bin/env bash
# One-time set-up for a fresh machine: system tools the tests and media code call (ffmpeg/ffprobe, exiftool,
# chromium for the browser tests), a virtual environment with the local CPU torch wheel first (so nothing
# pulls a multi-GB CUDA build), the project with every role's extras, and the web page's bundle (npm).
# Idempotent: `make` re-runs it only when pyproject.toml, this script or the page's package files change.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null || PY=python3

need_apt=()
command -v ffprobe >/dev/null || need_apt+=(ffmpeg)
command -v exiftool >/dev/null || need_apt+=(libimage-exiftool-perl)
command -v chromium >/dev/null || need_apt+=(chromium)
command -v npm >/dev/null || need_apt+=(nodejs npm)
if ((${#need_apt[@]})); then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${need_apt[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >/dev/null
  else
    echo "setup: please install ${need_apt[*]} (Debian/Ubuntu package names) and re-run" >&2
    exit 1
  fi
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "torch==2.13.0"
"$VENV/bin/python" -m pip install -q -e ".[dev,train]"
# The web page: three.js and vite from the npm registry at build time; nothing loads from a CDN at run time.
(cd api/web && npm ci --no-audit --no-fund --loglevel=error && npm run build --silent)
echo "setup: done ($("$VENV/bin/python" -c 'import torch; print("torch", torch.__version__)'))"
