"""Whole-scene registration with the CFOG-style matcher on real Landsat-8 texture with known georeferencing errors."""

from __future__ import annotations

import numpy as np
import pytest
from rasterio.crs import CRS
from rasterio.warp import calculate_default_transform

import geomreg
from geomreg.geo.io import Grid

from .scenes import affine_about, inverted, moving_scene, reference_scene, shift, truth_error_px

TOL_PX = 0.3


def _register(ref, mov, matcher, **kw):
    kw.setdefault("tile_size", 256)
    kw.setdefault("overlap", 32)
    return geomreg.register(ref, mov, matcher=matcher, progress=False, **kw)


def test_translation_subpixel(tmp_path, texture, matcher):
    ref, g = reference_scene(tmp_path, texture)
    T = shift(-2.37 * 30, 1.61 * 30)  # the moving scene's map coordinates are off by (2.37, -1.61) px
    mov = moving_scene(tmp_path, texture, g, T)
    reg = _register(ref, mov, matcher)
    assert reg.status == "registered", reg.reason
    assert reg.transform_kind == "translation"  # auto: the simplest model that explains the held-out points
    assert truth_error_px(reg, T) < TOL_PX
    assert reg.rmse < 1.0 and reg.n_inliers >= 50
    # map_to_reference keeps the input shape
    x, y = reg.map_to_reference(np.zeros((2, 3)) + g.transform[2], np.zeros((2, 3)) + g.transform[5])
    assert x.shape == (2, 3) and y.shape == (2, 3)


def test_affine_with_modality_change(tmp_path, texture, matcher):
    ref, g = reference_scene(tmp_path, texture)
    centre = g.px_to_map([[g.width / 2, g.height / 2]])[0]
    T = affine_about(centre, angle_deg=0.6, scale=1.006, dx=45.0, dy=-20.0)
    mov = moving_scene(tmp_path, texture, g, T, modality=inverted)
    reg = _register(ref, mov, matcher)
    assert reg.status == "registered", reg.reason
    assert reg.transform_kind in ("affine", "homography", "poly2", "poly3")
    assert truth_error_px(reg, T) < TOL_PX
    assert abs(reg.report["transform"]["rotation_deg"] - (-0.6)) < 0.05 or reg.transform_kind not in ("affine", "homography")


def test_polynomial_distortion(tmp_path, texture, matcher):
    ref, g = reference_scene(tmp_path, texture)
    c = g.px_to_map([[g.width / 2, g.height / 2]])[0]
    half = g.width * 30 / 2

    def T(xy):
        u = (xy - c) / half  # in [-1, 1] over the scene
        d = np.stack([2.0 * u[:, 0] ** 2 - 1.5 * u[:, 0] * u[:, 1], 1.8 * u[:, 1] ** 2 + 1.0 * u[:, 0]], axis=1)
        return xy + 30.0 * d + [15.0, -10.0]  # up to ~3 px of quadratic distortion

    mov = moving_scene(tmp_path, texture, g, T)
    reg = _register(ref, mov, matcher, tile_size=192, overlap=32)
    assert reg.status == "registered", reg.reason
    assert reg.transform_kind in ("poly2", "poly3", "tps"), reg.report["auto_selection_cv_rmse_px"]
    assert truth_error_px(reg, T) < TOL_PX
    forced = _register(ref, mov, matcher, tile_size=192, overlap=32, transform="poly2")
    assert forced.transform_kind == "poly2" and truth_error_px(forced, T) < TOL_PX


def test_other_crs_and_resolution(tmp_path, texture, matcher):
    """Moving scene in EPSG:4326 at 1.5x the pixel size, with nodata stripes: WarpedVRT brings it onto the working grid."""
    ref, g = reference_scene(tmp_path, texture)
    left, top = g.px_to_map([[-0.5, -0.5]])[0]
    right, bottom = g.px_to_map([[g.width - 0.5, g.height - 0.5]])[0]
    dst = CRS.from_epsg(4326)
    tf, w, h = calculate_default_transform(CRS.from_wkt(g.crs), dst, g.width, g.height, left, bottom, right, top)
    mg = Grid(dst.to_wkt(), tuple(tf[:6]), w, h).scaled(1.5)
    rows = np.arange(mg.height)[:, None] + np.zeros(mg.width)[None]
    stripes = (rows % 60) < 6  # horizontal no-data stripes, like missing scan lines
    T = shift(31.0, -52.0)
    mov = moving_scene(tmp_path, texture, mg, T, nodata_mask=stripes)
    reg = _register(ref, mov, matcher, tile_size=192, overlap=32)
    assert reg.status == "registered", reg.reason
    assert reg.plan.grid.res == pytest.approx(reg.plan.reference.grid.res * 1.5, rel=0.02)  # worked at the coarser resolution
    assert truth_error_px(reg, T) < TOL_PX
    # Tie points carry both sides' file pixel coordinates; the moving ones are in the EPSG:4326 raster.
    tp = reg.tie_points
    assert tp.crs.equals(CRS.from_wkt(g.crs)) and {"mov_col", "mov_row", "ref_col", "ref_row"} <= set(tp.columns)
    assert tp.mov_col.between(-1, mg.width).all() and tp.mov_row.between(-1, mg.height).all()


def test_offset_larger_than_tile_uses_coarse_pass(tmp_path, texture, matcher):
    ref, g = reference_scene(tmp_path, texture, margin=64, size=448)
    T = shift(-95.3 * 30, 70.6 * 30)  # ~120 px, beyond what one 192 px tile can search
    mov_grid = g.window_grid((95, 70, g.width, g.height))  # a footprint offset like the error, so the scenes still overlap
    mov = moving_scene(tmp_path, texture, mov_grid, T)
    reg = _register(ref, mov, matcher, tile_size=192, overlap=32, max_shift=140)
    assert reg.status == "registered", reg.reason
    assert reg.plan.coarse_factor > 1 and any("coarse pass:" in n for n in reg.plan.notes)
    assert truth_error_px(reg, T) < TOL_PX


def test_bundled_sample_pair_simulated_sar(matcher):
    pair = geomreg.geo.sample.sample_pair()
    reg = geomreg.register(pair.reference, pair.moving, matcher=matcher, tile_size=320, overlap=32, progress=False)
    assert reg.status == "registered", reg.reason
    x0, y0, x1, y1 = reg.plan.overlap.bounds
    gx, gy = np.meshgrid(np.linspace(x0, x1, 7), np.linspace(y0, y1, 7))
    ex, ey = reg.map_to_reference(gx, gy)
    tx, ty = pair.true_map_to_reference(gx, gy)
    assert np.sqrt(np.mean((ex - tx) ** 2 + (ey - ty) ** 2)) / 30.0 < TOL_PX
