"""The plugin object: toolbar button, Raster menu entry, Processing provider, and running tasks."""

from __future__ import annotations

from pathlib import Path

from qgis.core import Qgis, QgsApplication, QgsProject
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction, QToolBar

from .gui.dialog import CoregisterDialog
from .icon import icon_path
from .processing.provider import GeomregProvider
from .tasks.register_task import RegistrationTask
from .toolbelt.engine import Engine
from .toolbelt.layers import add_outputs_to_project
from .toolbelt.log import log_error, log_info
from .toolbelt.registration import RegistrationOutcome
from .toolbelt.request import RegistrationRequest

ACTION_TEXT = "Co-register rasters (RegNetMamba-2)…"
TOOLBAR_NAME = "geomreg"
MESSAGE_TITLE = "geomreg"
SUCCESS_SECONDS = 15


class GeomregPlugin:
    def __init__(self, iface) -> None:
        self.iface = iface
        self.action: QAction | None = None
        self.toolbar: QToolBar | None = None
        self.provider: GeomregProvider | None = None
        self.dialog: CoregisterDialog | None = None
        # QgsTaskManager does not own Python references: without these the tasks would be collected.
        self.tasks: list[RegistrationTask] = []

    # --- QGIS plugin interface ------------------------------------------------------------------

    def initProcessing(self) -> None:  # noqa: N802 (QGIS calls it by this name)
        self.provider = GeomregProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:  # noqa: N802
        self.initProcessing()
        self.action = QAction(QIcon(icon_path()), ACTION_TEXT, self.iface.mainWindow())
        self.action.setObjectName("geomregCoregisterAction")
        self.action.setToolTip("Co-register a moving raster onto a reference raster with geomreg")
        self.action.triggered.connect(self.show_dialog)
        self.toolbar = self.iface.addToolBar(TOOLBAR_NAME)
        self.toolbar.setObjectName("geomregToolbar")
        self.toolbar.addAction(self.action)
        self.iface.rasterMenu().addAction(self.action)

    def unload(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.action is not None:
            self.iface.rasterMenu().removeAction(self.action)
            if self.toolbar is not None:
                self.toolbar.removeAction(self.action)
            self.action.deleteLater()
            self.action = None
        if self.toolbar is not None:
            self.toolbar.deleteLater()
            self.toolbar = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        if self.dialog is not None:
            self.dialog.deleteLater()
            self.dialog = None

    # --- the dialog and its runs -----------------------------------------------------------------

    def show_dialog(self) -> CoregisterDialog:
        if self.dialog is None:
            self.dialog = CoregisterDialog(self.iface.mainWindow())
            self.dialog.run_requested.connect(self.start_task)
        self.dialog.show()
        self.dialog.raise_()
        self.dialog.activateWindow()
        return self.dialog

    def start_task(self, request: RegistrationRequest, engine: Engine) -> RegistrationTask:
        title = f"geomreg: {Path(request.moving).stem} onto {Path(request.reference).stem}"
        holder: list[RegistrationTask] = []
        task = RegistrationTask(request, engine, on_done=lambda outcome: self._task_done(holder[0], outcome, title))
        holder.append(task)
        self.tasks.append(task)
        log_info(f"Queued: {task.description()} ({engine.describe()})")
        QgsApplication.taskManager().addTask(task)
        return task

    def _task_done(self, task: RegistrationTask, outcome: RegistrationOutcome, title: str) -> None:
        if task in self.tasks:
            self.tasks.remove(task)
        bar = self.iface.messageBar()
        if outcome.ok:
            raster, points = add_outputs_to_project(outcome.output, outcome.tie_points, title, QgsProject.instance())
            text = outcome.summary()
            if raster is None:
                text += f" (the registered raster '{outcome.output}' could not be loaded)"
            log_info(text + (f" Report: {outcome.report_path}" if outcome.report_path else ""))
            bar.pushMessage(MESSAGE_TITLE, text, level=Qgis.Success, duration=SUCCESS_SECONDS)
        elif outcome.status == "canceled":
            log_info(outcome.message)
            bar.pushMessage(MESSAGE_TITLE, outcome.message, level=Qgis.Info, duration=SUCCESS_SECONDS)
        else:
            log_error(outcome.message)
            bar.pushMessage(MESSAGE_TITLE, outcome.message, level=Qgis.Critical, duration=0)
