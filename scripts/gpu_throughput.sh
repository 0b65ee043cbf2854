#!/usr/bin/env bash
# Matcher throughput on a lent GPU machine, in one device call of under 8 minutes (docs/gpu.md).
#
#   device call (tool `run`, no carry, timeout_s 480):  bash scripts/gpu_throughput.sh 2>&1 | tee $OUT/throughput_log.txt
#   here, on CPU, the same steps at tiny sizes:         GPU_THROUGHPUT_DRY=1 OUT=/tmp/tp bash scripts/gpu_throughput.sh
#
# Uses the image's python3 (torch, einops, opencv, numpy, scipy) with the repository on PYTHONPATH, or .venv
# when one was carried. Nothing is installed. Writes $OUT/throughput_{fp32,bf16,cv2guide}.json and prints each
# table: pairs/s and tiles/s (the latter needs rasterio; without it the JSON says "not measured") at batch
# sizes 1-64 with the batched torch guide, bf16 autocast, and the per-tile OpenCV guide for comparison.
# Each step has its own timeout, so one that runs long leaves the others' results.
set -u
export PYTHONUNBUFFERED=1
export PYTHONPATH=.${PYTHONPATH:+:$PYTHONPATH}
OUT=${OUT:-benchmarks/out}
mkdir -p "$OUT"
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
T0=$(date +%s)
step() { echo "== $1 ($(( $(date +%s) - T0 )) s)"; }

if [ "${GPU_THROUGHPUT_DRY:-0}" = 1 ]; then
  DEV=cpu; COMMON=(--dry-run --threads 2); BIG=(1 2); SMALL=(1); SCENE=(--scene 512 --tile 256)
else
  DEV=cuda; COMMON=(--repeats 2); BIG=(1 2 4 8 16 32 64); SMALL=(1 8 32 64); SCENE=(--scene 2048 --tile 512)
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || { echo "no GPU here"; exit 2; }
fi
step "environment"
$PY - <<'PY'
import importlib.util, torch
print("torch", torch.__version__, "cuda", torch.version.cuda, "available", torch.cuda.is_available())
for m in ("einops", "cv2", "scipy", "rasterio", "mamba_ssm"):
    print(f"{m:10s}", "yes" if importlib.util.find_spec(m) else "no")
PY

step "fp32, batched torch guide, batch ${BIG[*]}"
timeout 240 $PY benchmarks/throughput.py --device $DEV "${COMMON[@]}" "${SCENE[@]}" --batch-sizes "${BIG[@]}" \
  --precision fp32 --guide torch --json "$OUT/throughput_fp32.json" 2>&1 | tail -12
step "bf16 autocast, batch ${SMALL[*]}"
timeout 100 $PY benchmarks/throughput.py --device $DEV "${COMMON[@]}" --scene 0 --batch-sizes "${SMALL[@]}" \
  --precision bf16 --guide torch --json "$OUT/throughput_bf16.json" 2>&1 | tail -6
step "fp32, per-tile OpenCV guide, batch ${SMALL[*]}"
timeout 80 $PY benchmarks/throughput.py --device $DEV "${COMMON[@]}" --scene 0 --batch-sizes "${SMALL[@]}" \
  --precision fp32 --guide cv2 --json "$OUT/throughput_cv2guide.json" 2>&1 | tail -6
step "done"
ls -l "$OUT"/throughput_*.json
