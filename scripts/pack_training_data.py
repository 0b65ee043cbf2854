"""Pack a MANIFEST.csv dataset compactly (grey JPEG, longest side capped) so that it can travel to a GPU machine.

    .venv/bin/python scripts/pack_training_data.py ../shared/data/train .gpu_data [--max-side 384]
    .venv/bin/python scripts/pack_training_data.py ../shared/data/train .gpu_data --window 288

--max-side shrinks whole images: compact, but the network then trains on coarser views than users run it on
(measured: a GPU leg on max-side-256 copies lifted validation on those copies from 0.60 to 0.68 and dropped
the whole-image score on the real data from about 0.45 to 0.10). --window keeps the scale of CPU training
(the cache's 512 px longest side) and packs one window of the reference per pair, with the region of the
moving image that it sees.

--native packs what CPU training itself caches: colour kept (the NIR-like band mixing needs it), images no
larger than the cache's longest side copied byte for byte, larger ones shrunk exactly as the cache shrinks
them (INTER_AREA) and written at --quality. (Re-encoding the native JPEGs made the pack larger, not smaller:
the sources are already compact.)

The homographies are rewritten for the resize and the crop (pixel-centre convention), so every pair stays exact.
With --gt-fixes the audited ground truth (data_audit/README.md) is applied first, and the pack gets its own
gt_fixes.csv (the packed matrices of the audited pairs) so that training still trusts them: point the config's
gt_fixes at it.
The packed copy is research-use data like its source: it lives in an ignored folder and is never committed.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import shutil
from pathlib import Path

import cv2
import numpy as np

from geomreg.data.manifest import GT_FIX_COLUMNS, load_pair, read_dataset
from geomreg.train.pairs import CACHE_MAX_SIDE, shrink


def grey_shrunk(img: np.ndarray, max_side: int) -> tuple[np.ndarray, np.ndarray]:
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY) if img.ndim == 3 else img
    if grey.dtype != np.uint8:
        lo, hi = np.percentile(grey, (0.5, 99.5))
        grey = np.clip((grey - lo) / max(hi - lo, 1e-6) * 255, 0, 255).astype(np.uint8)
    return shrink(grey, max_side)


def window_pair(ref: np.ndarray, mov: np.ndarray, H: np.ndarray, size: int, rng: np.random.Generator, margin: int = 16):
    """A size x size window of ref (random place) and the box of mov that maps into it (plus a margin).

    Returns (ref_crop, mov_crop, H_crop): H_crop maps crop-of-mov pixels to crop-of-ref pixels.
    """
    h, w = ref.shape
    x0 = int(rng.integers(0, max(w - size, 0) + 1))
    y0 = int(rng.integers(0, max(h - size, 0) + 1))
    x1, y1 = min(x0 + size, w), min(y0 + size, h)
    corners = np.array([[x0, y0, 1], [x1, y0, 1], [x1, y1, 1], [x0, y1, 1]], dtype=np.float64).T
    seen = np.linalg.inv(H) @ corners
    seen = seen[:2] / seen[2]
    mh, mw = mov.shape
    mx0, my0 = (max(0, int(np.floor(seen[i].min())) - margin) for i in (0, 1))
    mx1, my1 = min(mw, int(np.ceil(seen[0].max())) + margin + 1), min(mh, int(np.ceil(seen[1].max())) + margin + 1)
    if mx1 - mx0 < 32 or my1 - my0 < 32:  # the window sees almost nothing of mov: keep the whole of it
        mx0, my0, mx1, my1 = 0, 0, mw, mh
    shift = lambda dx, dy: np.array([[1.0, 0, dx], [0, 1.0, dy], [0, 0, 1.0]])  # noqa: E731
    return ref[y0:y1, x0:x1], mov[my0:my1, mx0:mx1], shift(-x0, -y0) @ H @ shift(mx0, my0)


def native_image(src: Path, img: np.ndarray, d: Path, side: str, quality: int) -> tuple[np.ndarray, str]:
    """Write img (read from src) into d as CPU training would cache it: (pixel map src -> packed, file name)."""
    small, S = shrink(img, CACHE_MAX_SIDE)
    if np.allclose(S, np.eye(3)):  # the cache keeps it as it is: so does the pack, byte for byte
        name = f"{side}{src.suffix.lower()}"
        shutil.copyfile(src, d / name)
        return S, name
    if small.dtype != np.uint8:
        raise SystemExit(f"{src}: --native shrinks only 8-bit images")
    cv2.imwrite(str(d / f"{side}.jpg"), cv2.cvtColor(small, cv2.COLOR_RGB2BGR) if small.ndim == 3 else small, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return S, f"{side}.jpg"


def pack_native(rec, d: Path, quality: int) -> tuple[np.ndarray, str, str]:
    """(H in the packed pixels, ref file name, mov file name) of one pair packed with --native into d."""
    ref, mov, H = load_pair(rec)
    S_ref, ref_name = native_image(Path(rec.ref_path), ref, d, "ref", quality)
    S_mov, mov_name = native_image(Path(rec.mov_path), mov, d, "mov", quality)
    return S_ref @ H @ np.linalg.inv(S_mov), ref_name, mov_name


def pack_grey(rec, d: Path, quality: int, max_side: int, window: int) -> tuple[np.ndarray, str, str]:
    """(H in the packed pixels, ref file name, mov file name) of one pair packed grey (optionally one window)."""
    ref, mov, H = load_pair(rec)
    ref_s, S_ref = grey_shrunk(ref, max_side)
    mov_s, S_mov = grey_shrunk(mov, max_side)
    H = S_ref @ H @ np.linalg.inv(S_mov)
    if window:
        seed = int(hashlib.sha1(rec.pair_id.encode()).hexdigest()[:8], 16)
        ref_s, mov_s, H = window_pair(ref_s, mov_s, H, window, np.random.default_rng(seed))
    cv2.imwrite(str(d / "ref.jpg"), ref_s, [cv2.IMWRITE_JPEG_QUALITY, quality])
    cv2.imwrite(str(d / "mov.jpg"), mov_s, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return H, "ref.jpg", "mov.jpg"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("src", type=Path)
    ap.add_argument("dst", type=Path)
    ap.add_argument("--max-side", type=int, default=256)
    ap.add_argument("--quality", type=int, default=80)
    ap.add_argument("--window", type=int, default=0, help="pack one native-scale window of this side per pair (see above)")
    ap.add_argument("--native", action="store_true", help="colour, the cache's own scale, native files kept (see above)")
    ap.add_argument("--gt-fixes", type=Path, default=None, help="audited ground truth to apply (scripts/audit_ground_truth.py)")
    args = ap.parse_args()
    max_side = CACHE_MAX_SIDE if args.window else args.max_side
    rows, fixes = [], []
    how = "at the training cache's scale" if args.native else f"resized to max side {max_side}" + (f", window {args.window}" if args.window else "")
    for rec in read_dataset(args.src, args.gt_fixes):
        rel = f"{rec.modality}/{rec.pair_id}"
        d = args.dst / rel
        d.mkdir(parents=True, exist_ok=True)
        if args.native:
            H, ref_name, mov_name = pack_native(rec, d, args.quality)
        else:
            H, ref_name, mov_name = pack_grey(rec, d, args.quality, max_side, args.window)
        H = H / H[2, 2]
        np.savetxt(d / "H_mov_to_ref.txt", H, header=f"packed from {rec.h_path or 'the identity (aligned pair)'}, {how}")
        if rec.h_fixed is not None:
            fixes.append([rec.pair_id, "corrected", *(repr(float(v)) for v in H.ravel())])
        rows.append([rec.pair_id, rec.modality, f"{rel}/{ref_name}", f"{rel}/{mov_name}", "yes" if rec.aligned else "no", f"{rel}/H_mov_to_ref.txt"])
    with open(args.dst / "MANIFEST.csv", "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["pair_id", "modality", "ref_path", "mov_path", "aligned", "gt"])
        w.writerows(rows)
    if args.gt_fixes:
        with open(args.dst / "gt_fixes.csv", "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(GT_FIX_COLUMNS)
            w.writerows(fixes)
    print(f"packed {len(rows)} pairs into {args.dst}" + (f" ({len(fixes)} with audited ground truth)" if args.gt_fixes else ""))


if __name__ == "__main__":
    main()
