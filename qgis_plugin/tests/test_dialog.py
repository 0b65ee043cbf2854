"""The dialog: the project's raster layers, the options, and message-bar errors for bad inputs."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ORIGIN, add_raster_layer, write_geotiff
from qgis.core import Qgis, QgsProject, QgsVectorLayer

from geomreg_qgis.gui.dialog import CoregisterDialog
from geomreg_qgis.toolbelt.settings import PluginSettings, load_settings, save_settings


def _scene(path, value=1.0, epsg=32633):
    data = (np.add.outer(np.arange(64), np.arange(64)) * value) % 255
    return write_geotiff(path, data, ORIGIN, epsg=epsg)


@pytest.fixture()
def dialog(qgis_new_project, isolated_settings):
    d = CoregisterDialog()
    yield d
    d.deleteLater()


def errors(d: CoregisterDialog) -> list[str]:
    return [item.text() for item in d.message_bar.items() if item.level() == Qgis.Critical]


def test_lists_the_projects_raster_layers_only(qgis_new_project, tmp_path, isolated_settings):
    add_raster_layer(_scene(tmp_path / "a.tif"), "optical scene")
    add_raster_layer(_scene(tmp_path / "b.tif", 2.0), "sar scene")
    QgsProject.instance().addMapLayer(QgsVectorLayer("Point?crs=EPSG:32633", "some points", "memory"))
    d = CoregisterDialog()
    listed = {d.reference.combo.itemText(i) for i in range(d.reference.combo.count())}
    assert {"optical scene", "sar scene"} <= listed
    assert "some points" not in listed
    assert {d.moving.combo.itemText(i) for i in range(d.moving.combo.count())} == listed
    d.deleteLater()


def test_builds_the_request_from_layers_and_files(dialog, tmp_path):
    ref_layer = add_raster_layer(_scene(tmp_path / "a.tif"), "optical scene")
    mov = _scene(tmp_path / "b.tif", 2.0)
    dialog.reference.set_layer(ref_layer)
    dialog.moving.set_file(str(mov))
    # A moving file suggests an output beside it.
    assert dialog.output.filePath() == str(tmp_path / "b_registered.tif")
    dialog.matcher.setCurrentIndex(dialog.matcher.findData("cfog"))
    dialog.transform.setCurrentIndex(dialog.transform.findData("affine"))
    dialog.tile_size.setValue(256)
    request = dialog.build_request()
    assert (request.reference, request.moving) == (str(tmp_path / "a.tif"), str(mov))
    assert (request.matcher, request.transform, request.tile_size) == ("cfog", "affine", 256)
    assert dialog.problems(request) == []


def _run_with(dialog, reference, moving, output):
    emitted = []
    dialog.run_requested.connect(lambda request, engine: emitted.append((request, engine)))
    if reference:
        dialog.reference.set_file(str(reference))
    if moving:
        dialog.moving.set_file(str(moving))
    dialog.output.setFilePath(str(output))
    assert dialog.run() is False
    assert emitted == []
    return errors(dialog)


def test_missing_file_shows_a_message_bar_error(dialog, tmp_path):
    missing = tmp_path / "gone.tif"
    assert _run_with(dialog, missing, _scene(tmp_path / "b.tif"), tmp_path / "out.tif") == [
        f"Reference raster '{missing}' does not exist."
    ]


def test_raster_without_crs_shows_a_message_bar_error(dialog, tmp_path):
    no_crs = _scene(tmp_path / "nocrs.tif", epsg=None)
    [message] = _run_with(dialog, _scene(tmp_path / "a.tif"), no_crs, tmp_path / "out.tif")
    assert "nocrs.tif" in message and "no coordinate reference system" in message


def test_output_equal_to_input_shows_a_message_bar_error(dialog, tmp_path):
    ref, mov = _scene(tmp_path / "a.tif"), _scene(tmp_path / "b.tif", 2.0)
    [message] = _run_with(dialog, ref, mov, mov)
    assert str(mov) in message and "moving raster itself" in message


def test_existing_output_needs_overwrite(dialog, tmp_path):
    ref, mov = _scene(tmp_path / "a.tif"), _scene(tmp_path / "b.tif", 2.0)
    (tmp_path / "out.tif").write_bytes(b"previous result")
    [message] = _run_with(dialog, ref, mov, tmp_path / "out.tif")
    assert "already exists" in message
    assert (tmp_path / "out.tif").read_bytes() == b"previous result"


def test_no_engine_shows_how_to_install(dialog, tmp_path):
    ref, mov = _scene(tmp_path / "a.tif"), _scene(tmp_path / "b.tif", 2.0)
    dialog.engine_mode.setCurrentIndex(dialog.engine_mode.findData("subprocess"))
    dialog.python_path.setFilePath(str(tmp_path / "no-env" / "bin" / "python"))
    [message] = _run_with(dialog, ref, mov, tmp_path / "out.tif")
    assert "does not exist or is not executable" in message
    assert "pip install geomreg" in message
    assert dialog.engine_status.text() == "Not found"


def test_settings_are_remembered(dialog, isolated_settings):
    save_settings(PluginSettings(engine_mode="subprocess", python_path="/opt/env/bin/python", matcher="cfog",
                                 device="cpu", transform="poly2"))
    d = CoregisterDialog()
    assert d.current_settings() == load_settings()
    assert d.matcher.currentData() == "cfog" and d.transform.currentData() == "poly2"
    d.deleteLater()
