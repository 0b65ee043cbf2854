"""Headless use: `qgis_process.bin run geomreg:coregister` (Debian's `qgis_process` wrapper is broken)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from conftest import QGIS_PLUGIN_DIR, assert_registered_onto_reference, make_pair


@pytest.mark.engine
def test_qgis_process_runs_the_algorithm(subprocess_engine, texture, tmp_path):
    binary = shutil.which("qgis_process.bin")
    if binary is None:
        pytest.skip("qgis_process.bin not installed")
    plugins = tmp_path / "config" / "profiles" / "default" / "python" / "plugins"
    shutil.copytree(QGIS_PLUGIN_DIR / "geomreg_qgis", plugins / "geomreg_qgis", ignore=shutil.ignore_patterns("__pycache__"))
    env = dict(os.environ, QGIS_CUSTOM_CONFIG_PATH=str(tmp_path / "config"), QT_QPA_PLATFORM="offscreen")
    enable = subprocess.run([binary, "plugins", "enable", "geomreg_qgis"], env=env, capture_output=True, text=True, timeout=120)
    assert enable.returncode == 0, enable.stderr

    pair = make_pair(tmp_path / "in", texture)
    out = tmp_path / "out" / "registered.tif"
    out.parent.mkdir()
    done = subprocess.run(
        [binary, "run", "geomreg:coregister", "--", f"REFERENCE={pair.reference}", f"MOVING={pair.moving}",
         "MATCHER=1", "TRANSFORM=1", "DEVICE=1", f"ENGINE_PYTHON={subprocess_engine.python}", f"OUTPUT={out}",
         f"TIE_POINTS={out.parent / 'tie_points.gpkg'}"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "STATUS:\tregistered" in done.stdout
    assert (out.parent / "tie_points.gpkg").exists()
    assert_registered_onto_reference(out, pair, texture)
