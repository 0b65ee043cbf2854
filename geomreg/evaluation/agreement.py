"""Which of a method's misses the ground truth, rather than the method, may be responsible for.

The accuracy benchmark scores a fitted homography against the pair's ground truth, which for several sources
is only good to a few pixels (SRIF optical–optical: 0–5 px and rooftop parallax between dates). A 3 px miss
then says nothing about the matcher when an independent method, matching the same instance, lands on the
same homography: two methods that share no features, no training and no failure modes agreeing to a pixel
and a half on a wrong answer is far less likely than the truth being off there, or the scene holding no
single homography (parallax), which no matcher can fix.

Each instance is classified for one subject method against its peers:
- ``hit``: the subject is within ``miss_px`` of the truth;
- ``shared_miss``: it is not, but a peer's homography is within ``agree_px`` of the subject's (grid RMSE
  between the two fits), so the images themselves point where the subject went;
- ``own_miss``: it is not, and no peer agrees with it (the subject's own failure, or no peer found anything).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

from geomreg.evaluation.instances import Instance
from geomreg.evaluation.metrics import fit_homography, grid_rmse
from geomreg.matching.types import ImageMatcher

log = logging.getLogger(__name__)

HIT, SHARED_MISS, OWN_MISS = "hit", "shared_miss", "own_miss"


@dataclass(frozen=True)
class Agreement:
    """One instance seen by a subject method and its peers."""

    pair_id: str
    modality: str
    seed: int
    index: int
    subject_rmse: float  # subject's fit against the truth (px; inf: no fit)
    peer_rmse: dict[str, float] = field(default_factory=dict)  # each peer's fit against the truth
    peer_to_subject: dict[str, float] = field(default_factory=dict)  # each peer's fit against the subject's fit
    verdict: str = OWN_MISS
    agreeing: tuple[str, ...] = ()  # the peers within agree_px of the subject


def fitted_homography(matcher: ImageMatcher, inst: Instance, ransac_threshold_px: float = 3.0) -> np.ndarray | None:
    """The ref -> mov homography the benchmark fits to a method's matches on an instance (None: no fit)."""
    try:
        res = matcher.match(inst.ref, inst.mov)
    except Exception as exc:  # a failing method is a method without a fit here, as in the benchmark
        log.warning("%s failed on %s #%d: %s: %s", type(matcher).__name__, inst.pair_id, inst.index, type(exc).__name__, exc)
        return None
    return fit_homography(np.asarray(res.ref_xy, np.float64), np.asarray(res.mov_xy, np.float64), ransac_threshold_px)


def classify(
    inst: Instance,
    fits: Mapping[str, np.ndarray | None],
    subject: str,
    *,
    miss_px: float = 3.0,
    agree_px: float = 1.5,
) -> Agreement:
    """Classify one instance from every method's fitted homography (``fits`` holds the subject's too)."""

    def rmse(h, ref):
        return grid_rmse(h, ref, inst.width, inst.height, inst.valid)

    own = fits[subject]
    subject_rmse = rmse(own, inst.H_ref_to_mov)
    peers = [m for m in fits if m != subject]
    peer_rmse = {m: rmse(fits[m], inst.H_ref_to_mov) for m in peers}
    # grid_rmse(None, ...) is inf; against a subject with no fit every distance is inf as well
    to_subject = {m: (rmse(fits[m], own) if own is not None else float("inf")) for m in peers}
    agreeing = tuple(m for m in peers if to_subject[m] <= agree_px)
    if subject_rmse <= miss_px:
        verdict = HIT
    else:
        verdict = SHARED_MISS if agreeing else OWN_MISS
    return Agreement(inst.pair_id, inst.modality, inst.seed, inst.index, subject_rmse, peer_rmse, to_subject, verdict, agreeing)


def summarize_agreement(rows: list[Agreement], miss_px: float = 3.0) -> dict[str, dict[str, int]]:
    """Per modality (and "all"): instances, hits, shared and own misses, and own misses some peer registered."""
    out: dict[str, dict[str, int]] = {}
    for key in sorted({r.modality for r in rows}) + ["all"]:
        sel = [r for r in rows if key in ("all", r.modality)]
        out[key] = {
            "instances": len(sel),
            HIT: sum(r.verdict == HIT for r in sel),
            SHARED_MISS: sum(r.verdict == SHARED_MISS for r in sel),
            OWN_MISS: sum(r.verdict == OWN_MISS for r in sel),
            "own_miss_peer_hit": sum(r.verdict == OWN_MISS and any(v <= miss_px for v in r.peer_rmse.values()) for r in sel),
        }
    return out
