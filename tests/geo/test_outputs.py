from __future__ import annotations

import json

import geopandas as gpd
import numpy as np
import pytest
import rasterio

import geomreg
from geomreg.geo.io import Grid
from geomreg.geo.sample import sample_pair

from .scenes import shift, truth_error_px, write_raster


@pytest.fixture(scope="module")
def registered(tmp_path_factory, texture, matcher):
    """A 3-band uint16 moving scene without nodata value (so the output needs a mask), off by (+4.4, -2.2) px."""
    d = tmp_path_factory.mktemp("outputs")
    pair = sample_pair()
    with rasterio.open(pair.reference) as ds:
        rgb = ds.read(window=((100, 420), (120, 440)))
        g = Grid.of_dataset(ds).window_grid((120, 100, 320, 320))
    ref = write_raster(d / "ref.tif", rgb[0], g)
    T = shift(-4.4 * 30, -2.2 * 30)
    claimed = Grid(g.crs, tuple(np.add(g.transform, (0, 0, 4.4 * 30, 0, 0, 2.2 * 30))), 320, 320)
    mov = write_raster(d / "mov_rgb.tif", rgb, claimed)  # pixels unchanged, geotransform wrong by T^-1
    reg = geomreg.register(ref, mov, matcher=matcher, tile_size=192, overlap=32, progress=False)
    assert reg.status == "registered", reg.reason
    assert truth_error_px(reg, T) < 0.3
    return reg, d, rgb


def test_resampled_cog_every_band_same_dtype_mask(registered):
    reg, d, rgb = registered
    out = d / "reg.tif"
    written = reg.write(out)
    with rasterio.open(out) as ds:
        assert ds.count == 3 and ds.dtypes == ("uint16",) * 3
        assert ds.crs == rasterio.crs.CRS.from_wkt(reg.plan.reference.grid.crs)
        assert ds.transform == reg.plan.reference.grid.affine
        assert ds.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
        assert ds.profile["tiled"] and ds.compression is not None
        data = ds.read()
        mask = ds.dataset_mask() > 0
    # Once registered, the moving scene (the same pixels) lands exactly on the reference grid: all covered
    # but a sub-pixel sliver on the border, which the mask band flags (the input has no nodata value).
    assert mask[1:-1, 1:-1].all() and ds.nodata is None
    for b in range(3):
        diff = np.abs(data[b, 1:-1, 1:-1].astype(float) - rgb[b, 1:-1, 1:-1])
        assert np.median(diff) < 0.01 * np.median(rgb[b])
    assert set(written) == {"raster", "tie_points", "qgis_points", "report"}


def test_tie_points_geopackage_and_qgis_points(registered):
    reg, d, _ = registered
    out = d / "reg2.tif"
    w = reg.write(out)
    gdf = gpd.read_file(w["tie_points"], layer="tie_points")
    for col in ("ref_x", "ref_y", "ref_col", "ref_row", "mov_x", "mov_y", "mov_col", "mov_row", "confidence",
                "residual_px", "residual_map", "inlier", "tile_id"):
        assert col in gdf.columns
    assert len(gdf) == len(reg._tie_points) and gdf.crs is not None
    inl = gdf[gdf.inlier.astype(bool)]
    # Same pixels in both rasters: file pixel coordinates agree, map coordinates differ by the georeferencing error.
    assert np.median(inl.ref_col - inl.mov_col) == pytest.approx(0.0, abs=0.1)
    assert np.median(inl.mov_x - inl.ref_x) == pytest.approx(4.4 * 30, abs=3.0)
    assert np.median(inl.mov_y - inl.ref_y) == pytest.approx(2.2 * 30, abs=3.0)
    lines = open(w["qgis_points"]).read().splitlines()
    assert lines[0].startswith("#CRS: ") and lines[1] == "mapX,mapY,sourceX,sourceY,enable,dX,dY,residual"
    first = [float(v) for v in lines[2].split(",")]
    assert first[3] <= 0  # QGIS counts source rows negative
    report = json.loads(open(w["report"]).read())
    assert report["status"] == "registered" and report["transform"]["kind"] == reg.transform_kind
    assert report["counts"]["inliers"] == reg.n_inliers and "versions" in report and report["outputs"]["raster"] == str(out)


def test_georef_and_gcp_modes(registered):
    reg, d, rgb = registered
    if reg.transform_kind not in ("translation", "affine"):
        pytest.skip("georef mode needs an affine model")
    out = d / "georef.tif"
    reg.write(out, mode="georef", sidecars=False)
    with rasterio.open(out) as ds:
        assert np.array_equal(ds.read(), rgb)  # pixels untouched
        # The corrected geotransform is back on the reference's (the true) one, to a fraction of a pixel.
        assert abs(ds.transform.c - reg.plan.reference.grid.transform[2]) < 0.3 * 30
        assert abs(ds.transform.f - reg.plan.reference.grid.transform[5]) < 0.3 * 30
    out2 = d / "gcps.tif"
    reg.write(out2, mode="gcps", sidecars=False)
    with rasterio.open(out2) as ds:
        gcps, crs = ds.gcps
        assert len(gcps) == 64 and crs is not None
