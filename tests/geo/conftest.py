"""Fixtures of the geospatial tests (scene builders are in scenes.py)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

from geomreg.geo.io import Grid
from geomreg.geo.sample import sample_pair

from .scenes import Texture


@pytest.fixture(scope="session")
def texture() -> Texture:
    pair = sample_pair()
    with rasterio.open(pair.reference) as ds:
        img = ds.read(1).astype(np.float64)
        return Texture(img, Grid.of_dataset(ds))


@pytest.fixture(scope="session")
def matcher():
    from geomreg.matching.cfog import CFOGMatcher

    return CFOGMatcher()


