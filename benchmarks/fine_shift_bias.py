"""Fine-stage bias against a known sub-cell shift: how far the network's tie points miss a pure translation.

    .venv/bin/python benchmarks/fine_shift_bias.py --data ../shared/data/train [--windows 5 7] [--images 3]

Each of the first validation reference images (one per modality, resized to 384 px) is matched against a copy
of itself shifted by -4 ... +4 px along x (bicubic), with one fine pass (no guidance: the bias is the fine
stage's own). A pure shift puts every match at the same place inside its coarse cell, so a bias of the fine
position there does not average out over the image. Printed per shift: the mean x error (the bias) and the
median |x error| of the matches within 3 px; then the mean squared bias and the mean Euclidean error.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

SHIFTS_PX = tuple(range(-4, 5))
SIZE = 384
BORDER_PX = 12  # matches this close to the left/right edge see the shifted-in border


def shift_errors(matcher, image, shift_px: float):
    """x-error and Euclidean error [N] of the matches within 3 px of a pure x shift of ``image``."""
    import cv2
    import numpy as np

    h, w = image.shape
    moved = cv2.warpAffine(image, np.float32([[1, 0, shift_px], [0, 1, 0]]), (w, h), flags=cv2.INTER_CUBIC)
    r = matcher.match(image, moved)
    err = r.mov_xy - (r.ref_xy + [shift_px, 0.0])
    keep = (np.abs(err).max(axis=1) < 3) & (r.ref_xy[:, 0] > BORDER_PX) & (r.ref_xy[:, 0] < w - BORDER_PX)
    return err[keep, 0], np.linalg.norm(err[keep], axis=1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, type=Path)
    ap.add_argument("--checkpoint", type=Path, default=None, help="default: the packaged weights")
    ap.add_argument("--windows", type=int, nargs="+", default=[5, 7], help="fine window sides compared")
    ap.add_argument("--images", type=int, default=3, help="validation reference images (one per modality)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)

    import cv2
    import numpy as np
    import torch

    from geomreg.data.manifest import DatasetError, read_dataset, split_pairs
    from geomreg.matching.api import Matcher, MatcherConfig
    from geomreg.matching.weights import PACKAGED_WEIGHTS, CheckpointError, load_checkpoint

    torch.set_num_threads(args.threads)
    try:
        _, val = split_pairs(read_dataset(args.data), 0.1)
        model = load_checkpoint(args.checkpoint or PACKAGED_WEIGHTS)
    except (DatasetError, CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    first_per_modality = {}
    for rec in val:
        first_per_modality.setdefault(rec.modality, rec)
    records = [first_per_modality[m] for m in sorted(first_per_modality)][: args.images]
    images = [cv2.resize(cv2.imread(str(r.ref_path), cv2.IMREAD_GRAYSCALE), (SIZE, SIZE)) for r in records]
    print("images:", ", ".join(r.pair_id for r in records))
    matcher = Matcher(model, "cpu", MatcherConfig(guide=None))
    for window in args.windows:
        matcher.model.set_fine_window(window)
        biases, mean_errors, cells = [], [], []
        for s in SHIFTS_PX:
            ex, e = (np.concatenate(v) for v in zip(*(shift_errors(matcher, im, float(s)) for im in images)))
            biases.append(ex.mean())
            mean_errors.append(e.mean())
            cells.append(f"{s:+d}: {ex.mean():+.2f} / {np.median(np.abs(ex)):.2f}")
        print(f"window {window}: bias / median |x error| per shift (px)  " + "  ".join(cells))
        print(f"window {window}: mean squared bias {np.mean(np.square(biases)):.3f} px^2, largest |bias| "
              f"{np.max(np.abs(biases)):.2f} px, mean error {np.mean(mean_errors):.3f} px")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
