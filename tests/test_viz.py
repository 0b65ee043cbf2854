"""geomreg.viz on a real registration of the bundled sample pair (CFOG matcher, a few seconds)."""

from __future__ import annotations

import subprocess
import sys

import cv2
import geopandas as gpd
import numpy as np
import pytest
import rasterio
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.image import AxesImage
from matplotlib.quiver import Quiver
from PIL import Image
from rasterio.windows import Window

import geomreg
import geomreg.viz as viz
from geomreg.geo import fuse, plan_registration
from geomreg.geo.config import RegistrationConfig
from geomreg.geo.io import apply_stretch
from geomreg.geo.sample import sample_pair
from geomreg.matching.cfog import CFOGMatcher

DPI = 50


@pytest.fixture(scope="module")
def pair():
    return sample_pair()


@pytest.fixture(scope="module")
def registered(pair, tmp_path_factory):
    out = tmp_path_factory.mktemp("viz") / "reg.tif"
    reg = geomreg.register(pair.reference, pair.moving, out, matcher=CFOGMatcher(), tile_size=320, overlap=32, progress=False)
    assert reg.ok, reg.reason
    return reg, out


@pytest.fixture(scope="module")
def failed(pair):
    # No tile matches at all: fusion reports a failure (the cheapest real failed Registration).
    plan = plan_registration(pair.reference, pair.moving, RegistrationConfig(tile_size=320, overlap=32))
    reg = fuse(plan, [])
    assert reg.status == "failed"
    return reg


def _save(fig, path) -> np.ndarray:
    fig.savefig(path, dpi=DPI)
    with Image.open(path) as im:
        assert im.format == "PNG"
        arr = np.asarray(im.convert("L"))
    w, h = fig.get_size_inches() * DPI
    assert arr.shape == (round(h), round(w))
    assert arr.std() > 5  # not a blank canvas
    return arr


def _images(ax) -> list[AxesImage]:
    return [a for a in ax.get_children() if isinstance(a, AxesImage)]


# --- pure helpers ---------------------------------------------------------------------------------


def test_checkerboard_alternates_cells():
    a, b = np.zeros((10, 20)), np.ones((10, 20))
    cb = viz.checkerboard(a, b, tiles=4)  # cells of 5 px
    assert cb[0, 0] == 0 and cb[0, 5] == 1 and cb[5, 0] == 1 and cb[5, 5] == 0 and cb[9, 19] == 0
    assert cb.mean() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="shape"):
        viz.checkerboard(a, np.ones((10, 21)))


def test_swipe_splits_at_position():
    a, b = np.zeros((4, 10)), np.ones((4, 10))
    s = viz.swipe(a, b, 0.3)
    assert (s[:, :3] == 0).all() and (s[:, 3:] == 1).all()
    with pytest.raises(ValueError, match="position"):
        viz.swipe(a, b, 1.5)


def test_stretch_handles_raw_and_display_images():
    raw = np.arange(100, dtype=np.uint16).reshape(10, 10) * 50
    s = viz.stretch(raw)
    assert s.dtype == np.float32 and np.nanmin(s) >= 0 and np.nanmax(s) <= 1 and s[0, 0] < s[-1, -1]
    disp = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    assert np.array_equal(viz.stretch(disp), disp)


# --- display images -------------------------------------------------------------------------------


def test_after_image_equals_the_written_output(registered):
    """The 'after' view is the registered raster itself (same mapping as Registration.write)."""
    reg, out = registered
    win = (100, 100, 300, 300)
    grid = viz.display_grid(reg, window=win)
    assert (grid.width, grid.height) == (300, 300)
    after = viz.moving_on_grid(reg, grid, corrected=True)
    with rasterio.open(out) as ds:
        data = ds.read(1, window=Window(*win)).astype(np.float64)
        valid = ds.read_masks(1, window=Window(*win)) > 0
    written = apply_stretch(data, valid, reg.plan.moving.stretch)
    both = np.isfinite(written) & np.isfinite(after)
    assert both.mean() > 0.95
    diff = np.abs(written[both] - after[both])
    assert diff.mean() < 0.01 and np.percentile(diff, 99) < 0.05


def test_before_and_after_differ_by_the_known_offset(registered, pair):
    """Before -> after moves the moving scene by the sample's known georeferencing error."""
    reg, _ = registered
    grid = viz.display_grid(reg, window=(100, 100, 300, 300))
    before = viz.moving_on_grid(reg, grid, corrected=False)
    after = viz.moving_on_grid(reg, grid, corrected=True)
    (sx, sy), _ = cv2.phaseCorrelate(np.nan_to_num(before).astype(np.float64), np.nan_to_num(after).astype(np.float64))
    err = pair.truth["georef_error_m"]
    res = pair.truth["pixel_size_m"]
    # after(col, row) = before(col + dx/res, row - dy/res): phaseCorrelate reports the opposite shift.
    assert sx == pytest.approx(-err["dx"] / res, abs=0.4)
    assert sy == pytest.approx(err["dy"] / res, abs=0.4)


def test_display_grid_is_decimated_to_max_side(registered):
    reg, _ = registered
    im = viz.display_images(reg, max_side=200)
    assert max(im.grid.width, im.grid.height) <= 200
    assert im.reference.shape == im.before.shape == im.after.shape == (im.grid.height, im.grid.width)
    assert np.isfinite(im.reference).mean() > 0.9 and np.isfinite(im.after).mean() > 0.9
    left, right, bottom, top = im.extent
    x0, y0, x1, y1 = reg.plan.overlap.bounds
    assert left <= x0 + 1 and right >= x1 - 1 and bottom <= y0 + 1 and top >= y1 - 1
    with pytest.raises(ValueError, match="outside"):
        viz.display_grid(reg, window=(5000, 5000, 10, 10))


# --- figures --------------------------------------------------------------------------------------


def test_plot_checkerboard_and_swipe(registered, tmp_path):
    reg, _ = registered
    im = viz.display_images(reg, max_side=160)
    fig = viz.plot_checkerboard(im, tiles=6)
    axes = [ax for ax in fig.axes if _images(ax)]
    assert len(axes) == 2
    assert "before" in axes[0].get_title() and "after" in axes[1].get_title() and "RMSE" in axes[1].get_title()
    shown = _images(axes[1])[0].get_array()
    assert np.allclose(shown.filled(np.nan), viz.checkerboard(im.reference, im.after, 6), equal_nan=True)
    _save(fig, tmp_path / "checkerboard.png")

    fig = viz.plot_swipe(im, position=0.25)
    assert sum(1 for ax in fig.axes if _images(ax)) == 2
    line = fig.axes[0].get_lines()[0]
    left, right, _, _ = im.extent
    assert line.get_xdata()[0] == pytest.approx(left + 0.25 * (right - left), rel=0, abs=(right - left) / im.grid.width)
    _save(fig, tmp_path / "swipe.png")


def test_plot_tie_points_from_registration_and_geopackage(registered, tmp_path):
    reg, out = registered
    gdf = reg.tie_points
    fig = viz.plot_tie_points(reg, max_side=160)
    ax = fig.axes[0]
    assert len(_images(ax)) == 1  # the reference underneath
    scat = [c for c in ax.collections if isinstance(c, PathCollection)]
    inl = gdf[gdf.inlier]
    assert len(scat[0].get_offsets()) == len(inl)
    assert np.allclose(np.sort(scat[0].get_array()), np.sort(inl.residual_px.to_numpy()))
    assert len(fig.axes) == 2  # the colour bar
    _save(fig, tmp_path / "tiepoints.png")

    layer = gpd.read_file(out.parent / "reg_tiepoints.gpkg")
    fig = viz.plot_tie_points(layer)
    scat = [c for c in fig.axes[0].collections if isinstance(c, PathCollection)]
    assert len(scat[0].get_offsets()) == int(layer.inlier.sum()) and not _images(fig.axes[0])
    with pytest.raises(ValueError, match="residual_px"):
        viz.plot_tie_points(layer.drop(columns="residual_px"))


def test_residual_vectors_agree_with_stored_residuals(registered, tmp_path):
    reg, _ = registered
    pos, vec, inl = viz.residual_vectors(reg)
    gdf = reg.tie_points
    mag_px = np.hypot(vec[:, 0], vec[:, 1]) / reg.plan.reference.grid.res
    assert np.allclose(mag_px, gdf.residual_px.to_numpy(), atol=1e-6)
    fig = viz.plot_residual_vectors(reg)
    q = [c for c in fig.axes[0].collections if isinstance(c, Quiver)]
    assert len(q) == 1 and q[0].N == int(inl.sum())
    assert np.allclose(np.hypot(q[0].U, q[0].V), np.hypot(vec[inl, 0], vec[inl, 1]))
    _save(fig, tmp_path / "quiver.png")


def test_plot_tile_matches(registered, tmp_path):
    reg, _ = registered
    gdf = reg.tie_points
    tile = int(gdf.tile_id.value_counts().idxmax())
    fig = viz.plot_tile_matches(reg, max_lines=50)
    ax = fig.axes[0]
    assert f"tile {tile}" in ax.get_title()
    lc = [c for c in ax.collections if isinstance(c, LineCollection)][0]
    segs = lc.get_segments()
    assert len(segs) == min(50, int((gdf.tile_id == tile).sum()))
    task = next(t for t in reg.plan.tasks if t.tile_id == tile)
    w, h = task.ref_window[2:]
    ref_ends = np.array([s[0] for s in segs])
    assert (ref_ends[:, 0] > -1).all() and (ref_ends[:, 0] < w).all() and (ref_ends[:, 1] > -1).all() and (ref_ends[:, 1] < h).all()
    mov_ends = np.array([s[1] for s in segs])
    assert (mov_ends[:, 0] >= w).all()  # moving points lie on the right-hand image
    _save(fig, tmp_path / "tile.png")
    with pytest.raises(ValueError, match="no tile"):
        viz.plot_tile_matches(reg, tile_id=999)


def test_plot_matches_of_a_matcher_result(registered, tmp_path):
    reg, _ = registered
    task = reg.plan.tasks[0]
    ref, mov = viz.tile_images(task)
    ref, mov = ref[:160, :160], mov[:224, :224]  # a small crop keeps the test fast
    res = CFOGMatcher().match(np.nan_to_num(ref) + 1, np.nan_to_num(mov) + 1)
    assert len(res) > 0
    fig = viz.plot_matches(ref, mov, res, max_lines=30)
    lc = [c for c in fig.axes[0].collections if isinstance(c, LineCollection)][0]
    assert len(lc.get_segments()) == min(30, len(res)) and lc.get_array() is not None  # coloured by confidence
    _save(fig, tmp_path / "matches.png")
    with pytest.raises(ValueError, match="moving points"):
        viz.plot_matches(ref, mov, (np.zeros((3, 2)), np.zeros((2, 2))))


def test_failed_registration(failed, tmp_path):
    fig = viz.plot_checkerboard(failed, max_side=120)
    assert sum(1 for ax in fig.axes if _images(ax)) == 1  # before only
    assert "failed" in fig.get_suptitle()
    _save(fig, tmp_path / "failed.png")
    with pytest.raises(ValueError, match="failed"):
        viz.plot_residual_vectors(failed)
    with pytest.raises(ValueError, match="failed"):
        viz.moving_on_grid(failed, viz.display_grid(failed, max_side=50), corrected=True)


def test_viz_does_not_touch_pyplot():
    """No pyplot import: figures carry no global state and work under any backend (Agg in CI)."""
    code = "import sys, geomreg.viz; assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
