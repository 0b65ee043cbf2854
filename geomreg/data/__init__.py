"""Dataset directories in the MANIFEST.csv format (pairs of images with a mov->ref homography)."""

from geomreg.data.manifest import (
    DatasetError,
    PairRecord,
    apply_gt_fixes,
    load_pair,
    read_dataset,
    read_gt_fixes,
    read_manifest,
    split_pairs,
)

__all__ = ["DatasetError", "PairRecord", "apply_gt_fixes", "load_pair", "read_dataset", "read_gt_fixes", "read_manifest", "split_pairs"]
