"""How well the tie points pin a fitted transform down: its predicted standard deviation over the overlap.

A tile bootstrap: the tiles that gave inliers are drawn with replacement, the model is refitted (least
squares on their inliers) on each draw and evaluated on a grid over the overlap; the spread of those
predictions is the model's standard deviation at each grid point. Whole tiles are resampled, not points,
because the errors of one tile's tie points are correlated (they share its content, its modality
contrast, its matcher biases): a point bootstrap over thousands of points would call a model fitted to
three tiles exact. The bootstrap variance of a mean over k clusters is (k - 1) / k of the usual estimate;
it is scaled back.

The thin-plate spline is not covered: it interpolates its control points, so its uncertainty is local
and a registration with it matches every tile anyway (geomreg/geo/sampling.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np

from geomreg.geo.models import MIN_POINTS, Model, fit_lsq

log = logging.getLogger(__name__)

GLOBAL_KINDS = ("translation", "affine", "homography", "poly2", "poly3")
_GRID = 9  # grid points per side over the overlap's bounding box (those inside the overlap count)
_REPLICATES = 64
_POINTS_PER_TILE = 150  # a tile's inliers are thinned to this many (the tile, not its point count, is the unit)


@dataclass(frozen=True)
class Uncertainty:
    """Predicted standard deviation of the fitted model (reference pixels) over a grid on the overlap."""

    kind: str
    max_std_px: float  # inf when the tie points cannot pin the model down (too few tiles)
    rms_std_px: float
    tiles: int  # tiles with inliers the estimate rests on
    replicates: int
    grid_points: int
    method: str = "tile bootstrap"

    def as_dict(self) -> dict:
        def num(v: float) -> float | None:
            return round(float(v), 4) if np.isfinite(v) else None

        return {"method": self.method, "kind": self.kind, "max_std_px": num(self.max_std_px), "rms_std_px": num(self.rms_std_px),
                "tiles": self.tiles, "replicates": self.replicates, "grid_points": self.grid_points}


def overlap_grid(plan, n: int = _GRID) -> np.ndarray:
    """[K, 2] working-grid pixel points on an n x n lattice over the overlap (those inside it)."""
    from shapely import prepared
    from shapely.geometry import Point

    poly = plan.overlap
    x0, y0, x1, y1 = poly.bounds
    xs, ys = np.meshgrid(np.linspace(x0, x1, n), np.linspace(y0, y1, n))
    pts = np.c_[xs.ravel(), ys.ravel()]
    prep = prepared.prep(poly.buffer(1e-9 * max(x1 - x0, y1 - y0, 1.0)))
    inside = np.array([prep.contains(Point(p)) for p in pts])
    if inside.sum() >= 4:
        pts = pts[inside]
    return plan.grid.map_to_px(pts)


def _thin_per_tile(idx: np.ndarray, tid: np.ndarray, rng: np.random.Generator) -> dict[int, np.ndarray]:
    out = {}
    for t in np.unique(tid[idx]):
        sel = idx[tid[idx] == t]
        if len(sel) > _POINTS_PER_TILE:
            sel = np.sort(rng.choice(sel, _POINTS_PER_TILE, replace=False))
        out[int(t)] = sel
    return out


def bootstrap_uncertainty(kind: str, src: np.ndarray, dst: np.ndarray, tid: np.ndarray, grid_px: np.ndarray,
                          scale: float = 1.0, seed: int = 0, replicates: int = _REPLICATES) -> Uncertainty:
    """Tile bootstrap of a `kind` fit of inlier tie points src -> dst (working px), evaluated at grid_px.

    scale converts working pixels to reference pixels. Returns inf when fewer than three tiles hold
    inliers, or when too many draws cannot be fitted (the tiles do not constrain the model).
    """
    if kind not in GLOBAL_KINDS:
        raise ValueError(f"no bootstrap uncertainty for {kind!r} (global models only: {', '.join(GLOBAL_KINDS)})")
    rng = np.random.default_rng(seed)
    per_tile = _thin_per_tile(np.arange(len(src)), np.asarray(tid), rng)
    tiles = list(per_tile)
    k = len(tiles)
    if k < 3 or sum(len(v) for v in per_tile.values()) < MIN_POINTS[kind]:
        return Uncertainty(kind, float("inf"), float("inf"), k, 0, len(grid_px))
    preds, failed = [], 0
    for _ in range(replicates):
        draw = rng.integers(0, k, k)
        sel = np.concatenate([per_tile[tiles[i]] for i in draw])
        if len(sel) < MIN_POINTS[kind]:
            failed += 1
            continue
        try:
            m: Model = fit_lsq(kind, src[sel], dst[sel])
            p = m.apply(grid_px)
        except (np.linalg.LinAlgError, ValueError, cv2.error):
            failed += 1
            continue
        if not np.isfinite(p).all():
            failed += 1
            continue
        preds.append(p)
    if len(preds) < 0.9 * replicates:
        log.debug("bootstrap: %d of %d draws of %d tiles could not fit a %s", failed, replicates, k, kind)
        return Uncertainty(kind, float("inf"), float("inf"), k, len(preds), len(grid_px))
    P = np.stack(preds)  # [R, K, 2]
    var = P.var(axis=0, ddof=1).sum(axis=1) * k / (k - 1)  # [K] radial variance, cluster-corrected
    std = np.sqrt(var) * scale
    return Uncertainty(kind, float(std.max()), float(np.sqrt(np.mean(std**2))), k, len(preds), len(grid_px))


def registration_uncertainty(reg, seed: int | None = None) -> Uncertainty | None:
    """The bootstrap uncertainty of a registration's fitted model (None for a failed one or a spline)."""
    if reg.model is None or reg.status != "registered" or reg.model.kind not in GLOBAL_KINDS:
        return None
    tp = reg._tie_points
    inl = tp.inlier
    plan = reg.plan
    scale = plan.grid.res / plan.reference.grid.res  # working px -> reference px
    return bootstrap_uncertainty(reg.model.kind, tp.mov_px[inl], tp.ref_px[inl], tp.tile_id[inl], overlap_grid(plan), scale,
                                 plan.config.seed if seed is None else seed)
