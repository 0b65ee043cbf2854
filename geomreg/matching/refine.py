"""A matcher's result polished by structural template matching around the model it implies.

Why: RegNetMamba-2 finds the right geometry far more often than it localises to within 3 px (on the
validation split success@10 is about twice success@3: the fine stage is the part that has learned least).
CFOG's template matching is precise wherever it starts within a few pixels of the truth but cannot find
the geometry on its own under strong modality change or large warps. Chained, the network supplies the
model and CFOG the sub-pixel tie points around it. When the polish finds nothing consistent, the network's
own matches are returned unchanged (the notes say so), so it never makes a result worse than the base one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from geomreg.matching.cfog import CFOGMatcher
from geomreg.matching.guided import supported_homography
from geomreg.matching.types import ImageMatcher, MatchResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RefineConfig:
    # The base matches are a coarse cell (8 px) apart at worst: a generous threshold keeps the right model;
    # the polish then searches +-CFOGConfig.search_radius px around it.
    model_threshold_px: float = 8.0
    min_model_inliers: int = 8


def base_homography(result: MatchResult, config: RefineConfig) -> np.ndarray | None:
    """Robust ref -> mov homography of a match result, or None when too few matches agree on one."""
    return supported_homography(result.ref_xy, result.mov_xy, config.model_threshold_px, config.min_model_inliers)


class RefinedMatcher:
    """`base` finds the geometry, CFOG template matching localises the tie points around it (ImageMatcher)."""

    def __init__(self, base: ImageMatcher, polish: CFOGMatcher | None = None, config: RefineConfig | None = None) -> None:
        self.base = base
        self.polish = polish or CFOGMatcher()
        self.config = config or RefineConfig()
        self.name = f"{base.name}+cfog"

    def __repr__(self) -> str:
        return f"RefinedMatcher({self.base!r}, {self.polish!r}, {self.config!r})"

    def match(self, ref: np.ndarray, mov: np.ndarray) -> MatchResult:
        return self._refined(ref, mov, self.base.match(ref, mov))

    def match_batch(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[MatchResult]:
        pairs = list(pairs)
        return [self._refined(ref, mov, r) for (ref, mov), r in zip(pairs, self.base.match_batch(pairs))]

    def _refined(self, ref: np.ndarray, mov: np.ndarray, base: MatchResult) -> MatchResult:
        H = base_homography(base, self.config)
        if H is None:
            return base.with_note(f"refine: kept the {len(base)} {self.base.name} matches (no model to refine around)")
        polished = self.polish.refine(ref, mov, H)
        if len(polished) == 0:
            why = polished.notes[-1] if polished.notes else "nothing found"
            return base.with_note(f"refine: kept the {len(base)} {self.base.name} matches ({why})")
        log.debug("refine: %d %s matches -> %d CFOG tie points", len(base), self.base.name, len(polished))
        return MatchResult(polished.ref_xy, polished.mov_xy, polished.confidence, base.notes + polished.notes)
