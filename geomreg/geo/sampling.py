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


def progressive(
    plan: RegistrationPlan,
    match: Callable[[Sequence[TileTask]], list[TileMatches]],
    prior: Sequence[TileMatches] = (),
    *,
    timings: dict | None = None,
    matcher_name: str | None = None,
    on_round: Callable[[int, int], None] | None = None,
):
    """Match plan.tasks in spread order, round by round, until the model is pinned down.

    match: matches a list of tasks (in the caller's batching, memory budget and progress);
    prior: already matched tiles (the coarse pass's) passed on to fusion;
    on_round(done, total): called after each round.
    Returns (registration, fine tile matches); registration.sampling holds the rounds and why matching stopped.
    """
    cfg = plan.config
    n = len(plan.tasks)
    order = spread_order(plan.tasks)
    fixed = cfg.transform if cfg.transform != "auto" else None
    everything = cfg.tiles == "all" or fixed == "tps"
    if everything:
        why_all = "every tile requested" if cfg.tiles == "all" else "thin-plate spline requested"
    else:
        why_all = f"every tile matched before the model std reached {cfg.max_uncertainty:g} px"
    matched: list[TileMatches] = []
    rounds: list[SamplingRound] = []
    prev_kind, stop, done = None, None, 0
    target = n if everything else min(n, FIRST_ROUND)
    while True:
        matched.extend(match([plan.tasks[i] for i in order[done:target]]))
        done = target
        if on_round is not None:
            on_round(done, n)
        reg = fuse(plan, list(prior) + matched, cfg.transform, timings=timings, matcher_name=matcher_name)
        unc = reg.uncertainty or {}
        max_std = unc.get("max_std_px")  # None: not estimable yet (too few tiles) or not a global model
        kind = reg.transform_kind if reg.status == "registered" else None
        rounds.append(SamplingRound(done, reg.status, kind, max_std, unc.get("rms_std_px")))
        log.info("tiles %d/%d: %s %s, model std max %s px", done, n, reg.status, kind, max_std)
        if done >= n:
            stop = stop or why_all
            break
        if kind == "tps":
            # A spline follows local distortions: it needs every tile's support.
            stop, target = "thin-plate spline chosen: every tile matched", n
            continue
        stable = fixed is not None or (kind is not None and kind == prev_kind)
        if kind in GLOBAL_KINDS and max_std is not None and max_std <= cfg.max_uncertainty and stable:
            stop = f"model std {max_std:.3f} px <= {cfg.max_uncertainty:g} px"
            break
        prev_kind = kind
        target = min(n, max(done + MIN_STEP, math.ceil(done * GROWTH)))
    summary = {
        "mode": "all" if everything else "progressive",
        "tiles_total": n,
        "tiles_processed": done,
        "max_uncertainty_px": cfg.max_uncertainty,
        "stopped": stop,
        "rounds": [r.as_dict() for r in rounds],
    }
    reg.sampling = summary
    return reg, matched


__all__ = ["progressive", "spread_order", "SamplingRound"]
