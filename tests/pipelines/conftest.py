"""Fixtures of the batch pipeline tests: small georeferenced scene pairs (built with tests/geo/scenes.py from the
bundled Landsat-8 sample), their sequential `geomreg register` outputs, and a real multi-process Dask cluster
on 127.0.0.1 (a `dask scheduler` and two `dask worker` processes) that tests may kill workers of."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import rasterio

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # tests/geo/scenes.py is imported as tests.geo.scenes

from batch_helpers import N_PAIRS, DaskProcesses, Pair, register_sequentially  # noqa: E402
from tests.geo.scenes import Texture, moving_scene, reference_scene, shift, write_raster  # noqa: E402

from geomreg.geo.io import Grid  # noqa: E402
from geomreg.geo.sample import sample_pair  # noqa: E402


@pytest.fixture(scope="session")
def texture() -> Texture:
    with rasterio.open(sample_pair().reference) as ds:
        return Texture(ds.read(1).astype(np.float64), Grid.of_dataset(ds))


@pytest.fixture(scope="session")
def scene_pairs(tmp_path_factory, texture) -> list[Pair]:
    """Four pairs cut from different parts of the texture, each with its own known offset."""
    d = tmp_path_factory.mktemp("scenes")
    pairs = []
    for i, margin in enumerate((64, 96, 128, 160)[:N_PAIRS]):
        ref, g = reference_scene(d, texture, margin=margin, name=f"ref{i}.tif")
        mov = moving_scene(d, texture, g, shift(-(1.3 + i) * 30.0, (0.7 + 0.5 * i) * 30.0), name=f"mov{i}.tif")
        pairs.append(Pair(f"mov{i}", ref, mov))
    return pairs


@pytest.fixture(scope="session")
def bad_inputs(tmp_path_factory, scene_pairs) -> dict[str, Path]:
    """An unreadable 'raster' and a moving scene 60 km away from reference 0 (no overlap)."""
    d = tmp_path_factory.mktemp("bad")
    broken = d / "broken.tif"
    broken.write_text("this is not a raster\n")
    with rasterio.open(scene_pairs[0].reference) as ds:
        g = Grid.of_dataset(ds)
        data = ds.read(1)
    t = list(g.transform)
    t[2] += 60_000.0
    far = write_raster(d / "far_away.tif", data, Grid(g.crs, tuple(t), g.width, g.height))
    return {"broken": broken, "far": far}


@pytest.fixture(scope="session")
def sequential(tmp_path_factory, scene_pairs) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("sequential")
    return {p.name: register_sequentially(p, d) for p in scene_pairs}


@pytest.fixture(scope="module")
def dask_processes(tmp_path_factory):
    procs = DaskProcesses(tmp_path_factory.mktemp("dask"))
    try:
        procs.start_scheduler()
        procs.ensure_workers(2)
        yield procs
    finally:
        procs.stop()

