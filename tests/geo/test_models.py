from __future__ import annotations

import numpy as np
import pytest
from rasterio.control import GroundControlPoint
from rasterio.transform import GCPTransformer

from geomreg.geo.models import fit_lsq, fit_robust, residuals


def _points(n=300, seed=0, size=1000.0):
    return np.random.default_rng(seed).uniform(0, size, (n, 2))


def _quad(xy):
    u = (xy - 500) / 500
    return xy + np.c_[3 * u[:, 0] ** 2 - 2 * u[:, 0] * u[:, 1] + 1.5, 2 * u[:, 1] ** 2 + u[:, 0] - 0.5]


@pytest.mark.parametrize(
    "kind, fn",
    [
        ("translation", lambda p: p + [2.5, -1.25]),
        ("affine", lambda p: p @ np.array([[1.01, 0.02], [-0.015, 0.995]]).T + [3, -4]),
        ("homography", None),
        ("poly2", _quad),
        ("poly3", lambda p: _quad(p) + np.c_[((p[:, 0] - 500) / 500) ** 3, np.zeros(len(p))]),
    ],
)
def test_robust_fit_recovers_model_despite_outliers(kind, fn):
    src = _points()
    if fn is None:
        H = np.array([[1.01, 0.01, 3.0], [-0.01, 0.99, -2.0], [2e-6, -1e-6, 1.0]])
        ph = np.c_[src, np.ones(len(src))] @ H.T
        dst = ph[:, :2] / ph[:, 2:]
    else:
        dst = fn(src)
    rng = np.random.default_rng(1)
    noisy = dst + rng.normal(0, 0.1, dst.shape)
    bad = rng.choice(len(src), 40, replace=False)
    noisy[bad] += rng.uniform(8, 40, (40, 2)) * rng.choice([-1, 1], (40, 2))
    model, inl = fit_robust(kind, src, noisy, thr=3.0)
    assert not inl[bad].any()
    assert inl.sum() >= len(src) - 45
    grid = _points(100, seed=5)
    truth = fn(grid) if fn is not None else None
    if truth is None:
        ph = np.c_[grid, np.ones(len(grid))] @ H.T
        truth = ph[:, :2] / ph[:, 2:]
    assert np.abs(model.apply(grid) - truth).max() < 0.1
    # the inverse maps back
    assert np.abs(model.apply_inverse(model.apply(grid)) - grid).max() < 0.1


def test_poly2_matches_gdal_gcp_transformer():
    """Our least-squares polynomial is the same estimator as GDAL's GCP polynomial (order 2 chosen by GDAL)."""
    src = _points(50)
    dst = _quad(src) + np.random.default_rng(2).normal(0, 0.2, (50, 2))
    ours = fit_lsq("poly2", src, dst)
    gcps = [GroundControlPoint(row=s[1], col=s[0], x=d[0], y=d[1]) for s, d in zip(src, dst)]
    test = _points(20, seed=9)
    with GCPTransformer(gcps) as t:
        xs, ys = t.xy(test[:, 1], test[:, 0], offset="ul")
    assert np.abs(ours.apply(test) - np.c_[xs, ys]).max() < 1e-6


def test_tps_is_gdal_spline_through_thinned_points():
    src = _points(400)
    dst = _quad(src)
    m = fit_lsq("tps", src, dst, tps_cell=100.0)
    assert 50 <= len(m.params["src"]) <= 100  # one control point per 100 px cell
    ctrl = np.asarray(m.params["src"])
    assert np.abs(m.apply(ctrl) - np.asarray(m.params["dst"])).max() < 1e-6  # exact through its control points
    inner = _points(50, seed=3, size=800.0) + 100
    assert np.abs(m.apply(inner) - _quad(inner)).max() < 0.3
    assert np.abs(m.apply_inverse(m.apply(inner)) - inner).max() < 0.3


def test_residuals_shape():
    src = _points(10)
    m = fit_lsq("translation", src, src + 1)
    assert residuals(m, src, src + 1).shape == (10,)
