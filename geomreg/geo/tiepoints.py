"""Tie points of matched tiles on the working grid, and the coarse pass's affine estimate.

Both the plan (placing full-resolution tiles from the coarse pass) and the fusion read tie points this
way; they live below both so that the stages import one way (plan -> tiles -> fuse).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from geomreg.geo.models import MIN_POINTS, fit_robust

if TYPE_CHECKING:  # annotations only: the plan imports this module
    from geomreg.geo.plan import RegistrationPlan
    from geomreg.geo.tiles import TileMatches


def stack_tie_points(tms: Sequence[TileMatches], plan: RegistrationPlan):
    """Tie points of all tiles on the working grid: ref px (N, 2), moving px (N, 2), confidence (N,), tile id (N,)."""
    g = plan.grid
    ref = [g.map_to_px(t.ref_map) for t in tms if len(t)]
    mov = [g.map_to_px(t.mov_map) for t in tms if len(t)]
    if not ref:
        z = np.zeros((0, 2))
        return z, z.copy(), np.zeros(0), np.zeros(0, dtype=np.int64)
    conf = np.concatenate([t.confidence for t in tms if len(t)])
    tid = np.concatenate([np.full(len(t), t.tile_id, dtype=np.int64) for t in tms if len(t)])
    return np.concatenate(ref), np.concatenate(mov), conf, tid


def coarse_estimate(plan: RegistrationPlan, coarse: Sequence[TileMatches]) -> tuple[np.ndarray | None, int, str]:
    """Affine (2x3, working px, moving -> reference) from the coarse pass, or None when it found nothing."""
    cm = [t for t in coarse if t.level == "coarse"]
    ref, mov, conf, tid = stack_tie_points(cm, plan)
    n = len(ref)
    f = plan.coarse_factor
    thr = plan.config.inlier_threshold * f
    if n >= MIN_POINTS["affine"]:
        model, inl = fit_robust("affine", mov, ref, thr, plan.config.seed)
        kind = "affine"
    elif n >= 2:
        model, inl = fit_robust("translation", mov, ref, thr, plan.config.seed)
        kind = "translation"
    else:
        return None, 0, f"coarse pass: {n} tie points"
    n_inl = int(inl.sum())
    if n_inl < 4:
        return None, n_inl, f"coarse pass: only {n_inl} consistent tie points of {n}"
    M = model.matrix()
    shift = M[:2, 2] + M[:2, :2] @ [plan.grid.width / 2, plan.grid.height / 2] - [plan.grid.width / 2, plan.grid.height / 2]
    return M[:2].copy(), n_inl, f"coarse pass: {kind} from {n_inl}/{n} tie points, offset at the centre ({shift[0]:.1f}, {shift[1]:.1f}) px"
