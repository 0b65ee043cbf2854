"""Run by the real QGIS desktop (`qgis --code inside_qgis.py`), started by desktop.py under Xvfb.

Checks that QGIS loaded the plugin (Raster menu entry, toolbar, Processing algorithm) and, in
"screenshots" mode, opens the dialog, runs a registration and saves screenshots. Writes what it saw
as JSON to $GEOMREG_DESKTOP_RESULT, then quits QGIS.
"""

import json
import os
import time
import traceback

from qgis.core import Qgis, QgsApplication, QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QApplication, QToolBar
from qgis.utils import iface, plugins

RESULT = os.environ["GEOMREG_DESKTOP_RESULT"]
MODE = os.environ.get("GEOMREG_DESKTOP_MODE", "check")
SHOTS = os.environ.get("GEOMREG_DESKTOP_SHOTS", "")
REFERENCE = os.environ.get("GEOMREG_DESKTOP_REFERENCE", "")
MOVING = os.environ.get("GEOMREG_DESKTOP_MOVING", "")
OUTPUT = os.environ.get("GEOMREG_DESKTOP_OUTPUT", "")
MATCHER = os.environ.get("GEOMREG_DESKTOP_MATCHER", "cfog")
TASK_TIMEOUT = float(os.environ.get("GEOMREG_DESKTOP_TIMEOUT", "400"))
SCREEN = tuple(int(v) for v in os.environ.get("GEOMREG_DESKTOP_SCREEN", "1440x900").split("x")[:2])

state = {"mode": MODE, "errors": []}


def save_state():
    with open(RESULT, "w", encoding="utf-8") as fh:
        json.dump(state, fh, indent=2)


def quit_qgis():
    save_state()
    QgsProject.instance().setDirty(False)  # no "save the project?" question
    QTimer.singleShot(200, iface.actionExit().trigger)
    QTimer.singleShot(15000, lambda: os._exit(0))  # if QGIS hangs while closing


def guarded(step):
    def run():
        try:
            step()
        except Exception:  # noqa: BLE001 (reported in the JSON, the driver fails on it)
            state["errors"].append(traceback.format_exc())
            quit_qgis()
    return run


def settle(seconds):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        QApplication.processEvents()
        time.sleep(0.05)


@guarded
def check():
    plugin = plugins.get("geomreg_qgis")
    state["qgis_version"] = Qgis.QGIS_VERSION
    state["plugin_loaded"] = plugin is not None
    state["raster_menu"] = [a.text() for a in iface.rasterMenu().actions() if a.text()]
    toolbar = iface.mainWindow().findChild(QToolBar, "geomregToolbar")
    state["toolbar_actions"] = [a.text() for a in toolbar.actions()] if toolbar is not None else None
    state["toolbar_visible"] = bool(toolbar is not None and toolbar.isVisible())
    state["algorithm"] = QgsApplication.processingRegistry().algorithmById("geomreg:coregister") is not None
    if MODE == "screenshots" and plugin is not None:
        QTimer.singleShot(100, guarded(lambda: screenshot_dialog(plugin)))
    else:
        quit_qgis()


def add_layer(path, name):
    layer = QgsRasterLayer(path, name, "gdal")
    if not layer.isValid():
        raise RuntimeError(f"cannot load {path}")
    QgsProject.instance().addMapLayer(layer)
    return layer


def screenshot_dialog(plugin):
    ref = add_layer(REFERENCE, "reference")
    mov = add_layer(MOVING, "moving")
    iface.mapCanvas().zoomToFullExtent()
    dialog = plugin.show_dialog()
    dialog.reference.set_layer(ref)
    dialog.moving.set_layer(mov)
    dialog.matcher.setCurrentIndex(dialog.matcher.findData(MATCHER))
    dialog.output.setFilePath(OUTPUT)
    dialog.adjustSize()
    settle(1.0)
    dialog.grab().save(os.path.join(SHOTS, "qgis_dialog.png"))
    state["dialog_screenshot"] = True
    state["started"] = dialog.run()
    state["task_started_at"] = time.monotonic()
    QTimer.singleShot(500, guarded(lambda: wait_for_task(plugin)))


def wait_for_task(plugin):
    if plugin.tasks and time.monotonic() - state["task_started_at"] < TASK_TIMEOUT:
        QTimer.singleShot(500, guarded(lambda: wait_for_task(plugin)))
        return
    state["task_seconds"] = round(time.monotonic() - state["task_started_at"], 1)
    state["messages"] = [w.text() for w in iface.messageBar().items()]
    root = QgsProject.instance().layerTreeRoot()
    for layer in QgsProject.instance().mapLayersByName("moving"):  # show the registered result over the reference
        root.findLayer(layer.id()).setItemVisibilityChecked(False)
    for layer in QgsProject.instance().mapLayers().values():
        if layer.name().endswith("_registered") and hasattr(layer, "renderer"):
            layer.renderer().setOpacity(0.6)  # the reference shows through: alignment can be judged
    # The task manager's own "Task complete" notice would hide the plugin's RMSE message.
    bar = iface.messageBar()
    for item in list(bar.items()):
        if item.text() != state["messages"][-1]:
            bar.popWidget(item)
    iface.mapCanvas().zoomToFullExtent()
    iface.mapCanvas().refreshAllLayers()
    settle(3.0)
    iface.mainWindow().grab().save(os.path.join(SHOTS, "qgis_result.png"))
    state["result_screenshot"] = True
    state["layers"] = [layer.name() for layer in QgsProject.instance().mapLayers().values()]
    quit_qgis()


# QGIS runs this file while starting: wait until its main window and plugins are up.
iface.mainWindow().setGeometry(0, 0, *SCREEN)  # no window manager under Xvfb: size the window ourselves
QTimer.singleShot(3000, check)
