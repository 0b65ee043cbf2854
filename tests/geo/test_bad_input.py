"""Every bad-input case of the issue: a clear InputError naming the file and the problem, and no output."""

from __future__ import annotations

import os

import numpy as np
import pytest

import geomreg
from geomreg.geo import outputs
from geomreg.geo.errors import InputError

from .scenes import moving_scene, reference_scene, shift, write_raster


@pytest.fixture()
def pair(tmp_path, texture):
    ref, g = reference_scene(tmp_path, texture, size=256, margin=192)
    mov = moving_scene(tmp_path, texture, g, shift(45.0, -30.0))
    return ref, mov, g


def _reg(ref, mov, matcher, out=None, **kw):
    kw.setdefault("tile_size", 256)
    return geomreg.register(ref, mov, out, matcher=matcher, progress=False, **kw)


def _assert_nothing_written(d, before: set[str]) -> None:
    assert set(os.listdir(d)) == before, set(os.listdir(d)) ^ before


def test_missing_file(pair, matcher, tmp_path):
    ref, _, _ = pair
    with pytest.raises(InputError, match="moving file not found") as e:
        _reg(ref, tmp_path / "nope.tif", matcher)
    assert "nope.tif" in str(e.value)


def test_unreadable_path(pair, matcher, tmp_path):
    ref, _, _ = pair
    (tmp_path / "adir.tif").mkdir()
    with pytest.raises(InputError, match="is a directory") as e:
        _reg(ref, tmp_path / "adir.tif", matcher)
    assert "adir.tif" in str(e.value)


def test_corrupt_raster_not_a_raster(pair, matcher, tmp_path):
    _, mov, _ = pair
    junk = tmp_path / "junk.tif"
    junk.write_bytes(b"II*\x00" + np.random.default_rng(0).bytes(4000))
    with pytest.raises(InputError, match="reference file is not a readable raster") as e:
        _reg(junk, mov, matcher)
    assert "junk.tif" in str(e.value)


def test_corrupt_raster_truncated(pair, matcher, tmp_path):
    ref, mov, _ = pair
    cut = tmp_path / "truncated.tif"
    data = ref.read_bytes()
    cut.write_bytes(data[: len(data) // 2])  # header and tile index intact, half the tiles missing
    with pytest.raises(InputError, match="cannot be read") as e:
        _reg(cut, mov, matcher)
    assert "truncated.tif" in str(e.value)


def test_no_crs_unless_pixel_mode(tmp_path, texture, matcher):
    img = texture.image[100:356, 150:406]
    ref = write_raster(tmp_path / "ref_nocrs.tif", img, None)
    # Same texture cut 3 columns and 2 rows earlier: moving pixel (c, r) shows reference pixel (c - 3, r - 2).
    mov = write_raster(tmp_path / "mov_nocrs.tif", texture.image[98:354, 147:403], None)
    with pytest.raises(InputError, match="has no CRS") as e:
        _reg(ref, mov, matcher)
    assert "ref_nocrs.tif" in str(e.value)
    reg = _reg(ref, mov, matcher, pixel_mode=True, transform="translation")
    assert reg.status == "registered", reg.reason
    x, y = reg.map_to_reference(np.array([100.0]), np.array([100.0]))
    # Without georeferencing GDAL's geotransform is the identity, so "map" coordinates are pixel coordinates.
    assert abs(x[0] - 97.0) < 0.1 and abs(y[0] - 98.0) < 0.1


def test_footprints_do_not_overlap(pair, matcher, tmp_path, texture):
    ref, _, g = pair
    far = g.window_grid((5000, 0, 256, 256))
    mov = write_raster(tmp_path / "far.tif", texture.image[:256, :256], far)
    with pytest.raises(InputError, match="do not overlap"):
        _reg(ref, mov, matcher)


def test_all_nodata_overlap(pair, matcher, tmp_path):
    ref, _, g = pair
    mov = write_raster(tmp_path / "empty.tif", np.zeros((256, 256)), g, nodata=0)
    with pytest.raises(InputError, match="no pixel that is valid in both"):
        _reg(ref, mov, matcher)


def test_output_equal_to_input(pair, matcher, tmp_path):
    ref, mov, _ = pair
    before = set(os.listdir(tmp_path))
    with pytest.raises(InputError, match="one of the inputs"):
        _reg(ref, mov, matcher, out=mov, overwrite=True)
    _assert_nothing_written(tmp_path, before)


def test_existing_output_needs_overwrite(pair, matcher, tmp_path):
    ref, mov, _ = pair
    out = tmp_path / "out.tif"
    out.write_bytes(b"keep me")
    with pytest.raises(InputError, match="exists already"):
        _reg(ref, mov, matcher, out=out)
    assert out.read_bytes() == b"keep me"


@pytest.mark.parametrize("band, msg", [(4, "has 1 band"), ("luminance", "needs 3"), ("nir", "unsupported band selection"), (0, "unsupported band")])
def test_unsupported_band_selection(pair, matcher, band, msg):
    ref, mov, _ = pair
    with pytest.raises(InputError, match=msg) as e:
        _reg(ref, mov, matcher, mov_band=band)
    assert "mov.tif" in str(e.value)


def test_interrupted_write_leaves_no_output(pair, matcher, tmp_path, monkeypatch):
    ref, mov, _ = pair
    reg = _reg(ref, mov, matcher, write_block=64)
    assert reg.status == "registered"
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    calls = {"n": 0}
    real = outputs._write_block

    def interrupted(*a, **k):  # the user presses Ctrl-C while the third block is being written
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(outputs, "_write_block", interrupted)
    with pytest.raises(KeyboardInterrupt):
        reg.write(out_dir / "reg.tif")
    assert calls["n"] == 3
    assert os.listdir(out_dir) == []  # neither the output nor a temporary file
    monkeypatch.setattr(outputs, "_write_block", real)
    written = reg.write(out_dir / "reg.tif")
    assert set(written) == {"raster", "tie_points", "qgis_points", "report"}


def test_registration_failure_writes_report_only(tmp_path, texture, matcher):
    ref, g = reference_scene(tmp_path, texture, size=256, margin=192)
    noise = np.random.default_rng(1).uniform(1000, 20000, (256, 256))  # nothing in common with the reference
    mov = write_raster(tmp_path / "noise.tif", noise, g)
    out = tmp_path / "out.tif"
    reg = _reg(ref, mov, matcher, out=out)
    assert reg.status == "failed" and reg.reason
    assert not out.exists()
    assert (tmp_path / "out_report.json").exists()
    with pytest.raises(RuntimeError, match="registration failed"):
        reg.map_to_reference(np.zeros(1), np.zeros(1))


def test_bad_config_values():
    with pytest.raises(InputError, match="transform"):
        geomreg.geo.RegistrationConfig(transform="spline9")
    with pytest.raises(InputError, match="max_shift"):
        geomreg.api.build_config(max_shift="far")
