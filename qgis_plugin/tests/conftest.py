"""Fixtures for the plugin tests, run inside a real QGIS (pytest-qgis) by qgis_plugin/run_tests.sh."""

from __future__ import annotations

import csv
import importlib.util
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

QGIS_PLUGIN_DIR = Path(__file__).resolve().parents[1]
REPO = QGIS_PLUGIN_DIR.parent
SHARED_TRAIN = REPO.parent / "shared" / "data" / "train"

if importlib.util.find_spec("qgis") is None:
    # The project's own .venv has no QGIS: these tests only run under run_tests.sh.
    collect_ignore_glob = ["test_*.py"]
else:
    sys.path.insert(0, str(QGIS_PLUGIN_DIR))
    import numpy as np
    from osgeo import gdal, osr
    from qgis.core import QgsApplication, QgsProject, QgsRasterLayer
    from qgis.PyQt.QtCore import QCoreApplication
    from qgis.PyQt.QtWidgets import QMenu

    gdal.UseExceptions()


UTM33N = 32633
PIXEL = 10.0  # metres
ORIGIN = (500_000.0, 5_000_000.0)


def engine_python() -> str:
    """The interpreter of the project's own environment (where geomreg and its CLI live)."""
    configured = os.environ.get("GEOMREG_TEST_PYTHON", "")
    if configured:
        return configured
    for candidate in (REPO / ".venv" / "bin" / "python", REPO / ".venv" / "Scripts" / "python.exe"):
        if candidate.exists():
            return str(candidate)
    return ""


@pytest.fixture(scope="session")
def subprocess_engine():
    """The geomreg CLI in the project's .venv, probed for real; skips when the engine is not there yet."""
    from geomreg_qgis.toolbelt.engine import EngineNotFound, probe_python

    python = engine_python()
    if not python:
        pytest.skip("no project .venv with geomreg (set GEOMREG_TEST_PYTHON)")
    try:
        engine = probe_python(python, refresh=True)
    except EngineNotFound as exc:
        pytest.skip(f"geomreg engine not usable in {python}: {exc}")
    if "--matcher" not in engine.cli_options:
        pytest.skip(f"`geomreg register` in {python} does not list --matcher yet: the CLI of issue 4 is not there")
    return engine


@pytest.fixture(scope="session")
def in_process_engine():
    from geomreg_qgis.toolbelt.engine import Engine, in_process_status

    ok, reason = in_process_status()
    if not ok:
        pytest.skip(f"geomreg engine {reason}")
    try:
        from geomreg.api import register  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"geomreg.register is not there yet: {exc}")
    import geomreg

    return Engine(kind="in-process", version=str(geomreg.__version__))


@pytest.fixture()
def isolated_settings():
    """Plugin settings restored after the test (the tests change the engine setting)."""
    from geomreg_qgis.toolbelt.settings import load_settings, save_settings

    before = load_settings()
    yield
    save_settings(before)


# --- real texture and GeoTIFFs ------------------------------------------------------------------


@pytest.fixture(scope="session")
def texture() -> "np.ndarray":
    """A real optical image (grey levels 0..255, float32, at least 512 x 512).

    The bundled sample scene (USGS Landsat-8, public domain) when geomreg ships it, else a training
    image from ../shared.
    """
    sample = REPO / "geomreg" / "data" / "sample" / "reference_landsat8_rgb.tif"
    if sample.exists():
        data = gdal.Open(str(sample)).ReadAsArray().astype(np.float32)
    else:
        data = _shared_texture()
    if data.ndim == 3:
        data = 0.299 * data[0] + 0.587 * data[1] + 0.114 * data[2]
    lo, hi = np.percentile(data, [1, 99])
    return (np.clip((data - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.float32)


def _shared_texture() -> "np.ndarray":
    manifest = SHARED_TRAIN / "MANIFEST.csv"
    if not manifest.exists():
        pytest.skip(f"no bundled sample scene and no {manifest}: no real texture to build scenes from")
    with open(manifest, newline="", encoding="utf-8") as fh:
        rows = [r for r in csv.DictReader(fh) if r["modality"] == "opt-opt" and r["width"] == r["height"] == "512"]
    if not rows:
        pytest.skip("no 512 x 512 opt-opt pair in the training manifest")
    return gdal.Open(str(SHARED_TRAIN / rows[0]["ref_path"])).ReadAsArray().astype(np.float32)


def write_geotiff(
    path: Path,
    data: "np.ndarray",
    origin: tuple[float, float],
    *,
    pixel: float = PIXEL,
    epsg: int | None = UTM33N,
    nodata: float | None = None,
) -> Path:
    """A north-up single-band GeoTIFF (uint8) with its top-left corner at `origin`."""
    rows, cols = data.shape
    ds = gdal.GetDriverByName("GTiff").Create(str(path), cols, rows, 1, gdal.GDT_Byte, ["TILED=YES", "COMPRESS=DEFLATE"])
    ds.SetGeoTransform((origin[0], pixel, 0.0, origin[1], 0.0, -pixel))
    if epsg is not None:
        srs = osr.SpatialReference()
        srs.ImportFromEPSG(epsg)
        ds.SetProjection(srs.ExportToWkt())
    band = ds.GetRasterBand(1)
    if nodata is not None:
        band.SetNoDataValue(nodata)
    band.WriteArray(np.clip(np.round(data), 0, 255).astype(np.uint8))
    ds.FlushCache()
    ds = None
    return path


@dataclass(frozen=True)
class ScenePair:
    reference: Path
    moving: Path
    shift_px: tuple[float, float]  # error of the moving georeference, (east, south) in reference pixels
    size: int


# Where the moving crop starts in the texture, and the error of its declared georeference (pixels).
CROP = (12, 20)  # (x, y)
GEOREF_ERROR_PX = (3.7, 2.3)  # (east, south)


def make_pair(folder: Path, texture: "np.ndarray", *, size: int = 448) -> ScenePair:
    """Reference = texture[0:size, 0:size]; moving = a crop offset by CROP whose georeference is wrong by
    GEOREF_ERROR_PX: registration must move it back by that error."""
    folder.mkdir(parents=True, exist_ok=True)
    cx, cy = CROP
    ex, ey = GEOREF_ERROR_PX
    ref = write_geotiff(folder / "reference.tif", texture[:size, :size], ORIGIN)
    true_origin = (ORIGIN[0] + cx * PIXEL, ORIGIN[1] - cy * PIXEL)
    declared = (true_origin[0] + ex * PIXEL, true_origin[1] - ey * PIXEL)
    mov = write_geotiff(folder / "moving.tif", texture[cy:cy + size, cx:cx + size], declared)
    return ScenePair(ref, mov, GEOREF_ERROR_PX, size)


def shift_error_px(report: dict, pair: ScenePair) -> float:
    """How far (reference pixels) the correction a registration report gives at the overlap's centre lies from the
    pair's known georeferencing error (moving map -> true map: minus the error east, plus it north)."""
    ex, ey = pair.shift_px
    dx, dy = report["transform"]["shift_at_centre_map"]
    return float(np.hypot(dx + ex * PIXEL, dy - ey * PIXEL) / PIXEL)


def assert_network_matcher(report: dict) -> None:
    """The registration ran the packaged RegNetMamba-2 network (whatever the default calls it), not CFOG."""
    assert report["matcher"].startswith("regnetmamba2"), report["matcher"]


def make_large_pair(folder: Path, texture: "np.ndarray", *, size: int = 2048) -> ScenePair:
    """A scene big enough that registering it takes a while (for cancel tests): the texture mirrored."""
    reps = size // texture.shape[0] + 2
    big = np.pad(texture, ((0, (reps - 1) * texture.shape[0]), (0, (reps - 1) * texture.shape[1])), mode="symmetric")
    return make_pair(folder, big, size=size)


def read_band(path: Path) -> "np.ndarray":
    ds = gdal.Open(str(path))
    return ds.GetRasterBand(1).ReadAsArray().astype(np.float64)


# --- QGIS helpers ---------------------------------------------------------------------------------


def wait_until(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Spins the Qt event loop (task signals, finished()) until `condition` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        QCoreApplication.processEvents()
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.02)


@pytest.fixture()
def plugin(qgis_iface, qgis_new_project, isolated_settings):
    """The plugin as QGIS loads it (classFactory + initGui), with a real Raster menu on the test iface."""
    import geomreg_qgis

    raster_menu = QMenu("&Raster", qgis_iface.mainWindow())
    qgis_iface.rasterMenu = lambda: raster_menu  # the stub interface has no real menus
    qgis_iface.messageBar().clear_messages()
    instance = geomreg_qgis.classFactory(qgis_iface)
    instance.initGui()
    yield instance
    instance.unload()
    wait_until(lambda: not instance.tasks, 60, "the plugin's tasks to stop")
    QgsApplication.taskManager().cancelAll()


def add_raster_layer(path: Path, name: str) -> "QgsRasterLayer":
    layer = QgsRasterLayer(str(path), name, "gdal")
    assert layer.isValid(), path
    QgsProject.instance().addMapLayer(layer)
    return layer


def correlation(a: "np.ndarray", b: "np.ndarray", mask: "np.ndarray") -> float:
    return float(np.corrcoef(a[mask], b[mask])[0, 1])


def naive_correlation(texture: "np.ndarray", pair: ScenePair) -> float:
    """How well the moving scene fits the reference with its wrong georeference (rounded shift)."""
    ex, ey = (int(round(v)) for v in pair.shift_px)
    n = pair.size - 16
    ref = texture[8:8 + n, 8:8 + n]
    wrong = texture[8 - ey:8 - ey + n, 8 - ex:8 - ex + n]
    return float(np.corrcoef(ref.ravel(), wrong.ravel())[0, 1])


def assert_registered_onto_reference(output: Path, pair: ScenePair, texture: "np.ndarray") -> float:
    """The output lies on the reference grid and its pixels now match the reference's."""
    out_ds, ref_ds = gdal.Open(str(output)), gdal.Open(str(pair.reference))
    assert (out_ds.RasterXSize, out_ds.RasterYSize) == (ref_ds.RasterXSize, ref_ds.RasterYSize)
    assert np.allclose(out_ds.GetGeoTransform(), ref_ds.GetGeoTransform())
    out, ref = read_band(output), read_band(pair.reference)
    valid = np.zeros_like(out, dtype=bool)
    valid[16:-16, 16:-16] = True  # away from the borders that the moving scene does not cover
    nodata = out_ds.GetRasterBand(1).GetNoDataValue()
    if nodata is not None:
        valid &= out != nodata
    assert valid.mean() > 0.5
    registered = correlation(out, ref, valid)
    assert registered > 0.95, registered
    assert registered > naive_correlation(texture, pair) + 0.05
    return registered


@pytest.fixture()
def full_disk(tmp_path):
    """A folder on a 600 KB tmpfs filled to the last byte (a full disk, for real); needs root, as CI runs.
    Unmounted in teardown whatever the test did."""
    import errno
    import subprocess

    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (a disk that fills up) needs root; CI runs the tests as root")
    d = tmp_path / "full"
    d.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=600k", "tmpfs", str(d)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip()}")
    try:
        filler = d / "filler.bin"
        with open(filler, "ab", buffering=0) as fh:
            for size in (65536, 512):
                try:
                    while True:
                        fh.write(b"\0" * size)
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
        yield d
    finally:
        if subprocess.run(["umount", str(d)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(d)], capture_output=True)
