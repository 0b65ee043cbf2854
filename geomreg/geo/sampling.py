"""Progressive tile sampling: match only the tiles a global transform needs.

A translation, affine, homography or polynomial is fixed by a well-spread sample of tiles; matching all
of a large scene's tiles only narrows an uncertainty that is already far below a pixel. Tiles are put in
a spread order (farthest-point sampling of their centres, starting at the one nearest the overlap's
centre: the corners and edges come first, then the gaps are filled in), matched in rounds of growing
size, and after each round the tie points are fused and the model's uncertainty is estimated
(geomreg/geo/uncertainty.py). Matching stops when the predicted std of the model is at most
`max_uncertainty` px everywhere on the overlap and, with transform "auto", the chosen model is the same
as in the round before. A thin-plate spline (asked for, or chosen by "auto") needs every tile, and so
does `tiles="all"`.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from geomreg.geo.fusion import fuse
from geomreg.geo.plan import RegistrationPlan, TileTask
from geomreg.geo.tiles import TileMatches
from geomreg.geo.uncertainty import GLOBAL_KINDS

log = logging.getLogger(__name__)

FIRST_ROUND = 9  # a 3 x 3 spread: corners, edge midpoints and centre
GROWTH = 1.5  # each round matches this many times the tiles matched so far (at least MIN_STEP more)
MIN_STEP = 4


def spread_order(tasks: Sequence[TileTask]) -> list[int]:
    """Indices of tasks in farthest-point order of their reference windows' centres."""
    n = len(tasks)
    if n == 0:
        return []
    c = np.array([[t.ref_window[0] + t.ref_window[2] / 2, t.ref_window[1] + t.ref_window[3] / 2] for t in tasks], np.float64)
    first = int(np.argmin(np.linalg.norm(c - c.mean(axis=0), axis=1)))
    order = [first]
    d = np.linalg.norm(c - c[first], axis=1)
    d[first] = -1.0
    for _ in range(n - 1):
        nxt = int(np.argmax(d))  # ties: the lowest index (row-major tile order), so the order is deterministic
        order.append(nxt)
        d = np.minimum(d, np.linalg.norm(c - c[nxt], axis=1))
        d[order] = -1.0
    return order


@dataclass(frozen=True)
class SamplingRound:
    tiles: int  # tiles matched so far
    status: str
    kind: str | None
    max_std_px: float | None
    rms_std_px: float | None

    def as_dict(self) -> dict:
        return {"tiles": self.tiles, "status": self.status, "transform": self.kind,
                "max_std_px": self.max_std_px, "rms_std_px": self.rms_std_px}


class TileSampler:
    """The rounds of progressive matching for one plan: which tiles next, and when to stop.

    Used by geomreg.register (geomreg.api.register_tiles, through `progressive`) and by the Dask batch
    runner (pipelines/runner.py), so both match the same tiles in the same order.

        s = TileSampler(plan)
        idx = s.first()
        while idx:
            ... match [plan.tasks[i] for i in idx], fuse everything matched so far into reg ...
            idx = s.after(reg.status, reg.transform_kind, reg.uncertainty)
        s.summary()
    """

    def __init__(self, plan: RegistrationPlan) -> None:
        cfg = plan.config
        self.n = len(plan.tasks)
        self.tolerance = cfg.max_uncertainty
        self.order = spread_order(plan.tasks)
        self.fixed = cfg.transform if cfg.transform != "auto" else None
        self.everything = cfg.tiles == "all" or self.fixed == "tps"
        if self.everything:
            self.why_all = "every tile requested" if cfg.tiles == "all" else "thin-plate spline requested"
        else:
            self.why_all = f"every tile matched before the model std reached {cfg.max_uncertainty:g} px"
        self.done = 0
        self.rounds: list[SamplingRound] = []
        self.stopped: str | None = None
        self._prev_kind: str | None = None

    def first(self) -> list[int]:
        """Indices (into plan.tasks) of the first round."""
        return self._take(self.n if self.everything else min(self.n, FIRST_ROUND))

    def _take(self, target: int) -> list[int]:
        idx = self.order[self.done : target]
        self.done = target
        return idx

    def after(self, status: str, kind: str | None, uncertainty: dict | None) -> list[int]:
        """Record a round's fusion; the indices of the next round, or [] when matching is done."""
        unc = uncertainty or {}
        max_std = unc.get("max_std_px")  # None: not estimable yet (too few tiles) or not a global model
        kind = kind if status == "registered" else None
        self.rounds.append(SamplingRound(self.done, status, kind, max_std, unc.get("rms_std_px")))
        log.info("tiles %d/%d: %s %s, model std max %s px", self.done, self.n, status, kind, max_std)
        if self.done >= self.n:
            self.stopped = self.stopped or self.why_all
            return []
        if kind == "tps":
            # A spline follows local distortions: it needs every tile's support.
            self.stopped = "thin-plate spline chosen: every tile matched"
            return self._take(self.n)
        stable = self.fixed is not None or (kind is not None and kind == self._prev_kind)
        if kind in GLOBAL_KINDS and max_std is not None and max_std <= self.tolerance and stable:
            self.stopped = f"model std {max_std:.3f} px <= {self.tolerance:g} px"
            return []
        self._prev_kind = kind
        return self._take(min(self.n, max(self.done + MIN_STEP, math.ceil(self.done * GROWTH))))

    def summary(self) -> dict:
        return {
            "mode": "all" if self.everything else "progressive",
            "tiles_total": self.n,
            "tiles_processed": self.done,
            "max_uncertainty_px": self.tolerance,
            "stopped": self.stopped,
            "rounds": [r.as_dict() for r in self.rounds],
        }


def progressive(
    plan: RegistrationPlan,
    match: Callable[[Sequence[TileTask]], list[TileMatches]],
    prior: Sequence[TileMatches] = (),
    *,
    timings: dict | None = None,
    matcher_name: str | None = None,
):
    """Match plan.tasks in spread order, round by round, until the model is pinned down (TileSampler).

    match: matches a list of tasks (in the caller's batching, memory budget and progress);
    prior: already matched tiles (the coarse pass's) passed on to fusion.
    Returns (registration, fine tile matches); registration.sampling holds the rounds and why matching stopped.
    """
    sampler = TileSampler(plan)
    matched: list[TileMatches] = []
    idx = sampler.first()
    reg = None
    while True:
        matched.extend(match([plan.tasks[i] for i in idx]))
        reg = fuse(plan, list(prior) + matched, plan.config.transform, timings=timings, matcher_name=matcher_name)
        idx = sampler.after(reg.status, reg.transform_kind, reg.uncertainty)
        if not idx:
            break
    reg.sampling = sampler.summary()
    return reg, matched


__all__ = ["TileSampler", "progressive", "spread_order", "SamplingRound"]
