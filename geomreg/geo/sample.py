"""The bundled sample scene pair (public-domain Landsat-8 and a SIMULATED SAR-like counterpart)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class SamplePair:
    reference: Path
    moving: Path
    truth: dict

    def true_map_to_reference(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """The exact correction the registration should find (see geomreg/data/sample/README.md)."""
        a, b, c, d, e, f = self.truth["moving_to_reference_affine"]
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
        return a * x + b * y + c, d * x + e * y + f


def sample_pair() -> SamplePair:
    root = Path(str(resources.files("geomreg") / "data" / "sample"))
    ref, mov, truth = root / "reference_landsat8_rgb.tif", root / "moving_sar_simulated.tif", root / "truth.json"
    for p in (ref, mov, truth):
        if not p.exists():
            raise FileNotFoundError(f"{p}: bundled sample file missing (reinstall geomreg, or run scripts/make_sample_data.py)")
    return SamplePair(ref, mov, json.loads(truth.read_text()))
