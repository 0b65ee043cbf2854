"""Scores of a set of correspondences against a known homography (the paper-style protocol).

A method's matches are turned into a homography with MAGSAC (3 px), which is scored by its RMSE on a
regular grid of reference pixels; NCM counts matches within 3 px of the truth, CMR = NCM / matches.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SUCCESS_THRESHOLDS_PX = (3.0, 5.0, 10.0)


@dataclass(frozen=True)
class InstanceScore:
    n_matches: int
    ncm: int  # matches within ncm_threshold px of the truth
    cmr: float  # ncm / n_matches (0 when there are no matches)
    grid_rmse: float  # inf when no homography could be fitted
    seconds: float = 0.0

    def success(self, threshold_px: float) -> bool:
        return bool(self.grid_rmse <= threshold_px)


def apply_homography(H: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """[N, 2] points through a 3x3 homography."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    p = np.c_[xy, np.ones(len(xy))] @ H.T
    with np.errstate(divide="ignore", invalid="ignore"):
        return p[:, :2] / p[:, 2:3]


def fit_homography(src_xy: np.ndarray, dst_xy: np.ndarray, threshold_px: float = 3.0, seed: int = 0) -> np.ndarray | None:
    """Robust homography src -> dst with OpenCV's USAC MAGSAC; None when it cannot be fitted."""
    if len(src_xy) < 4:
        return None
    cv2.setRNGSeed(seed)
    H, _ = cv2.findHomography(
        np.asarray(src_xy, np.float64), np.asarray(dst_xy, np.float64), cv2.USAC_MAGSAC, threshold_px, maxIters=10000, confidence=0.999
    )
    if H is None or not np.all(np.isfinite(H)):
        return None
    return H


def grid_points(width: int, height: int, step: int = 8) -> np.ndarray:
    xs, ys = np.meshgrid(np.arange(0, width, step, dtype=np.float64), np.arange(0, height, step, dtype=np.float64))
    return np.c_[xs.ravel(), ys.ravel()]


def grid_rmse(H_est: np.ndarray | None, H_true: np.ndarray, width: int, height: int, valid: np.ndarray | None = None) -> float:
    """RMSE (px) between two ref->mov mappings over a grid of reference pixels (optionally only valid ones)."""
    if H_est is None:
        return float("inf")
    pts = grid_points(width, height)
    if valid is not None:
        keep = valid[pts[:, 1].astype(int), pts[:, 0].astype(int)]
        if keep.sum() >= 4:
            pts = pts[keep]
    d = apply_homography(H_est, pts) - apply_homography(H_true, pts)
    err = np.sqrt(np.mean(np.sum(d**2, axis=1)))
    return float(err) if np.isfinite(err) else float("inf")


def score_matches(
    ref_xy: np.ndarray,
    mov_xy: np.ndarray,
    H_ref_to_mov: np.ndarray,
    width: int,
    height: int,
    *,
    ncm_threshold_px: float = 3.0,
    ransac_threshold_px: float = 3.0,
    valid: np.ndarray | None = None,
    seconds: float = 0.0,
) -> InstanceScore:
    """Score matches (ref pixel -> mov pixel) against the true ref->mov homography."""
    n = len(ref_xy)
    if n == 0:
        return InstanceScore(0, 0, 0.0, float("inf"), seconds)
    err = np.linalg.norm(apply_homography(H_ref_to_mov, ref_xy) - mov_xy, axis=1)
    ncm = int(np.sum(err <= ncm_threshold_px))
    H_est = fit_homography(ref_xy, mov_xy, ransac_threshold_px)
    return InstanceScore(n, ncm, ncm / n, grid_rmse(H_est, H_ref_to_mov, width, height, valid), seconds)
