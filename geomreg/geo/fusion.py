"""Fusion of tile tie points into one georeferenced transform.

Dedupe (overlapping tiles find the same points), per-tile consistency (a MAGSAC affine inside each
tile), robust fits of every candidate model, `auto` choice by held-out residuals (folds of whole
tiles, so a spline cannot score by interpolating its neighbours), final fit, residual statistics.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Sequence

import cv2
import numpy as np

from geomreg.geo.config import TRANSFORMS
from geomreg.geo.models import MIN_POINTS, ORDER, Model, fit_robust, residuals
from geomreg.geo.plan import RegistrationPlan
from geomreg.geo.tiepoints import coarse_estimate, stack_tie_points as _stack  # noqa: F401 - coarse_estimate: public here too
from geomreg.geo.tiles import TileMatches
from geomreg.geo.uncertainty import registration_uncertainty

log = logging.getLogger(__name__)

_CV_MAX_POINTS = 5000


def dedupe(ref_px: np.ndarray, mov_px: np.ndarray, conf: np.ndarray, cell: float = 1.0) -> np.ndarray:
    """Indices keeping one tie point per `cell`-sized reference cell with a consistent displacement:
    overlapping tiles match the same structure twice; the more confident copy stays."""
    if len(ref_px) == 0:
        return np.zeros(0, dtype=np.int64)
    disp = np.round((ref_px - mov_px) / cell).astype(np.int64)
    keys = np.c_[np.floor(ref_px / cell).astype(np.int64), disp]
    order = np.lexsort((-conf,) + tuple(keys.T[::-1]))  # group by key, most confident first
    k = keys[order]
    first = np.ones(len(order), dtype=bool)
    first[1:] = np.any(k[1:] != k[:-1], axis=1)
    return np.sort(order[first])


def tile_consistency(src: np.ndarray, dst: np.ndarray, tid: np.ndarray, thr: float, seed: int) -> np.ndarray:
    """Per tile, drop points that disagree with the tile's own MAGSAC affine (local outliers)."""
    keep = np.ones(len(src), dtype=bool)
    cv2.setRNGSeed(seed)
    for t in np.unique(tid):
        sel = np.nonzero(tid == t)[0]
        if len(sel) < 8:
            continue
        _, inl = cv2.estimateAffine2D(src[sel], dst[sel], method=cv2.USAC_MAGSAC, ransacReprojThreshold=thr,
                                      maxIters=2000, confidence=0.999)
        if inl is not None and inl.sum() >= 4:
            keep[sel] = inl.ravel().astype(bool)
    return keep


def _folds(tid: np.ndarray, k: int, seed: int) -> np.ndarray:
    """Fold number per point: whole tiles when there are enough tiles, else a random split."""
    rng = np.random.default_rng(seed)
    tiles = np.unique(tid)
    if len(tiles) >= k:
        perm = rng.permutation(tiles)
        fold_of = {t: i % k for i, t in enumerate(perm)}
        return np.array([fold_of[t] for t in tid])
    return rng.permutation(np.arange(len(tid)) % k)


def cv_scores(kinds: Sequence[str], src, dst, tid, thr: float, k: int, seed: int, tps_cell: float) -> dict[str, float]:
    """Held-out RMSE (px, residuals truncated at thr) of each kind over k folds."""
    folds = _folds(tid, k, seed)
    out = {}
    for kind in kinds:
        errs = []
        ok = True
        for f in range(k):
            test = folds == f
            train = ~test
            if train.sum() < MIN_POINTS[kind] or not test.any():
                continue
            try:
                model, _ = fit_robust(kind, src[train], dst[train], thr, seed, tps_cell)
                r = residuals(model, src[test], dst[test])
            except (np.linalg.LinAlgError, ValueError, cv2.error) as e:
                log.debug("cv: %s failed on fold %d: %s", kind, f, e)
                ok = False
                break
            errs.append(np.minimum(np.nan_to_num(r, nan=thr), thr))
        if ok and errs:
            out[kind] = float(np.sqrt(np.mean(np.concatenate(errs) ** 2)))
    return out


def choose(scores: dict[str, float], rel: float = 1.1, abs_px: float = 0.02) -> str:
    """The simplest model whose held-out error is within 10 % (+0.02 px) of the best one."""
    best = min(scores.values())
    for kind in ORDER:
        if kind in scores and scores[kind] <= rel * best + abs_px:
            return kind
    return min(scores, key=scores.get)


def fuse(plan: RegistrationPlan, tile_matches: Sequence[TileMatches], transform: str | None = None, *,
         timings: dict | None = None, matcher_name: str | None = None):
    """Tie points of all tiles -> a Registration (status 'registered' or 'failed' with the reason)."""
    from geomreg.geo.registration import Registration, TiePoints

    t0 = time.perf_counter()
    cfg = plan.config
    kind_req = transform or cfg.transform
    if kind_req != "auto" and kind_req not in TRANSFORMS:
        raise ValueError(f"unsupported transform {kind_req!r}")
    # In tile order, whatever order they were matched in (progressive rounds, Dask chunks): same tie point order.
    fine = sorted((t for t in tile_matches if t.level == "fine"), key=lambda t: t.tile_id)
    skipped = Counter(t.skipped for t in fine if t.skipped)
    ref_px, mov_px, conf, tid = _stack(fine, plan)
    n_raw = len(ref_px)
    keep = dedupe(ref_px, mov_px, conf)
    ref_px, mov_px, conf, tid = ref_px[keep], mov_px[keep], conf[keep], tid[keep]
    n = len(ref_px)
    thr = cfg.inlier_threshold
    # GDAL's TPS solves a dense system in its control points: keep them to about a thousand whatever the scene size.
    tps_cell = max(32.0, cfg.tile_size / 4, float(np.sqrt(plan.grid.width * plan.grid.height / 1000.0)))
    counts = {"tiles": len(plan.tasks), "tiles_matched": sum(1 for t in fine if len(t)), "tiles_skipped": dict(skipped),
              "tie_points_raw": n_raw, "tie_points": n}

    def failed(reason: str, model: Model | None = None, inlier=None, scores=None):
        inl = np.zeros(n, dtype=bool) if inlier is None else inlier
        tp = TiePoints.build(plan, ref_px, mov_px, conf, tid, model, inl)
        return Registration(plan, "failed", reason, model, tp, counts, scores or {}, _timings(timings, t0), matcher_name)

    if n < cfg.min_inliers:
        why = f"only {n} tie points (at least {cfg.min_inliers} consistent ones are needed)"
        if skipped:
            why += "; tiles skipped: " + ", ".join(f"{v} {k}" for k, v in skipped.items())
        return failed(why)

    local_ok = tile_consistency(mov_px, ref_px, tid, thr, cfg.seed)
    counts["tie_points_locally_consistent"] = int(local_ok.sum())
    src, dst, t_ok = mov_px[local_ok], ref_px[local_ok], tid[local_ok]
    if kind_req == "auto":
        kinds = [k for k in ORDER if len(src) >= 2 * MIN_POINTS[k]]
        if len(np.unique(t_ok)) < max(4, cfg.cv_folds):
            # A spline needs support from several tiles, and with fewer tiles than folds the held-out folds
            # stop being whole tiles: the spline then scores well by interpolating its own tile's neighbours.
            kinds = [k for k in kinds if k != "tps"]
    else:
        kinds = [kind_req]
        if len(src) < MIN_POINTS[kind_req]:
            return failed(f"{len(src)} consistent tie points are too few for a {kind_req} transform (needs {MIN_POINTS[kind_req]})")
    if not kinds:
        return failed(f"only {len(src)} consistent tie points (at least {cfg.min_inliers} are needed)")

    scores: dict[str, float] = {}
    if len(kinds) > 1:
        # Evaluate every model on the points that at least one model explains (the rest are outliers of all).
        explained = np.zeros(len(src), dtype=bool)
        for k in kinds:
            try:
                _, inl = fit_robust(k, src, dst, thr, cfg.seed, tps_cell)
                explained |= inl
            except (np.linalg.LinAlgError, ValueError, cv2.error):
                continue
        ev = np.nonzero(explained)[0]
        if len(ev) > _CV_MAX_POINTS:
            # Held-out scores need a few thousand points, not all of a large scene's: subsample (seeded).
            ev = np.sort(np.random.default_rng(cfg.seed).choice(ev, _CV_MAX_POINTS, replace=False))
        scores = cv_scores(kinds, src[ev], dst[ev], t_ok[ev], thr, cfg.cv_folds, cfg.seed, tps_cell)
        if not scores:
            return failed("no transform could be fitted to the tie points")
        kind = choose(scores)
    else:
        kind = kinds[0]
    try:
        model, inl_local = fit_robust(kind, src, dst, thr, cfg.seed, tps_cell)
    except (np.linalg.LinAlgError, ValueError, cv2.error) as e:
        return failed(f"fitting a {kind} transform failed: {e}", scores=scores)
    inlier = np.zeros(n, dtype=bool)
    inlier[np.nonzero(local_ok)[0][inl_local]] = True
    n_inl = int(inlier.sum())
    counts["inliers"] = n_inl
    if n_inl < cfg.min_inliers:
        return failed(f"only {n_inl} tie points agree with the {kind} transform (at least {cfg.min_inliers} needed)", model, inlier, scores)
    tp = TiePoints.build(plan, ref_px, mov_px, conf, tid, model, inlier)
    reg = Registration(plan, "registered", None, model, tp, counts, scores, _timings(timings, t0), matcher_name)
    unc = registration_uncertainty(reg)
    reg.uncertainty = None if unc is None else unc.as_dict()
    reg.timings["fuse_s"] = round(time.perf_counter() - t0, 4)
    return reg


def _timings(timings: dict | None, t0: float) -> dict:
    out = dict(timings or {})
    out["fuse_s"] = round(time.perf_counter() - t0, 4)
    return out
