"""The network's tie points, each polished to sub-pixel precision by structural template matching where the
image structure allows it.

Why: RegNetMamba-2 finds the right geometry on more pairs than any other matcher here, but its fine stage works
at 1/2 resolution with broad heatmaps, so each tie point is good to about half a pixel and their errors share a
bias that depends on where the truth falls between fine cells (docs/precision.md). CFOG's template matching is
precise to a few hundredths of a pixel wherever it starts within a few pixels of the truth and the structure is
distinctive, but cannot find the geometry on its own under strong modality change. So the network's tie points
are kept as they are, and each one is replaced by CFOG's match at the same reference pixel only when

1. its correlation peak is distinctive (CFOG's own peak tests: height, second peak, curvature, border),
2. it agrees with the network's model to within ``agree_px`` (the network's robust homography of this pair), and
3. it survives CFOG's outlier filter among the polished points.

Where fewer than ``min_polished`` points, or ``min_polished_share`` of the templates tried, pass (maps,
featureless or strongly distorted areas) the network's own tie points are returned, with the polished positions substituted where they exist. Where enough pass, only
the polished points are returned: the network's remaining ones would add only their half-pixel noise and bias to
the fit.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from geomreg.matching.cfog import CFOGConfig, CFOGMatcher
from geomreg.matching.guided import supported_homography
from geomreg.matching.types import ImageMatcher, MatchResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PolishConfig:
    # The network's tie points follow its consensus homography to within +-2 px (geomreg/matching/guided.py):
    # a model threshold of that size keeps them while refusing wild matches.
    model_threshold_px: float = 3.0
    min_model_inliers: int = 8
    # A polished point further than this from the network's model is CFOG locking onto other structure
    # (maps and depth renderings), not a sharper reading of the same one. Where the network is a pixel or more
    # off (hard SAR-like instances) a tighter bound, or a smaller search, leaves the truth outside: on the
    # precision benchmark's SAR-like instances (network 1.07 px) 1.5 px / +-3 px gave 0.25 px median, p90
    # 1.18; 2 px / +-4 px with at least 8 polished points 0.13 / 0.26 (benchmarks/precision.py).
    agree_px: float = 2.0
    # Only they are returned when at least this many are polished, and at least this share of the templates
    # tried. The share is off by default: at 0.15 it kept the network's points on the map renderings of the
    # validation split (CFOG localises 9-22 % there) but also on hard SAR-like instances, where the polish is
    # what makes them precise (docs/precision.md).
    min_polished: int = 8
    min_polished_share: float = 0.0
    # Templates are searched +-search_radius px around the model's prediction: the network's points lie
    # within +-2 px of its consensus, and the sub-pixel fit needs a neighbour on each side of the peak.
    search_radius: int = 4
    # One template per cell of this many px that holds network points, on the cell's most corner-like pixel
    # (CFOGMatcher.localise), as CFOG spaces its own: templates closer than half their side share most of
    # their pixels and so their errors, which the fusion's held-out model choice takes for a local distortion
    # (the sample pair got a spline at 16 px cells, 0.3 px off, and a translation at 25 px, 0.02 px off).
    cell_px: float = 25.0


def polish_matches(
    base: MatchResult, ref: np.ndarray, mov: np.ndarray, localiser: CFOGMatcher, config: PolishConfig
) -> MatchResult:
    """``base`` with its tie points polished where CFOG localises them distinctively and in agreement (module doc)."""
    H = supported_homography(base.ref_xy, base.mov_xy, config.model_threshold_px, config.min_model_inliers, seed=0)
    if H is None:
        return base.with_note(f"polish: kept the {len(base)} network matches (no model to polish around)")
    found = localiser.localise(ref, mov, H, base.ref_xy, cell=config.cell_px)
    agrees = np.linalg.norm(found.offset, axis=1) <= config.agree_px
    ok = found.consistent & agrees
    n_ok = int(ok.sum())
    note = (f"polish: {n_ok} of {len(base)} network tie points polished ({len(found)} of {found.tried} templates localised, "
            f"{int(agrees.sum())} agreeing)")
    log.debug(note)
    if n_ok >= max(config.min_polished, config.min_polished_share * found.tried):
        return MatchResult(found.ref_xy[ok], found.mov_xy[ok], found.confidence[ok], base.notes + found.notes + (note,))
    ref_xy, mov_xy, conf = base.ref_xy.copy(), base.mov_xy.copy(), base.confidence.copy()
    idx = found.index[ok]
    ref_xy[idx], mov_xy[idx], conf[idx] = found.ref_xy[ok], found.mov_xy[ok], found.confidence[ok]
    return MatchResult(ref_xy, mov_xy, conf, base.notes + (note + "; the network's own positions kept elsewhere",))


class PolishedMatcher:
    """``base`` finds the tie points and the geometry; CFOG polishes each point where it can (ImageMatcher)."""

    def __init__(self, base: ImageMatcher, config: PolishConfig | None = None, cfog: CFOGConfig | None = None) -> None:
        self.base = base
        self.config = config or PolishConfig()
        self.localiser = CFOGMatcher(cfog or CFOGConfig(search_radius=self.config.search_radius))
        self.name = f"{base.name}+polish"

    def __repr__(self) -> str:
        return f"PolishedMatcher({self.base!r}, {self.config!r})"

    def match(self, ref: np.ndarray, mov: np.ndarray) -> MatchResult:
        return polish_matches(self.base.match(ref, mov), ref, mov, self.localiser, self.config)

    def match_batch(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[MatchResult]:
        pairs = list(pairs)
        bases = self.base.match_batch(pairs)
        return [polish_matches(b, ref, mov, self.localiser, self.config) for (ref, mov), b in zip(pairs, bases)]
