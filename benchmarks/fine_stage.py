"""Fine-stage diagnostic: per-match error of RegNetMamba-2's refined positions against their coarse anchors.

    .venv/bin/python benchmarks/fine_stage.py --data ../shared/data/train [--checkpoint CKPT] [--pairs-per-modality 3]

On the validation split (the one training holds out), one random-warp instance per pair as the real pair and one
as a self pair (exact ground truth); see geomreg/evaluation/fine_stage.py. Prints a table per modality.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--checkpoint", type=Path, default=None, help="default: the packaged weights")
    ap.add_argument("--pairs-per-modality", type=int, default=3)
    ap.add_argument("--threshold", type=float, default=0.01, help="coarse threshold for every checkpoint compared (0.01: the shipped one)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--local-radius", type=int, default=None,
                    help="fine position at inference: soft-argmax over the peak +- this many cells (0: whole window; default: the model's)")
    ap.add_argument("--window", type=int, default=None, help="fine window side at inference (default: the checkpoint's)")
    ap.add_argument("--gt-fixes", type=Path, default=None, help="audited ground truth (scripts/audit_ground_truth.py)")
    args = ap.parse_args(argv)

    from dataclasses import replace

    import torch

    from geomreg.data.manifest import DatasetError, read_dataset, split_pairs
    from geomreg.evaluation.fine_stage import as_rows, fine_stage_stats, overall
    from geomreg.matching.weights import PACKAGED_WEIGHTS, CheckpointError, load_checkpoint
    from geomreg.train.pairs import cache_pair

    torch.set_num_threads(args.threads)
    try:
        model = load_checkpoint(args.checkpoint or PACKAGED_WEIGHTS).set_coarse_threshold(args.threshold)
        _, val = split_pairs(read_dataset(args.data, args.gt_fixes), 0.1)
    except (DatasetError, CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    by_mod = defaultdict(list)
    for r in val:
        by_mod[r.modality].append(r)
    if args.local_radius is not None:
        model.fine.cfg = replace(model.fine.cfg, local_radius=args.local_radius)
    if args.window is not None:
        model.set_fine_window(args.window)
    pairs = [cache_pair(r) for m in sorted(by_mod) for r in by_mod[m][: args.pairs_per_modality]]
    stats = fine_stage_stats(model, pairs)
    print(f"{'modality':10s} {'kind':5s} {'correct/matches':>15s} {'anchor med px':>13s} {'fine med px':>11s} {'fine <1 px':>10s} {'std':>5s} {'gain':>5s}")
    for s in stats:
        print(f"{s.modality:10s} {s.kind:5s} {s.correct:7d}/{s.matches:<7d} {s.anchor_median_px:13.2f} {s.fine_median_px:11.2f} "
              f"{s.fine_within_1px:10.2f} {s.std_median:5.2f} {s.gain:5.2f}")
    for kind in ("real", "self"):
        o = overall(stats, kind)
        print(f"all {kind}: anchor {o['anchor_median_px']:.2f} px, fine {o['fine_median_px']:.2f} px, within 1 px "
              f"{o['fine_within_1px']:.2f}, gain of truth on prediction {o['gain']:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"checkpoint": str(args.checkpoint or PACKAGED_WEIGHTS), "stats": as_rows(stats),
                                         "overall": {k: overall(stats, k) for k in ("real", "self")}}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
