"""The real QGIS desktop (under Xvfb) loads the plugin from a profile: Raster menu, toolbar, Processing."""

from __future__ import annotations

import shutil
import sys

import pytest
from conftest import QGIS_PLUGIN_DIR

sys.path.insert(0, str(QGIS_PLUGIN_DIR / "scripts"))

from desktop import run_qgis  # noqa: E402

from geomreg_qgis.plugin import ACTION_TEXT  # noqa: E402


@pytest.mark.desktop
def test_qgis_desktop_loads_the_plugin():
    if not (shutil.which("xvfb-run") and shutil.which("qgis")):
        pytest.skip("needs xvfb-run and the qgis desktop")
    report = run_qgis("check", engine_python=sys.executable, env_extra={}, timeout=240)
    assert report["errors"] == []
    assert report["plugin_loaded"] is True
    assert ACTION_TEXT in report["raster_menu"]
    assert report["toolbar_actions"] == [ACTION_TEXT]
    assert report["toolbar_visible"] is True
    assert report["algorithm"] is True
