"""Read dataset directories laid out as ``MANIFEST.csv`` + ``<modality>/<pair_id>/{ref,mov}.* , H_mov_to_ref.txt``.

``H_mov_to_ref`` maps moving pixel coordinates to reference pixel coordinates (0-based, pixel centres
at integers), the convention used everywhere in geomreg.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image

REQUIRED_COLUMNS = ("pair_id", "modality", "ref_path", "mov_path", "aligned", "gt")


class DatasetError(ValueError):
    """A dataset directory or one of its pairs is unusable; the message names the pair and the problem."""


@dataclass(frozen=True)
class PairRecord:
    pair_id: str
    modality: str
    ref_path: Path
    mov_path: Path
    h_path: Path | None  # None: an aligned pair listed without a matrix, whose ground truth is the identity
    aligned: bool
    # Ground truth re-estimated by geomreg.data.gt_audit, used instead of h_path (9 numbers, row-major).
    h_fixed: tuple[float, ...] | None = None


def _read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, str]]:
    """Rows of a CSV file that must have the `required` columns (DatasetError naming the file otherwise)."""
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in required if c not in (reader.fieldnames or [])]
        if missing:
            raise DatasetError(f"{path}: missing columns {missing}")
        return list(reader)


def read_manifest(root: str | Path) -> list[PairRecord]:
    root = Path(root)
    manifest = root / "MANIFEST.csv"
    if not manifest.is_file():
        raise DatasetError(f"{root}: no MANIFEST.csv in the dataset directory")
    rows = _read_csv(manifest, REQUIRED_COLUMNS)
    records = []
    for row in rows:
        aligned = row["aligned"].strip().lower() in ("yes", "true", "1")
        records.append(
            PairRecord(
                pair_id=row["pair_id"],
                modality=row["modality"],
                ref_path=root / row["ref_path"],
                mov_path=root / row["mov_path"],
                h_path=_ground_truth_path(root, row, aligned),
                aligned=aligned,
            )
        )
    if not records:
        raise DatasetError(f"{manifest}: no pairs listed")
    return records


def _ground_truth_path(root: Path, row: dict[str, str], aligned: bool) -> Path | None:
    """The pair's H_mov_to_ref.txt (listed in `gt`, else beside ref), or None for an aligned pair that has none.

    Evaluation sets list already co-registered pairs as `aligned=yes` with `gt` = `none`: their ground truth is the
    identity. A pair that is not aligned keeps its path even when the file is missing, so loading it names the pair.
    """
    listed = [g for g in row["gt"].split(";") if g.strip().endswith("H_mov_to_ref.txt")]
    path = root / (listed[0].strip() if listed else Path(row["ref_path"]).parent / "H_mov_to_ref.txt")
    if aligned and not listed and not path.is_file():
        return None
    return path


def read_homography(path: Path, pair_id: str) -> np.ndarray:
    if not path.is_file():
        raise DatasetError(f"pair {pair_id}: ground-truth file missing: {path}")
    try:
        H = np.loadtxt(path, comments="#", dtype=np.float64)
    except ValueError as exc:
        raise DatasetError(f"pair {pair_id}: malformed ground-truth matrix in {path}: {exc}") from None
    if H.shape != (3, 3) or not np.all(np.isfinite(H)) or abs(np.linalg.det(H)) < 1e-12:
        raise DatasetError(f"pair {pair_id}: {path} is not a finite, invertible 3x3 matrix (shape {H.shape})")
    return H / H[2, 2]


def read_image(path: Path, pair_id: str) -> np.ndarray:
    """Image as HxW (grey) or HxWx3 uint8/uint16/float array."""
    if not path.is_file():
        raise DatasetError(f"pair {pair_id}: image missing: {path}")
    try:
        with Image.open(path) as im:
            if im.mode in ("I;16", "I;16B", "I", "F"):
                arr = np.asarray(im)
            else:
                arr = np.asarray(im.convert("RGB") if im.mode not in ("L", "RGB") else im)
    except Exception as exc:  # PIL raises many types for corrupt files
        try:
            import rasterio

            with rasterio.open(path) as ds:
                data = ds.read()
            arr = data[0] if data.shape[0] == 1 else np.moveaxis(data[:3], 0, -1)
        except Exception:
            raise DatasetError(f"pair {pair_id}: unreadable image {path}: {exc}") from None
    if arr.size == 0:
        raise DatasetError(f"pair {pair_id}: empty image {path}")
    return arr


def load_pair(rec: PairRecord) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ref, mov, H_mov_to_ref) of one pair (the audited ground truth where the record carries one)."""
    if rec.h_fixed is not None:
        H = np.array(rec.h_fixed, np.float64).reshape(3, 3)
    elif rec.h_path is None:
        H = np.eye(3)
    else:
        H = read_homography(rec.h_path, rec.pair_id)
    return read_image(rec.ref_path, rec.pair_id), read_image(rec.mov_path, rec.pair_id), H


GT_FIX_COLUMNS = ("pair_id", "verdict") + tuple(f"h{i}{j}" for i in range(3) for j in range(3))


def read_gt_fixes(path: str | Path) -> dict[str, tuple[float, ...] | None]:
    """pair_id -> audited H_mov_to_ref (row-major) or None (unverified: leave the pair out).

    The file is what ``scripts/audit_ground_truth.py`` writes; pairs it does not list keep their own ground truth.
    """
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: ground-truth fixes file not found")
    fixes: dict[str, tuple[float, ...] | None] = {}
    for row in _read_csv(path, GT_FIX_COLUMNS):
        if row["verdict"] == "unverified":
            fixes[row["pair_id"]] = None
            continue
        try:
            H = np.array([float(row[f"h{i}{j}"]) for i in range(3) for j in range(3)])
        except ValueError:
            raise DatasetError(f"{path}: pair {row['pair_id']}: malformed matrix") from None
        if not np.all(np.isfinite(H)) or abs(np.linalg.det(H.reshape(3, 3))) < 1e-12:
            raise DatasetError(f"{path}: pair {row['pair_id']}: not a finite, invertible matrix")
        fixes[row["pair_id"]] = tuple(float(v) for v in H)
    return fixes


def apply_gt_fixes(records: list[PairRecord], fixes: dict[str, tuple[float, ...] | None]) -> list[PairRecord]:
    """Records with audited ground truth swapped in and unverified pairs dropped."""
    out = []
    for r in records:
        if r.pair_id not in fixes:
            out.append(r)
        elif fixes[r.pair_id] is not None:
            out.append(replace(r, h_fixed=fixes[r.pair_id]))
    return out


def read_dataset(root: str | Path, gt_fixes: str | Path | None = None) -> list[PairRecord]:
    """read_manifest, then the audited ground truth of ``gt_fixes`` (a CSV) when given."""
    records = read_manifest(root)
    return apply_gt_fixes(records, read_gt_fixes(gt_fixes)) if gt_fixes else records


def split_pairs(records: list[PairRecord], val_fraction: float = 0.1) -> tuple[list[PairRecord], list[PairRecord]]:
    """Deterministic train/validation split by pair id: sha1(pair_id) decides, so it never depends on order."""

    def bucket(pid: str) -> float:
        return int(hashlib.sha1(pid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF

    val = [r for r in records if bucket(r.pair_id) < val_fraction]
    train = [r for r in records if bucket(r.pair_id) >= val_fraction]
    return train, val
