"""The plugin loads like QGIS loads it: metadata, classFactory, toolbar, Raster menu, Processing provider."""

from __future__ import annotations

import configparser

from conftest import QGIS_PLUGIN_DIR
from qgis.core import QgsApplication

from geomreg_qgis.gui.dialog import CoregisterDialog
from geomreg_qgis.plugin import ACTION_TEXT


def test_metadata_is_complete():
    parser = configparser.ConfigParser()
    parser.read(QGIS_PLUGIN_DIR / "geomreg_qgis" / "metadata.txt", encoding="utf-8")
    general = parser["general"]
    for key in ("name", "qgisMinimumVersion", "description", "about", "version", "author", "email", "repository"):
        assert general.get(key), key
    assert general["qgisMinimumVersion"] == "3.22"
    assert general["hasProcessingProvider"] == "yes"
    assert (QGIS_PLUGIN_DIR / "geomreg_qgis" / general["icon"]).is_file()


def test_metadata_links_agree_with_pyproject():
    import tomllib

    parser = configparser.ConfigParser()
    parser.read(QGIS_PLUGIN_DIR / "geomreg_qgis" / "metadata.txt", encoding="utf-8")
    general = parser["general"]
    project = tomllib.loads((QGIS_PLUGIN_DIR.parent / "pyproject.toml").read_text())["project"]
    urls = project["urls"]
    assert general["homepage"] == urls["Homepage"]
    assert general["repository"] == urls["Repository"]
    assert general["tracker"] == urls["Issues"]
    assert general["version"] == project["version"] and general["license"] == project["license"]
    assert "example." not in general["email"]  # no placeholder address


def test_toolbar_button_and_raster_menu_entry(plugin, qgis_iface):
    assert ACTION_TEXT == "Co-register rasters (RegNetMamba-2)…"
    assert plugin.action.text() == ACTION_TEXT
    assert not plugin.action.icon().isNull()
    assert plugin.action in plugin.toolbar.actions()
    assert plugin.toolbar.parent() is qgis_iface.mainWindow()
    assert [a.text() for a in qgis_iface.rasterMenu().actions()] == [ACTION_TEXT]


def test_processing_provider_and_algorithm_are_registered(plugin):
    registry = QgsApplication.processingRegistry()
    provider = registry.providerById("geomreg")
    assert provider is not None
    algorithm = registry.algorithmById("geomreg:coregister")
    assert algorithm is not None
    assert algorithm.displayName() == "Co-register raster"
    names = [p.name() for p in algorithm.parameterDefinitions()]
    assert names == [
        "REFERENCE", "MOVING", "TRANSFORM", "MATCHER", "TILE_SIZE", "MAX_SHIFT", "MAX_SHIFT_UNIT", "DEVICE",
        "OVERLAP", "REF_BAND", "MOV_BAND", "RESOLUTION", "PIXEL_MODE", "WRITE_MODE", "CHECKPOINT", "ENGINE_PYTHON",
        "OUTPUT", "TIE_POINTS", "REPORT",
    ]
    assert {o.name() for o in algorithm.outputDefinitions()} >= {"OUTPUT", "TIE_POINTS", "REPORT", "RMSE_PX", "STATUS"}


def test_action_opens_the_dialog(plugin):
    plugin.action.trigger()
    assert isinstance(plugin.dialog, CoregisterDialog)
    assert plugin.dialog.isVisible()
    plugin.dialog.close()


def test_unload_removes_everything(plugin, qgis_iface):
    plugin.unload()
    assert qgis_iface.rasterMenu().actions() == []
    assert QgsApplication.processingRegistry().providerById("geomreg") is None
    assert plugin.action is None and plugin.toolbar is None
    plugin.initGui()  # the fixture unloads again
