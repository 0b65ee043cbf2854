"""The installable zip holds the plugin folder as QGIS expects it, and nothing else."""

from __future__ import annotations

import sys
import zipfile

from conftest import QGIS_PLUGIN_DIR

sys.path.insert(0, str(QGIS_PLUGIN_DIR))

import build_zip  # noqa: E402


def test_zip_holds_the_plugin_folder(tmp_path):
    target = build_zip.build(tmp_path)
    assert target.name == f"geomreg_qgis-{build_zip.plugin_version()}.zip"
    names = zipfile.ZipFile(target).namelist()
    assert all(name.startswith("geomreg_qgis/") for name in names)
    for required in ("__init__.py", "LICENSE", "metadata.txt", "icon.png", "icon.svg", "plugin.py", "processing/coregister.py"):
        assert f"geomreg_qgis/{required}" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    assert not list(tmp_path.glob("*.partial"))
