"""Fixtures of the evaluation tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from .synth import two_pair_dataset


@pytest.fixture
def tiny_dataset(tmp_path: Path) -> Path:
    return two_pair_dataset(tmp_path / "data")
