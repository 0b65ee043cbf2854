"""The tile bootstrap of a fitted model's uncertainty."""

from __future__ import annotations

import numpy as np
import pytest

from geomreg.geo.uncertainty import bootstrap_uncertainty


def _tiles(k: int, per_tile: int, tile_sigma: float, point_sigma: float, seed: int = 0, affine: bool = False):
    """Tie points of k tiles on a grid over [0, 1000]^2: each tile shares one random offset (its bias)."""
    rng = np.random.default_rng(seed)
    side = int(np.ceil(np.sqrt(k)))
    src, tid, off = [], [], []
    for t in range(k):
        cx, cy = (t % side + 0.5) * 1000 / side, (t // side + 0.5) * 1000 / side
        p = np.c_[rng.uniform(cx - 50, cx + 50, per_tile), rng.uniform(cy - 50, cy + 50, per_tile)]
        src.append(p)
        tid.append(np.full(per_tile, t))
        off.append(np.repeat(rng.normal(0, tile_sigma, (1, 2)), per_tile, axis=0) + rng.normal(0, point_sigma, (per_tile, 2)))
    src, tid, off = np.concatenate(src), np.concatenate(tid), np.concatenate(off)
    dst = src + [3.0, -2.0] + off
    if affine:
        dst = dst + 0.001 * (src - 500)
    return src, dst, tid


GRID = np.stack(np.meshgrid(np.linspace(0, 1000, 5), np.linspace(0, 1000, 5)), -1).reshape(-1, 2)


def test_translation_std_is_the_tile_scatter_over_root_k():
    # Per tile a shared bias of 0.3 px per axis: the mean of k tiles has a radial std of 0.3 * sqrt(2 / k).
    k = 36
    src, dst, tid = _tiles(k, 200, tile_sigma=0.3, point_sigma=0.5)
    u = bootstrap_uncertainty("translation", src, dst, tid, GRID, replicates=400)
    expected = 0.3 * np.sqrt(2 / k)
    assert u.tiles == k and u.replicates == 400
    assert 0.7 * expected < u.max_std_px < 1.4 * expected
    assert u.max_std_px == pytest.approx(u.rms_std_px)  # a translation is equally uncertain everywhere


def test_points_in_one_tile_do_not_count_as_independent():
    # Same tiles, ten times the points each: the uncertainty is that of the tiles, not of the points.
    a = bootstrap_uncertainty("translation", *_tiles(16, 30, 0.3, 0.5), GRID, replicates=300)
    b = bootstrap_uncertainty("translation", *_tiles(16, 300, 0.3, 0.5), GRID, replicates=300)
    assert b.max_std_px > 0.6 * a.max_std_px


def test_more_tiles_narrow_the_model():
    few = bootstrap_uncertainty("affine", *_tiles(9, 100, 0.3, 0.5, affine=True), GRID)
    many = bootstrap_uncertainty("affine", *_tiles(64, 100, 0.3, 0.5, affine=True), GRID)
    assert many.max_std_px < few.max_std_px
    assert many.max_std_px >= many.rms_std_px  # an affine is least certain at the edges
    assert few.as_dict()["method"] == "tile bootstrap"


def test_too_few_tiles_is_not_estimable():
    u = bootstrap_uncertainty("affine", *_tiles(2, 100, 0.3, 0.5), GRID)
    assert u.max_std_px == float("inf") and u.as_dict()["max_std_px"] is None


def test_spline_is_refused():
    with pytest.raises(ValueError):
        bootstrap_uncertainty("tps", *_tiles(9, 10, 0.3, 0.5), GRID)
