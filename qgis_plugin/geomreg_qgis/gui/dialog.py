"""The "Co-register rasters" dialog: inputs, options, engine, and the checks before a run."""

from __future__ import annotations

import os
from pathlib import Path

from qgis.core import Qgis, QgsMapLayerProxyModel, QgsProviderRegistry, QgsRasterLayer
from qgis.gui import QgsCollapsibleGroupBox, QgsFileWidget, QgsMapLayerComboBox, QgsMessageBar
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..toolbelt.engine import Engine, EngineNotFound, resolve_engine
from ..toolbelt.request import (
    BAND_CHOICES,
    DEVICES,
    MATCHER_LABELS,
    MATCHERS,
    TILE_SIZE_RANGE,
    TRANSFORM_LABELS,
    TRANSFORMS,
    WRITE_MODE_LABELS,
    WRITE_MODES,
    InputProblem,
    RegistrationRequest,
    validate_request,
)
from ..toolbelt.settings import ENGINE_MODES, PluginSettings, load_settings, save_settings

TITLE = "Co-register rasters (RegNetMamba-2)"
MESSAGE_SECONDS = 0  # errors stay until dismissed: the user has to read which file is wrong


class RasterSourceWidget(QWidget):
    """A raster layer of the project, or a raster file picked with the "…" button."""

    changed = pyqtSignal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.combo = QgsMapLayerComboBox(self)
        self.combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
        self.combo.setAllowEmptyLayer(True)
        self.combo.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)
        self.browse = QToolButton(self)
        self.browse.setText("…")
        self.browse.setToolTip("Choose a raster file")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.combo)
        layout.addWidget(self.browse)
        self.browse.clicked.connect(self._choose_file)
        self.combo.currentIndexChanged.connect(lambda _i: self.changed.emit())
        self._files: list[str] = []

    def _choose_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a raster", "", QgsProviderRegistry.instance().fileRasterFilters()
        )
        if path:
            self.set_file(path)

    def set_file(self, path: str) -> None:
        if path not in self._files:
            self._files.append(path)
            self.combo.setAdditionalItems(self._files)
        self.combo.setCurrentIndex(self.combo.findText(path))

    def set_layer(self, layer: QgsRasterLayer) -> None:
        self.combo.setLayer(layer)

    def source(self) -> str:
        """The GDAL dataset name of the choice ("" when nothing is chosen)."""
        layer = self.combo.currentLayer()
        if layer is not None:
            return layer.source() if layer.providerType() == "gdal" else f"<{layer.name()}>"
        text = self.combo.currentText().strip()
        return text if text in self._files else ""

    def layer_problem(self, role: str) -> InputProblem | None:
        layer = self.combo.currentLayer()
        if layer is not None and layer.providerType() != "gdal":
            return InputProblem(role, f"Layer '{layer.name()}' is a {layer.providerType()} layer, not a raster file: save it as a GeoTIFF first.")
        return None


class CoregisterDialog(QDialog):
    """Emits `run_requested(request, engine)` once the inputs passed every check."""

    run_requested = pyqtSignal(object, object)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(TITLE)
        self.setMinimumWidth(560)
        self.message_bar = QgsMessageBar(self)
        self.message_bar.setSizePolicy(QSizePolicy.Minimum, QSizePolicy.Fixed)

        self.reference = RasterSourceWidget(self)
        self.moving = RasterSourceWidget(self)
        self.transform = _combo(self, [(TRANSFORM_LABELS[t], t) for t in TRANSFORMS])
        self.matcher = _combo(self, [(MATCHER_LABELS[m], m) for m in MATCHERS])
        self.device = _combo(self, [(d, d) for d in DEVICES])
        self.tile_size = QSpinBox(self)
        self.tile_size.setRange(0, TILE_SIZE_RANGE[1])
        self.tile_size.setSingleStep(64)
        self.tile_size.setSpecialValueText("Engine default")
        self.tile_size.setSuffix(" px")
        self.max_shift = QDoubleSpinBox(self)
        self.max_shift.setRange(0.0, 100000.0)
        self.max_shift.setDecimals(1)
        self.max_shift.setSpecialValueText("Engine default")
        self.max_shift.setToolTip("Largest expected offset between the scenes")
        self.max_shift_unit = _combo(self, [("pixels", "px"), ("map units (e.g. metres)", "map")])
        self.output = QgsFileWidget(self)
        self.output.setStorageMode(QgsFileWidget.SaveFile)
        self.output.setFilter("GeoTIFF (*.tif *.tiff)")
        self.output.setDialogTitle("Registered raster")
        self.overwrite = QCheckBox("Overwrite existing files", self)

        self.overlap = QSpinBox(self)
        self.overlap.setRange(-1, TILE_SIZE_RANGE[1] // 2)
        self.overlap.setValue(-1)
        self.overlap.setSpecialValueText("Engine default")
        self.overlap.setSuffix(" px")
        self.ref_band = _band_combo(self)
        self.mov_band = _band_combo(self)
        self.resolution = QDoubleSpinBox(self)
        self.resolution.setRange(0.0, 1e7)
        self.resolution.setDecimals(3)
        self.resolution.setSpecialValueText("Coarser of the two scenes")
        self.resolution.setToolTip("Working pixel size, in units of the reference CRS")
        self.pixel_mode = QCheckBox("Pixel mode: accept rasters without a CRS (pixel grids compared directly)", self)
        self.write_mode = _combo(self, [(WRITE_MODE_LABELS[m], m) for m in WRITE_MODES])
        self.checkpoint = QgsFileWidget(self)
        self.checkpoint.setStorageMode(QgsFileWidget.GetFile)
        self.checkpoint.setFilter("PyTorch checkpoint (*.pt *.pth);;All files (*)")
        self.checkpoint.setToolTip("A RegNetMamba-2 checkpoint instead of the packaged weights")

        self.engine_mode = _combo(
            self,
            [("Automatic", "auto"), ("Inside QGIS (import geomreg)", "in-process"), ("Python environment (subprocess)", "subprocess")],
        )
        self.python_path = QgsFileWidget(self)
        self.python_path.setStorageMode(QgsFileWidget.GetFile)
        self.python_path.setDialogTitle("Python executable of an environment with geomreg")
        self.check_engine_button = QPushButton("Check engine", self)
        self.engine_status = QLabel("", self)
        self.engine_status.setWordWrap(True)
        self.engine_status.setTextInteractionFlags(Qt.TextSelectableByMouse)

        form = QFormLayout()
        form.addRow("Reference raster", self.reference)
        form.addRow("Moving raster", self.moving)
        form.addRow("Transform", self.transform)
        form.addRow("Matcher", self.matcher)
        form.addRow("Tile size", self.tile_size)
        shift_row = QHBoxLayout()
        shift_row.addWidget(self.max_shift, 1)
        shift_row.addWidget(self.max_shift_unit)
        form.addRow("Maximum shift", shift_row)
        form.addRow("Device", self.device)
        form.addRow("Registered raster", self.output)
        form.addRow("", self.overwrite)

        advanced_box = QgsCollapsibleGroupBox("Advanced", self)
        advanced_form = QFormLayout(advanced_box)
        advanced_form.addRow("Tile overlap", self.overlap)
        advanced_form.addRow("Reference band", self.ref_band)
        advanced_form.addRow("Moving band", self.mov_band)
        advanced_form.addRow("Working resolution", self.resolution)
        advanced_form.addRow("Output", self.write_mode)
        advanced_form.addRow("Checkpoint", self.checkpoint)
        advanced_form.addRow("", self.pixel_mode)
        advanced_box.setCollapsed(True)

        engine_box = QgsCollapsibleGroupBox("Engine", self)
        engine_form = QFormLayout(engine_box)
        engine_form.addRow("Run geomreg", self.engine_mode)
        engine_form.addRow("Python with geomreg", self.python_path)
        row = QHBoxLayout()
        row.addWidget(self.check_engine_button)
        row.addWidget(self.engine_status, 1)
        engine_form.addRow(row)

        self.buttons = QDialogButtonBox(QDialogButtonBox.Close, self)
        self.run_button = self.buttons.addButton("Run", QDialogButtonBox.AcceptRole)
        self.buttons.rejected.connect(self.reject)
        self.run_button.clicked.connect(self.run)
        self.check_engine_button.clicked.connect(lambda: self.check_engine(refresh=True))
        self.moving.changed.connect(self._suggest_output)

        layout = QVBoxLayout(self)
        layout.addWidget(self.message_bar)
        layout.addLayout(form)
        layout.addWidget(advanced_box)
        layout.addWidget(engine_box)
        layout.addStretch(1)
        layout.addWidget(self.buttons)
        self.apply_settings(load_settings())

    # --- settings ---------------------------------------------------------------------------

    def apply_settings(self, settings: PluginSettings) -> None:
        _select(self.transform, settings.transform)
        _select(self.matcher, settings.matcher)
        _select(self.device, settings.device)
        _select(self.engine_mode, settings.engine_mode if settings.engine_mode in ENGINE_MODES else "auto")
        self.python_path.setFilePath(settings.python_path)

    def current_settings(self) -> PluginSettings:
        return PluginSettings(
            engine_mode=self.engine_mode.currentData(),
            python_path=self.python_path.filePath().strip(),
            matcher=self.matcher.currentData(),
            device=self.device.currentData(),
            transform=self.transform.currentData(),
        )

    # --- building and checking the request ----------------------------------------------------

    def _suggest_output(self) -> None:
        source = self.moving.source()
        if source and not self.output.filePath() and os.path.exists(source):
            self.output.setFilePath(str(Path(source).with_name(f"{Path(source).stem}_registered.tif")))

    def build_request(self) -> RegistrationRequest:
        return RegistrationRequest(
            reference=self.reference.source(),
            moving=self.moving.source(),
            output=self.output.filePath().strip(),
            transform=self.transform.currentData(),
            matcher=self.matcher.currentData(),
            tile_size=self.tile_size.value(),
            max_shift=self.max_shift.value(),
            max_shift_unit=self.max_shift_unit.currentData(),
            device=self.device.currentData(),
            overwrite=self.overwrite.isChecked(),
            overlap=self.overlap.value(),
            ref_band=self.ref_band.currentText().strip().lower() or "auto",
            mov_band=self.mov_band.currentText().strip().lower() or "auto",
            resolution=self.resolution.value(),
            pixel_mode=self.pixel_mode.isChecked(),
            write_mode=self.write_mode.currentData(),
            checkpoint=self.checkpoint.filePath().strip(),
        )

    def problems(self, request: RegistrationRequest) -> list[InputProblem]:
        layer_problems = [p for p in (self.reference.layer_problem("reference"), self.moving.layer_problem("moving")) if p]
        if layer_problems:
            return layer_problems
        return validate_request(request)

    def show_error(self, text: str) -> None:
        self.message_bar.pushMessage("geomreg", text, level=Qgis.Critical, duration=MESSAGE_SECONDS)

    def check_engine(self, refresh: bool = False) -> Engine | None:
        QApplication.setOverrideCursor(Qt.WaitCursor)
        try:
            engine = resolve_engine(self.current_settings(), refresh=refresh)
        except EngineNotFound as exc:
            self.engine_status.setText("Not found")
            self.show_error(str(exc))
            return None
        finally:
            QApplication.restoreOverrideCursor()
        self.engine_status.setText(engine.describe())
        return engine

    def run(self) -> bool:
        """Checks everything; on success saves the settings, emits `run_requested` and closes."""
        self.message_bar.clearWidgets()
        request = self.build_request()
        problems = self.problems(request)
        if problems:
            for problem in reversed(problems):  # the bar shows the last pushed on top
                self.show_error(problem.message)
            return False
        save_settings(self.current_settings())
        engine = self.check_engine()
        if engine is None:
            return False
        self.run_requested.emit(request, engine)
        self.accept()
        return True


def _combo(parent: QWidget, items: list[tuple[str, str]]) -> QComboBox:
    combo = QComboBox(parent)
    for label, value in items:
        combo.addItem(label, value)
    return combo


def _band_combo(parent: QWidget) -> QComboBox:
    combo = QComboBox(parent)
    combo.setEditable(True)  # a band number can be typed
    combo.addItems(list(BAND_CHOICES))
    combo.setToolTip("auto, luminance (RGB), mean, or a band number (1 = first band)")
    return combo


def _select(combo: QComboBox, value: str) -> None:
    index = combo.findData(value)
    if index >= 0:
        combo.setCurrentIndex(index)
