#!/usr/bin/env bash
# Second device call of a native leg (scripts/gpu_train.md): .gpu_b travels now; the first call (gpu_checks.sh),
# on the same warm machine, stashed .gpu_a in /tmp/gpu_half_a. Both halves are linked into one dataset and the
# packaged weights train on it. Call it within the 30 s a machine stays warm, or the first half is gone.
# Usage on the lent machine: bash scripts/gpu_leg_native.sh MINUTES   (writes everything under $OUT)
#   GPU_LEG_RESUME=.gpu_b/last.pt continues a training checkpoint (carried in .gpu_b) instead of the packaged weights;
#   GPU_LEG_CONFIG=FILE trains with another config (default geomreg/train/configs_gpu_native.json).
set -u
minutes=${1:-5}
export PYTHONUNBUFFERED=1 PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True
for half in /tmp/gpu_half_a "$PWD/.gpu_b"; do
  [ -f "$half/PACK_HALF" ] || { echo "$half is missing: the machine was not the warm one of the first call"; exit 3; }
done
data=/tmp/gpu_native && mkdir -p $data && ln -sfn /tmp/gpu_half_a "$PWD/.gpu_a"  # the config reads .gpu_a/gt_fixes.csv
for half in .gpu_a .gpu_b; do for entry in "$PWD/$half"/*; do ln -sfn "$entry" "$data/"; done; done
rm -f $data/PACK_HALF
start=(--init-weights geomreg/weights/regnetmamba2.pt)
[ -n "${GPU_LEG_RESUME:-}" ] && start=(--resume "$GPU_LEG_RESUME") && rm -f "$data/$(basename "$GPU_LEG_RESUME")"
PYTHONPATH=. timeout $(( ${minutes%.*} * 60 + 150 )) python3 -c 'from geomreg.train.cli_cmd import train_command; train_command()' \
  --data $data --out "$OUT/run" "${start[@]}" --device cuda --max-minutes "$minutes" \
  --config "${GPU_LEG_CONFIG:-geomreg/train/configs_gpu_native.json}" 2>&1 | grep -av "train:\|loading" | tail -30
nvidia-smi --query-gpu=memory.used --format=csv,noheader
# What comes back: at most 8 files of 16 MiB, 64 MiB in all: the logs, the first and the last three validated checkpoints.
# A resumed leg keeps last.pt (what the next leg continues) instead of its first validated checkpoint.
cd "$OUT/run" && rm -f best.pt split.txt && { [ -n "${GPU_LEG_RESUME:-}" ] || rm -f last.pt; } \
  && ls step_*.pt 2>/dev/null | head -n -3 | tail -n +2 | xargs -r rm -f; ls -la
