#!/usr/bin/env bash
# First device call of a native leg (scripts/gpu_train.md): the CUDA checks, while .gpu_a travels. The tree
# copy of the next call removes ignored folders it does not carry, so .gpu_a is stashed outside the repository.
#   tests/nn/test_ssd.py -m cuda : mamba-ssm's Triton SSD against our pure SSD, through the library
#   benchmarks/matcher_speed.py  : the shipped weights end to end on the GPU (pure-PyTorch scan)
#   CPU against CUDA             : the same pair through Matcher on both devices
#   GPU_CHECKS=0 skips them: the call only stashes .gpu_a (about half a minute of device time instead of five)
set -u
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
if [ "${GPU_CHECKS:-1}" = 1 ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/mamba_ssm-*.whl \
    && echo '__version__ = "wheel-without-cuda-ext"' > /tmp/site/mamba_ssm/__init__.py
  export PYTHONPATH=/tmp/site:.
  timeout 150 python3 -m pytest -q -p no:cacheprovider -m cuda -rs tests/nn/test_ssd.py 2>&1 | tail -8
  timeout 90 python3 benchmarks/matcher_speed.py --device cuda --ssd-backend torch --sizes 512 1024 2048 --repeats 5 --threads 4 \
    --checkpoint geomreg/weights/regnetmamba2.pt 2>&1 | tail -9
  timeout 90 python3 benchmarks/matcher_speed.py --device cpu --sizes 512 --repeats 2 --threads 16 \
    --checkpoint geomreg/weights/regnetmamba2.pt 2>&1 | tail -4
  timeout 90 python3 scripts/device_agreement.py 2>&1 | tail -6
fi
[ -f .gpu_a/PACK_HALF ] && rm -rf /tmp/gpu_half_a && cp -r .gpu_a /tmp/gpu_half_a && echo "stashed .gpu_a in /tmp/gpu_half_a"
