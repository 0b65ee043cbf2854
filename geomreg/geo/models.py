"""Geometric models between the moving and the reference scene, fitted on tie points in working pixels.

Every model maps moving -> reference (`apply`) and back (`apply_inverse`). Robust estimation uses
OpenCV's USAC/MAGSAC where it has an estimator (affine, homography); polynomials are least squares
on normalised coordinates (the same estimator as GDAL's GCP polynomial transformer, see
tests/geo/test_models.py, which checks the two agree); the thin-plate spline is GDAL's own TPS
transformer, called through rasterio. Like GDAL, the inverse of a polynomial or spline is fitted
separately from the same points rather than inverted numerically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

# Fewest points each model is fitted from (twice the unknowns per axis, at least).
MIN_POINTS = {"translation": 2, "affine": 6, "homography": 10, "poly2": 12, "poly3": 20, "tps": 10}
ORDER = ("translation", "affine", "homography", "poly2", "poly3", "tps")


def _h(xy: np.ndarray) -> np.ndarray:
    return np.c_[xy, np.ones(len(xy))]


@dataclass(frozen=True)
class Model:
    """A fitted model; `params` holds plain numbers so the object pickles and serialises to JSON."""

    kind: str
    params: dict = field(default_factory=dict)

    # --- evaluation -----------------------------------------------------------------------------
    def apply(self, xy: np.ndarray) -> np.ndarray:
        return _EVAL[self.kind](self, np.asarray(xy, np.float64).reshape(-1, 2), False)

    def apply_inverse(self, xy: np.ndarray) -> np.ndarray:
        return _EVAL[self.kind](self, np.asarray(xy, np.float64).reshape(-1, 2), True)

    def matrix(self) -> np.ndarray | None:
        """3x3 matrix (moving px -> reference px) for the projective family, else None."""
        if self.kind == "translation":
            tx, ty = self.params["t"]
            return np.array([[1.0, 0, tx], [0, 1.0, ty], [0, 0, 1.0]])
        if self.kind == "affine":
            return np.vstack([np.asarray(self.params["A"]).reshape(2, 3), [0, 0, 1.0]])
        if self.kind == "homography":
            return np.asarray(self.params["H"]).reshape(3, 3)
        return None


def _eval_matrix(m: Model, xy: np.ndarray, inverse: bool) -> np.ndarray:
    M = m.matrix()
    if inverse:
        M = np.linalg.inv(M)
    p = _h(xy) @ M.T
    return p[:, :2] / p[:, 2:3]


# --- polynomials ----------------------------------------------------------------------------------


def _norm_params(xy: np.ndarray) -> tuple[list[float], float]:
    c = xy.mean(axis=0)
    s = float(np.abs(xy - c).max()) or 1.0
    return c.tolist(), s


def _terms(xy: np.ndarray, order: int) -> np.ndarray:
    x, y = xy[:, 0], xy[:, 1]
    return np.stack([x**i * y**j for i in range(order + 1) for j in range(order + 1 - i)], axis=1)


def _poly_fit(src: np.ndarray, dst: np.ndarray, order: int) -> dict:
    cs, ss = _norm_params(src)
    cd, sd = _norm_params(dst)
    A = _terms((src - cs) / ss, order)
    coef, *_ = np.linalg.lstsq(A, (dst - cd) / sd, rcond=None)
    return {"order": order, "src_c": cs, "src_s": ss, "dst_c": cd, "dst_s": sd, "coef": coef.tolist()}


def _poly_eval(p: dict, xy: np.ndarray) -> np.ndarray:
    A = _terms((xy - p["src_c"]) / p["src_s"], p["order"])
    return A @ np.asarray(p["coef"]) * p["dst_s"] + np.asarray(p["dst_c"])


def _eval_poly(m: Model, xy: np.ndarray, inverse: bool) -> np.ndarray:
    return _poly_eval(m.params["inverse" if inverse else "forward"], xy)


# --- thin-plate spline (GDAL) ---------------------------------------------------------------------


def _eval_tps(m: Model, xy: np.ndarray, inverse: bool) -> np.ndarray:
    from rasterio.control import GroundControlPoint
    from rasterio.transform import GCPTransformer

    src = np.asarray(m.params["src"])
    dst = np.asarray(m.params["dst"])
    # GDAL's TPS works in the coordinates it is given: centre them (working pixels stay small anyway).
    c = np.asarray(m.params["centre"])
    gcps = [GroundControlPoint(row=s[1] - c[1], col=s[0] - c[0], x=d[0] - c[0], y=d[1] - c[1]) for s, d in zip(src, dst)]
    out = np.empty_like(xy)
    with GCPTransformer(gcps, tps=True) as t:
        if not inverse:
            xs, ys = t.xy(xy[:, 1] - c[1], xy[:, 0] - c[0], offset="ul")
            out[:, 0], out[:, 1] = np.asarray(xs) + c[0], np.asarray(ys) + c[1]
        else:
            rows, cols = t.rowcol(xy[:, 0] - c[0], xy[:, 1] - c[1], op=np.positive)  # np.positive: keep fractions
            out[:, 0], out[:, 1] = np.asarray(cols, np.float64) + c[0], np.asarray(rows, np.float64) + c[1]
    return out


_EVAL = {
    "translation": _eval_matrix,
    "affine": _eval_matrix,
    "homography": _eval_matrix,
    "poly2": _eval_poly,
    "poly3": _eval_poly,
    "tps": _eval_tps,
}


# --- least-squares fits on given (inlier) points --------------------------------------------------


def _thin(src: np.ndarray, dst: np.ndarray, cell: float) -> tuple[np.ndarray, np.ndarray]:
    """One point per cell (median position and displacement): a spline through every noisy tie point
    would follow the noise, and GDAL's TPS solves a dense system in the number of points."""
    keys = np.floor(src / cell).astype(np.int64)
    _, inv = np.unique(keys, axis=0, return_inverse=True)
    inv = inv.ravel()
    order = np.argsort(inv, kind="stable")
    groups = np.split(order, np.nonzero(np.diff(inv[order]))[0] + 1)
    s_out = np.array([np.median(src[g], axis=0) for g in groups])
    d_out = s_out + np.array([np.median(dst[g] - src[g], axis=0) for g in groups])
    return s_out, d_out


def fit_lsq(kind: str, src: np.ndarray, dst: np.ndarray, tps_cell: float = 64.0) -> Model:
    """Least-squares fit of `kind` on points assumed to be inliers."""
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if kind == "translation":
        return Model(kind, {"t": (dst - src).mean(axis=0).tolist()})
    if kind == "affine":
        X, *_ = np.linalg.lstsq(_h(src), dst, rcond=None)
        return Model(kind, {"A": X.T.ravel().tolist()})
    if kind == "homography":
        H, _ = cv2.findHomography(src, dst, 0)  # least squares (DLT + Levenberg-Marquardt refinement)
        if H is None:
            raise np.linalg.LinAlgError("degenerate homography")
        return Model(kind, {"H": (H / H[2, 2]).ravel().tolist()})
    if kind in ("poly2", "poly3"):
        order = int(kind[-1])
        return Model(kind, {"forward": _poly_fit(src, dst, order), "inverse": _poly_fit(dst, src, order)})
    if kind == "tps":
        s, d = _thin(src, dst, tps_cell)
        if len(s) < 3:
            raise np.linalg.LinAlgError("too few distinct points for a thin-plate spline")
        c = np.concatenate([s, d]).mean(axis=0)
        return Model(kind, {"src": s.tolist(), "dst": d.tolist(), "centre": c.tolist()})
    raise ValueError(f"unknown transform kind {kind!r}")


def residuals(model: Model, src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    return np.linalg.norm(model.apply(src) - dst, axis=1)


# --- robust fits ------------------------------------------------------------------------------------


def _initial_inliers(kind: str, src: np.ndarray, dst: np.ndarray, thr: float, seed: int) -> np.ndarray:
    """A first consensus set from OpenCV's MAGSAC (or the median shift for a translation)."""
    cv2.setRNGSeed(seed)
    n = len(src)
    if kind == "translation":
        d = dst - src
        return np.linalg.norm(d - np.median(d, axis=0), axis=1) <= thr
    if kind == "homography" and n >= 4:
        _, inl = cv2.findHomography(src, dst, cv2.USAC_MAGSAC, thr, maxIters=5000, confidence=0.999)
    elif n >= 3:
        # Polynomials and splines start from an affine consensus with a looser threshold: their extra
        # freedom absorbs smooth distortions of a few pixels that an affine cannot.
        t = thr if kind in ("affine", "homography") else 4.0 * thr
        _, inl = cv2.estimateAffine2D(src, dst, method=cv2.USAC_MAGSAC, ransacReprojThreshold=t, maxIters=5000, confidence=0.999)
    else:
        inl = None
    if inl is None:
        return np.ones(n, dtype=bool)
    return inl.ravel().astype(bool)


def fit_robust(kind: str, src: np.ndarray, dst: np.ndarray, thr: float, seed: int = 0, tps_cell: float = 64.0,
               iterations: int = 4) -> tuple[Model, np.ndarray]:
    """Robust fit: MAGSAC consensus, then least squares on inliers, re-selecting inliers a few times.

    The inlier threshold adapts to the noise (3.5 robust sigmas), between 1 px and `thr`, so that
    sub-pixel matchers are not judged with a 3 px tolerance.
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    inl = _initial_inliers(kind, src, dst, thr, seed)
    if inl.sum() < MIN_POINTS[kind]:
        inl = np.ones(len(src), dtype=bool)
    model = fit_lsq(kind, src[inl], dst[inl], tps_cell)
    for _ in range(iterations):
        r = residuals(model, src, dst)
        new = r <= _adaptive_threshold(r[inl], thr)
        if new.sum() < MIN_POINTS[kind] or np.array_equal(new, inl):
            break
        inl = new
        model = fit_lsq(kind, src[inl], dst[inl], tps_cell)
    r = residuals(model, src, dst)
    return model, r <= _adaptive_threshold(r[inl], thr)


def _adaptive_threshold(inlier_residuals: np.ndarray, thr: float) -> float:
    sigma = 1.4826 * float(np.median(inlier_residuals)) if len(inlier_residuals) else thr
    return min(thr, max(1.0, 3.5 * sigma))


def describe(model: Model, grid_transform: tuple[float, ...] | None = None) -> dict:
    """JSON-ready description; for the projective family also the matrix in map coordinates."""
    d: dict = {"kind": model.kind}
    M = model.matrix()
    if M is not None:
        d["matrix_px"] = M.tolist()
        if grid_transform is not None:
            G = np.vstack([np.asarray(grid_transform).reshape(2, 3), [0, 0, 1.0]])
            # Working px (corner origin) -> map is G; the model uses centre-origin px: shift by half a pixel.
            C = np.array([[1, 0, -0.5], [0, 1, -0.5], [0, 0, 1.0]])
            Mm = G @ np.linalg.inv(C) @ M @ C @ np.linalg.inv(G)
            d["matrix_map"] = (Mm / Mm[2, 2]).tolist()
            if model.kind == "translation":
                d["shift_map"] = [float(Mm[0, 2]), float(Mm[1, 2])]
    elif model.kind in ("poly2", "poly3"):
        d["order"] = int(model.kind[-1])
        d["coefficients_normalised"] = model.params["forward"]
    else:
        d["control_points"] = len(model.params["src"])
    return {k: v for k, v in d.items() if v is not None}


def rotation_scale(M: np.ndarray) -> tuple[float, float]:
    """Rotation (degrees) and mean scale of the linear part of a 3x3 matrix."""
    lin = M[:2, :2]
    return math.degrees(math.atan2(lin[1, 0] - lin[0, 1], lin[0, 0] + lin[1, 1])), float(math.sqrt(abs(np.linalg.det(lin))))
