from __future__ import annotations

import pickle

import numpy as np
from rasterio.crs import CRS
from shapely.geometry import box

from geomreg.geo.config import RegistrationConfig
from geomreg.geo.footprint import footprint, overlap
from geomreg.geo.io import Grid
from geomreg.geo.plan import plan_registration
from geomreg.geo.tiling import tile_windows

from .scenes import moving_scene, reference_scene, shift


def _grid(w=1000, h=800):
    return Grid(CRS.from_epsg(32633).to_wkt(), (10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0), w, h)


def test_tiles_cover_polygon_with_overlap():
    g = _grid()
    poly = box(500000.0, 5000000.0 - 8000, 500000.0 + 10000, 5000000.0)
    wins = tile_windows(g, poly, 256, 32)
    cols = sorted({w[0] for w in wins})
    assert cols[0] == 0 and cols[-1] + 256 == 1000 and all(b - a <= 224 for a, b in zip(cols, cols[1:]))
    assert all(w[2] == 256 and w[3] == 256 for w in wins)
    small = box(500000.0 + 100, 5000000.0 - 1000, 500000.0 + 1000, 5000000.0 - 100)
    assert tile_windows(g, small, 256, 32) == [(10, 10, 90, 90)]


def test_footprint_in_other_crs_overlaps():
    g = _grid(100, 100)
    g4326 = Grid(CRS.from_epsg(4326).to_wkt(), (0.0001, 0.0, 15.0, 0.0, -0.0001, 45.15), 100, 100)
    fp = footprint(g4326, g.crs)
    assert fp.area > 0 and 400000 < fp.centroid.x < 600000
    assert overlap(g, g).area == footprint(g, g.crs).area


def test_plan_is_small_and_picklable(tmp_path, texture):
    ref, g = reference_scene(tmp_path, texture)
    mov = moving_scene(tmp_path, texture, g, shift(30.0, 30.0))
    plan = plan_registration(ref, mov, RegistrationConfig(tile_size=128, overlap=16))
    assert len(plan.tasks) == 16 and not plan.needs_coarse
    blob = pickle.dumps(plan)
    assert len(blob) < 100_000  # no pixel arrays inside
    p2 = pickle.loads(blob)
    t = p2.tasks[0]
    assert t.mov_window[2] == t.ref_window[2] + 2 * (32 + 4)  # margin = max_shift + 4
    assert plan.reference.stretch is not None and not plan.moving.stretch.log


def test_plan_coarse_pass_for_large_shifts(tmp_path, texture):
    ref, g = reference_scene(tmp_path, texture)
    mov = moving_scene(tmp_path, texture, g, shift(30.0, 30.0))
    plan = plan_registration(ref, mov, RegistrationConfig(tile_size=128, overlap=16, max_shift=3000.0, max_shift_unit="map"))
    assert plan.needs_coarse and plan.coarse_factor >= 2 and plan.coarse_tasks
    assert plan.coarse_tasks[0].grid.res == np.float64(plan.grid.res * plan.coarse_factor)
