from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.enums import Resampling

from geomreg.geo.errors import InputError
from geomreg.geo.io import Grid, Stretch, apply_stretch, inspect_raster, integer_offset, read_window

from .scenes import write_raster


@pytest.fixture()
def rgb(tmp_path):
    g = Grid(CRS.from_epsg(32633).to_wkt(), (10.0, 0.0, 500000.0, 0.0, -10.0, 5000000.0), 64, 48)
    rng = np.random.default_rng(0)
    data = rng.integers(1, 255, (3, 48, 64))
    return write_raster(tmp_path / "rgb.tif", data, g, dtype="uint8"), g, data


def test_band_selection(rgb):
    path, _, _ = rgb
    assert inspect_raster(path, "reference").combine == "luminance"
    s = inspect_raster(path, "reference", band="2")
    assert s.bands == (2,) and s.combine == "single"
    assert inspect_raster(path, "reference", band="mean").bands == (1, 2, 3)
    with pytest.raises(InputError, match="numbered 1..3"):
        inspect_raster(path, "reference", band=7)


def test_read_window_direct_boundless_and_luminance(rgb):
    path, g, data = rgb
    src = inspect_raster(path, "reference")
    with rasterio.open(path) as ds:
        img, valid = read_window(ds, src, g, (-4, -2, 20, 10))
    lum = 0.299 * data[0] + 0.587 * data[1] + 0.114 * data[2]
    assert not valid[:2].any() and not valid[:, :4].any()
    assert valid[2:, 4:].all()
    np.testing.assert_allclose(img[2:, 4:], lum[:8, :16])


def test_read_window_warped_matches_direct_at_integer_offset(rgb):
    """A WarpedVRT onto a half-pixel-shifted grid gives the bilinear average of neighbours."""
    path, g, data = rgb
    src = inspect_raster(path, "reference", band=1)
    half = Grid(g.crs, (10.0, 0.0, 500005.0, 0.0, -10.0, 5000000.0), 63, 48)
    assert integer_offset(src.grid, half) is None
    with rasterio.open(path) as ds:
        img, valid = read_window(ds, src, half, (0, 0, 10, 10), Resampling.bilinear)
    expect = 0.5 * (data[0, :10, :10] + data[0, :10, 1:11])
    np.testing.assert_allclose(img[1:-1, 1:-1], expect[1:-1, 1:-1], atol=0.02)


def test_read_window_other_crs_has_nodata_outside(rgb):
    path, g, _ = rgb
    src = inspect_raster(path, "reference", band=1)
    # The same area in EPSG:4326 with a margin: pixels outside the source are invalid, never an error.
    from rasterio.warp import calculate_default_transform

    tf, w, h = calculate_default_transform(CRS.from_wkt(g.crs), CRS.from_epsg(4326), g.width, g.height,
                                           500000.0, 5000000.0 - 480, 500640.0, 5000000.0)
    g4326 = Grid(CRS.from_epsg(4326).to_wkt(), tuple(tf[:6]), w, h)
    with rasterio.open(path) as ds:
        img, valid = read_window(ds, src, g4326, (-5, -5, w + 10, h + 10))
    assert not valid[:3].any() and valid[h // 2 + 5, w // 2 + 5]


def test_complex_input_becomes_amplitude(tmp_path):
    g = Grid(CRS.from_epsg(32633).to_wkt(), (10.0, 0.0, 0.0, 0.0, -10.0, 0.0), 16, 16)
    z = (np.arange(256).reshape(16, 16) + 1j * 3).astype(np.complex64)
    p = write_raster(tmp_path / "slc.tif", z, g, dtype="complex64")
    src = inspect_raster(p, "moving")
    assert src.is_complex
    with rasterio.open(p) as ds:
        img, valid = read_window(ds, src, g, (0, 0, 16, 16))
    np.testing.assert_allclose(img, np.abs(z), rtol=1e-6)
    assert valid.all()


def test_apply_stretch_log_and_nan():
    img = np.array([[1.0, 10.0], [100.0, 5.0]])
    valid = np.array([[True, True], [True, False]])
    out = apply_stretch(img, valid, Stretch(True, 0.0, np.log(100.0)))
    np.testing.assert_allclose(out[0], [0.0, 0.5], atol=1e-6)
    assert out[1, 0] == pytest.approx(1.0) and np.isnan(out[1, 1])
