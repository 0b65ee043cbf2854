"""Where a pair's own ground truth disagrees with its images: the local residual field of the given matrix.

    .venv/bin/python benchmarks/gt_residuals.py --data ../shared/data/train --pairs epfl_country_0070 \\
        [--methods regnetmamba2,cfog,sift] [--grid 4x3] [--gt-fixes data_audit/train_gt_fixes.csv]

Each method matches the *unwarped* pair; every tie point's moving position is mapped onto the reference with
the pair's H_mov_to_ref, and its residual (mapped minus reference position) is summarised per cell of a grid
over the reference image: the median dx, dy and the number of tie points. Where the ground truth is right, the
residuals of a good matcher scatter around zero everywhere. A shift shared by independent methods says the matrix
is off there; cells that disagree with each other say that no single homography relates the two images
(parallax, or a scene that moved between exposures), which no registration method can fix and no 3 px success
threshold can ignore.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

MIN_POINTS = 6  # a cell with fewer tie points prints as "-"


def residuals(ref_xy, mov_xy, H_mov_to_ref):
    """[N, 2] reference-frame residuals of tie points under the given mov -> ref homography."""
    import cv2
    import numpy as np

    mov = np.asarray(mov_xy, np.float64).reshape(-1, 2)
    if len(mov) == 0:  # a method that found nothing (OpenCV returns None for no points)
        return np.zeros((0, 2))
    mapped = cv2.perspectiveTransform(mov[None], np.asarray(H_mov_to_ref, np.float64))[0]
    return mapped - np.asarray(ref_xy, np.float64)


def grid_medians(ref_xy, res, width: int, height: int, cols: int, rows: int) -> list[list[tuple[float, float, int] | None]]:
    """Median (dx, dy) and count of the residuals per grid cell over the reference image (row-major)."""
    import numpy as np

    gx = np.clip((ref_xy[:, 0] + 0.5) * cols // width, 0, cols - 1)
    gy = np.clip((ref_xy[:, 1] + 0.5) * rows // height, 0, rows - 1)
    out = []
    for r in range(rows):
        row = []
        for c in range(cols):
            sel = (gx == c) & (gy == r)
            n = int(sel.sum())
            row.append((float(np.median(res[sel, 0])), float(np.median(res[sel, 1])), n) if n >= MIN_POINTS else None)
        out.append(row)
    return out


def format_grid(cells) -> str:
    fmt = lambda v: "-" if v is None else f"{v[0]:+.1f}, {v[1]:+.1f} ({v[2]})"  # noqa: E731
    cols = len(cells[0])
    lines = ["| row | " + " | ".join(f"col {c}" for c in range(cols)) + " |", "|---" * (cols + 1) + "|"]
    lines += [f"| {r} | " + " | ".join(fmt(v) for v in row) + " |" for r, row in enumerate(cells)]
    return "\n".join(lines)


def _grid_arg(text: str) -> tuple[int, int]:
    try:
        cols, rows = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--grid {text!r}: expected COLSxROWS, e.g. 4x3") from None
    if cols < 1 or rows < 1:
        raise argparse.ArgumentTypeError(f"--grid {text!r}: both sides must be at least 1")
    return cols, rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="dataset directory with MANIFEST.csv")
    ap.add_argument("--pairs", required=True, help="comma-separated pair ids")
    ap.add_argument("--methods", default="regnetmamba2,cfog", help="comma-separated, from regnetmamba2, cfog, sift")
    ap.add_argument("--grid", type=_grid_arg, default=(4, 3), help="COLSxROWS cells over the reference (default 4x3)")
    ap.add_argument("--gt-fixes", help="audited ground truth CSV (scripts/audit_ground_truth.py)")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from geomreg.data.manifest import DatasetError, load_pair, read_dataset
    from benchmarks import peers
    from geomreg.evaluation import methods as own

    torch.set_num_threads(args.threads)
    builders = {"regnetmamba2": lambda: own.regnetmamba2(device="cpu"), "cfog": own.cfog, "sift": peers.sift}
    names = [m for m in args.methods.split(",") if m]
    unknown = [m for m in names if m not in builders]
    if unknown:
        print(f"error: unknown method(s) {', '.join(unknown)}; choose from {', '.join(builders)}", file=sys.stderr)
        return 2
    try:
        records = {r.pair_id: r for r in read_dataset(args.data, args.gt_fixes)}
        wanted = [p for p in args.pairs.split(",") if p]
        missing = [p for p in wanted if p not in records]
        if missing:
            raise DatasetError(f"{args.data}: no pair {', '.join(missing)} in MANIFEST.csv")
        pairs = [(p, *load_pair(records[p])) for p in wanted]
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    matchers = {m: builders[m]() for m in names}
    cols, rows = args.grid
    for pair_id, ref, mov, H in pairs:
        h, w = ref.shape[:2]
        for name, matcher in matchers.items():
            r = matcher.match(ref, mov)
            res = residuals(r.ref_xy, r.mov_xy, H)
            if len(res) == 0:
                print(f"\n{pair_id}, {name}: no tie points on the unwarped pair")
                continue
            med = np.median(res, axis=0)
            print(f"\n{pair_id}, {name}: {len(res)} tie points on the unwarped pair; median residual "
                  f"({med[0]:+.2f}, {med[1]:+.2f}) px; per cell median dx, dy (tie points):\n")
            print(format_grid(grid_medians(np.asarray(r.ref_xy, np.float64), res, w, h, cols, rows)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
