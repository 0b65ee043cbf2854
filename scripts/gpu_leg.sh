#!/usr/bin/env bash
# One device call (see scripts/gpu_train.md): a training leg from .gpu_data/last.pt, then the CUDA-kernel check.
# Usage on the lent machine: bash scripts/gpu_leg.sh MINUTES   (writes everything under $OUT)
# GPU_LEG_CONFIG=FILE trains with another config (e.g. geomreg/train/configs_gpu_distill.json)
set -u
minutes=${1:-6}
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
# 1. training leg (no mamba-ssm on the path: the pure SSD trains; the tqdm lines are filtered out of the log).
#    runs/ is not carried to the GPU machine: without a packed .gpu_data/last.pt the leg starts from the packaged weights.
start=(--resume .gpu_data/last.pt)
[ -f .gpu_data/last.pt ] || start=(--init-weights geomreg/weights/regnetmamba2.pt)
PYTHONPATH=. timeout $(( ${minutes%.*} * 60 + 150 )) python3 -c 'from geomreg.train.cli_cmd import train_command; train_command()' \
  --data .gpu_data --out "$OUT/run" "${start[@]}" --device cuda --max-minutes "$minutes" \
  --config "${GPU_LEG_CONFIG:-geomreg/train/configs_gpu.json}" 2>&1 | grep -v "train:" | tail -40
# 2. (GPU_LEG_SSD=0 skips it) mamba-ssm's Triton SSD vs our pure SSD (a pure-Python build of mamba-ssm travels in .whl; its CUDA
#    extension for Mamba-1 is not built, so the package __init__ that imports it is emptied here only)
[ "${GPU_LEG_SSD:-1}" = 1 ] && python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/mamba_ssm-*.whl \
  && echo '__version__ = "wheel-without-cuda-ext"' > /tmp/site/mamba_ssm/__init__.py \
  && PYTHONPATH=/tmp/site:. timeout 120 python3 benchmarks/ssd_cuda.py --size 512 --repeats 10 --out "$OUT/ssd_cuda.json"
ls -la "$OUT" "$OUT/run"
