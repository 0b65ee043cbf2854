"""Dataset directories in the MANIFEST.csv format (pairs of images with a mov->ref homography)."""

from geomreg.data.manifest import DatasetError, PairRecord, load_pair, read_manifest, split_pairs

__all__ = ["DatasetError", "PairRecord", "load_pair", "read_manifest", "split_pairs"]
