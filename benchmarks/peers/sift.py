"""OpenCV SIFT + Lowe ratio test as an ImageMatcher (the benchmark fits MAGSAC on its matches)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np

from geomreg.matching.preprocess import normalize_intensity
from geomreg.matching.types import MatchResult


@dataclass(frozen=True)
class SiftConfig:
    ratio: float = 0.8  # Lowe's ratio test
    max_features: int = 8000  # 0 = unlimited; a cap keeps 1024-px images from dominating the timing


def to_uint8(img: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
    """Single-band uint8 for OpenCV, with a percentile stretch (SAR / 16-bit safe) and its valid mask."""
    n = normalize_intensity(img, name=name)
    return np.round(n.image * 255.0).astype(np.uint8), n.valid


class SiftMatcher:
    name = "sift"

    def __init__(self, cfg: SiftConfig = SiftConfig()) -> None:
        self.cfg = cfg
        self._sift = cv2.SIFT_create(nfeatures=cfg.max_features)
        self._bf = cv2.BFMatcher(cv2.NORM_L2)

    def _features(self, img: np.ndarray, name: str):
        g, valid = to_uint8(img, name)
        kps, desc = self._sift.detectAndCompute(g, valid.astype(np.uint8) * 255)
        return kps, desc

    def match(self, ref: np.ndarray, mov: np.ndarray) -> MatchResult:
        k0, d0 = self._features(ref, "ref")
        k1, d1 = self._features(mov, "mov")
        if d0 is None or d1 is None or len(k0) < 2 or len(k1) < 2:
            return MatchResult.empty(("sift: too few keypoints",))
        ref_xy, mov_xy, conf = [], [], []
        for pair in self._bf.knnMatch(d0, d1, k=2):
            if len(pair) < 2:
                continue
            m, n = pair
            if m.distance < self.cfg.ratio * n.distance:
                ref_xy.append(k0[m.queryIdx].pt)
                mov_xy.append(k1[m.trainIdx].pt)
                conf.append(1.0 - m.distance / max(n.distance, 1e-12))
        if not conf:
            return MatchResult.empty(("sift: no match passed the ratio test",))
        # OpenCV keypoint coordinates already put pixel centres at integers, as geomreg does.
        return MatchResult(np.asarray(ref_xy, np.float64), np.asarray(mov_xy, np.float64), np.clip(np.asarray(conf, np.float64), 0.0, 1.0))

    def match_batch(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[MatchResult]:
        return [self.match(r, m) for r, m in pairs]
