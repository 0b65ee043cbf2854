"""Pack a MANIFEST.csv dataset compactly (grey JPEG, longest side capped) so that it can travel to a GPU machine.

    .venv/bin/python scripts/pack_training_data.py ../shared/data/train .gpu_data [--max-side 384]

The homographies are rewritten for the resize (pixel-centre convention), so every pair stays exact.
The packed copy is research-use data like its source: it lives in an ignored folder and is never committed.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import cv2
import numpy as np

from geomreg.data.manifest import load_pair, read_manifest
from geomreg.train.pairs import shrink


def grey_shrunk(img: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    if grey.dtype != np.uint8:
        lo, hi = np.percentile(grey, (0.5, 99.5))
        grey = np.clip((grey - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    return shrink(grey, max_side)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--max-side", type=int, default=256)
    ap.add_argument("--quality", type=int, default=80)
    args = ap.parse_args()
    rows = []
    for rec in read_manifest(args.src):
        ref, mov, H = load_pair(rec)
        ref_s, S_ref = grey_shrunk(ref, args.max_side)
        mov_s, S_mov = grey_shrunk(mov, args.max_side)
        H = S_ref @ H @ np.linalg.inv(S_mov)
        d = args.dst / rec.modality / rec.pair_id
        d.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(d / "ref.jpg"), ref_s, [cv2.IMWRITE_JPEG_QUALITY, args.quality])
        cv2.imwrite(str(d / "mov.jpg"), mov_s, [cv2.IMWRITE_JPEG_QUALITY, args.quality])
        np.savetxt(d / "H_mov_to_ref.txt", H / H[2, 2], header=f"packed from {rec.h_path}, resized to max side {args.max_side}")
        rel = f"{rec.modality}/{rec.pair_id}"
        rows.append([rec.pair_id, rec.modality, f"{rel}/ref.jpg", f"{rel}/mov.jpg", "yes" if rec.aligned else "no", f"{rel}/H_mov_to_ref.txt"])
    with open(args.dst / "MANIFEST.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["pair_id", "modality", "ref_path", "mov_path", "aligned", "gt"])
        w.writerows(rows)
    print(f"packed {len(rows)} pairs into {args.dst}")


if __name__ == "__main__":
    main()
