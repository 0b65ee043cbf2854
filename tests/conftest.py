"""Fixtures shared by every test package."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture()
def hidden_weights(tmp_path_factory, monkeypatch) -> Path:
    """An installation without packaged RegNetMamba-2 weights: the packaged-weights location points to an empty
    folder, in this process and (through GEOMREG_WEIGHTS_DIR) in the processes it starts (Dask workers, the CLI)."""
    from geomreg.matching import weights as W
    from geomreg.train import trainer

    empty = tmp_path_factory.mktemp("no_weights")
    monkeypatch.setenv(W.WEIGHTS_DIR_ENV, str(empty))
    monkeypatch.setattr(W, "PACKAGED_DIR", empty)
    monkeypatch.setattr(W, "PACKAGED_WEIGHTS", empty / W.PACKAGED_WEIGHTS.name)
    monkeypatch.setattr(W, "PACKAGED_CARD", empty / W.PACKAGED_CARD.name)
    monkeypatch.setattr(trainer, "PACKAGED_WEIGHTS", empty / W.PACKAGED_WEIGHTS.name)
    assert W.packaged_card() is None
    return empty


@pytest.fixture(scope="session")
def default_matcher_name() -> str:
    """The name a registration reports for the default matcher ("auto" with the packaged weights). The shipped
    weights are validated, so the default must be the network, never the CFOG fallback."""
    from geomreg.matching.api import auto_matcher_name, get_matcher

    chosen, why = auto_matcher_name()
    assert chosen != "cfog", f"'auto' falls back to CFOG with the shipped weights: {why}"
    return get_matcher("auto", device="cpu").name
