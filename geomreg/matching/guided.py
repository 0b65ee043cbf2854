"""Guided matching: the fine stage run a second time, its windows centred where the first pass's geometry
puts each matched cell.

Why: most of the network's wrong tie points are near misses, not wild ones. A coarse match that lands on a
neighbouring 8 px cell leaves the truth at the edge of, or outside, the fine window around that cell, and
the fine stage cannot reach it: on the validation split the matches between 3 and 8 px off outnumbered the
ones within 3 px on many pairs, and a homography fitted to only the correct ones registered nearly every pair
that failed. A robust model of the first pass (MAGSAC, generous threshold) is right far more often than
its individual matches are, so its prediction is a better window centre than the coarse cell: the fine stage
then localises every matched cell of A from there, within a window of +-3 fine px (+-6 px; the shipped
weights run the fine stage at 7 x 7, RegNetMamba2.set_fine_window). The positions still come from the
network's own correlation, not from the model, so local departures from a homography (relief, lens) within
the window are kept. On the 128 warped validation instances of `scripts/export_weights.py CKPT --score-only
--max-pairs 25` (step 13,500): success@3 px 0.71 with one pass at 5 x 5, 0.77 guided at 7 x 7; a prototype of
the same procedure on a second warp seed gave 0.76 and 0.81.

When no model can be fitted (too few matches, too few agreeing), the first pass is returned unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from geomreg.matching.model import Correspondences, RegNetMamba2, RegNetOutput

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GuideConfig:
    # A homography within this many px of a match counts it as agreeing. First-pass matches are good to a
    # few px where right; in the prototype, 5 px registered more validation instances at 3 px than 8 px did
    # (0.79 against 0.77 over two warp seeds).
    threshold_px: float = 5.0
    min_inliers: int = 8
    max_iters: int = 10_000


def supported_homography(
    src: np.ndarray, dst: np.ndarray, threshold_px: float, min_inliers: int, *,
    max_iters: int = 2000, confidence: float = 0.995, seed: int | None = None,
) -> np.ndarray | None:
    """Robust src -> dst homography [3, 3] (MAGSAC) that at least ``min_inliers`` matches agree on, or None.

    The iteration defaults are OpenCV's; ``seed`` fixes its sampling (None: whatever state it is in).
    """
    if len(src) < max(min_inliers, 4):
        return None
    if seed is not None:
        cv2.setRNGSeed(seed)
    H, inliers = cv2.findHomography(
        np.asarray(src, np.float64), np.asarray(dst, np.float64), cv2.USAC_MAGSAC, threshold_px, maxIters=max_iters, confidence=confidence
    )
    if H is None or inliers is None or int(inliers.sum()) < min_inliers or not np.all(np.isfinite(H)):
        return None
    return H


def fit_guide(xy_a: np.ndarray, xy_b: np.ndarray, cfg: GuideConfig) -> np.ndarray | None:
    """Robust A -> B homography [3, 3] of one pair's first-pass matches, or None when none is supported.
    Seeded: the same matches give the same guide, run after run."""
    return supported_homography(xy_a, xy_b, cfg.threshold_px, cfg.min_inliers, max_iters=cfg.max_iters, confidence=0.999, seed=0)


def guided_matches(model: RegNetMamba2, out: RegNetOutput, valid_b: torch.Tensor, cfg: GuideConfig) -> Correspondences:
    """The first pass (out.matches) refined again around each pair's guide; pairs without one keep theirs.

    valid_b [B, 1, H, W] bool: a guided window whose centre falls outside B's valid pixels is dropped.
    """
    first = out.matches
    predicted = first.xy_b.clone()  # [M, 2]; pairs without a guide are not re-run (keep below)
    guided = torch.zeros_like(first.batch, dtype=torch.bool)
    for b in range(valid_b.shape[0]):
        sel = torch.nonzero(first.batch == b).squeeze(1)
        xy_a = first.xy_a[sel].double().cpu().numpy()
        H = fit_guide(xy_a, first.xy_b[sel].double().cpu().numpy(), cfg)
        if H is None:
            log.debug("guided matching: no model for pair %d of the batch (%d matches); first pass kept", b, len(sel))
            continue
        predicted[sel] = torch.from_numpy(cv2.perspectiveTransform(xy_a[None], H)[0]).to(predicted)
        guided[sel] = True
    if not guided.any():
        return first
    h, w = valid_b.shape[-2:]
    px = torch.round(predicted).long()
    inside = (px[:, 0] >= 0) & (px[:, 1] >= 0) & (px[:, 0] < w) & (px[:, 1] < h)
    on_valid = torch.zeros_like(inside)
    on_valid[inside] = valid_b[first.batch[inside], 0, px[inside, 1], px[inside, 0]]
    redo = guided & on_valid
    refined = model.fine_at(out, predicted, keep=redo)
    unguided = ~guided  # pairs with no guide keep their first pass
    return Correspondences(
        torch.cat([refined.batch, first.batch[unguided]]),
        torch.cat([refined.xy_a, first.xy_a[unguided]]),
        torch.cat([refined.xy_b, first.xy_b[unguided]]),
        torch.cat([refined.confidence, first.confidence[unguided]]),
    )
