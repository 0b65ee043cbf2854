"""Processing algorithm "Co-register raster": the CLI's `geomreg register`, for the toolbox, batch and models."""

from __future__ import annotations

import os
from typing import Any

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingOutputNumber,
    QgsProcessingOutputString,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
    QgsProcessingParameterVectorDestination,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QIcon

from ..icon import icon_path
from ..toolbelt.engine import EngineNotFound, resolve_engine
from ..toolbelt.layers import style_by_residual
from ..toolbelt.registration import run_registration
from ..toolbelt.request import (
    DEVICES,
    MATCHER_LABELS,
    MATCHERS,
    SHIFT_UNITS,
    TILE_SIZE_RANGE,
    TRANSFORM_LABELS,
    TRANSFORMS,
    WRITE_MODE_LABELS,
    WRITE_MODES,
    RegistrationRequest,
    validate_request,
)
from ..toolbelt.settings import load_settings


class TiePointsStyler(QgsProcessingLayerPostProcessorInterface):
    """Styles the tie-point layer by residual once Processing has loaded it."""

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802, ARG002 (QGIS signature)
        if isinstance(layer, QgsVectorLayer):
            style_by_residual(layer)


# Processing keeps only a raw pointer to a post-processor: a module-level reference keeps it alive.
_STYLER = TiePointsStyler()


class CoregisterRasterAlgorithm(QgsProcessingAlgorithm):
    REFERENCE = "REFERENCE"
    MOVING = "MOVING"
    TRANSFORM = "TRANSFORM"
    MATCHER = "MATCHER"
    TILE_SIZE = "TILE_SIZE"
    MAX_SHIFT = "MAX_SHIFT"
    MAX_SHIFT_UNIT = "MAX_SHIFT_UNIT"
    DEVICE = "DEVICE"
    OVERLAP = "OVERLAP"
    REF_BAND = "REF_BAND"
    MOV_BAND = "MOV_BAND"
    RESOLUTION = "RESOLUTION"
    PIXEL_MODE = "PIXEL_MODE"
    WRITE_MODE = "WRITE_MODE"
    CHECKPOINT = "CHECKPOINT"
    ENGINE_PYTHON = "ENGINE_PYTHON"
    OUTPUT = "OUTPUT"
    TIE_POINTS = "TIE_POINTS"
    REPORT = "REPORT"
    RMSE_PX = "RMSE_PX"
    RMSE_MAP = "RMSE_MAP"
    N_TIE_POINTS = "N_TIE_POINTS"
    STATUS = "STATUS"

    def name(self) -> str:
        return "coregister"

    def displayName(self) -> str:  # noqa: N802
        return "Co-register raster"

    def group(self) -> str:
        return ""

    def groupId(self) -> str:  # noqa: N802
        return ""

    def icon(self) -> QIcon:
        return QIcon(icon_path())

    def shortHelpString(self) -> str:  # noqa: N802
        return (
            "Co-registers a moving raster onto a reference raster (optical, SAR, infrared, NIR...) with "
            "geomreg: tie points are matched tile by tile (RegNetMamba-2, or the fast CFOG matcher), fused "
            "into a robust transform, and the moving raster is resampled onto the reference grid.<br><br>"
            "<b>Outputs</b>: the registered raster (GeoTIFF), the tie points (GeoPackage, with residuals) and a "
            "JSON report; the RMSE of the fit in pixels and map units.<br><br>"
            "Tile size and maximum shift at 0 use the engine's defaults. The engine runs inside QGIS when "
            "geomreg is installed there, otherwise in the Python environment set in the plugin dialog, the "
            "'Python with geomreg' parameter or the GEOMREG_PYTHON variable."
        )

    def createInstance(self) -> "CoregisterRasterAlgorithm":  # noqa: N802
        return CoregisterRasterAlgorithm()

    def initAlgorithm(self, config: dict | None = None) -> None:  # noqa: N802, ARG002
        settings = load_settings()
        self.addParameter(QgsProcessingParameterRasterLayer(self.REFERENCE, "Reference raster"))
        self.addParameter(QgsProcessingParameterRasterLayer(self.MOVING, "Moving raster"))
        self.addParameter(
            QgsProcessingParameterEnum(
                self.TRANSFORM, "Transform", options=[TRANSFORM_LABELS[t] for t in TRANSFORMS],
                defaultValue=_index(TRANSFORMS, settings.transform),
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                self.MATCHER, "Matcher", options=[MATCHER_LABELS[m] for m in MATCHERS],
                defaultValue=_index(MATCHERS, settings.matcher),
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.TILE_SIZE, "Tile size (px, 0 = engine default)", QgsProcessingParameterNumber.Integer,
                defaultValue=0, minValue=0, maxValue=TILE_SIZE_RANGE[1],
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.MAX_SHIFT, "Maximum shift (0 = engine default)",
                QgsProcessingParameterNumber.Double, defaultValue=0.0, minValue=0.0,
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                self.MAX_SHIFT_UNIT, "Maximum shift unit", options=["pixels", "map units (e.g. metres)"], defaultValue=0
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum(self.DEVICE, "Device", options=list(DEVICES), defaultValue=_index(DEVICES, settings.device))
        )
        advanced = [
            QgsProcessingParameterNumber(
                self.OVERLAP, "Tile overlap (px, -1 = engine default)", QgsProcessingParameterNumber.Integer,
                defaultValue=-1, minValue=-1, maxValue=TILE_SIZE_RANGE[1] // 2,
            ),
            QgsProcessingParameterString(self.REF_BAND, "Reference band (auto, luminance, mean or a number)", "auto"),
            QgsProcessingParameterString(self.MOV_BAND, "Moving band (auto, luminance, mean or a number)", "auto"),
            QgsProcessingParameterNumber(
                self.RESOLUTION, "Working resolution (reference CRS units, 0 = coarser scene)",
                QgsProcessingParameterNumber.Double, defaultValue=0.0, minValue=0.0,
            ),
            QgsProcessingParameterBoolean(self.PIXEL_MODE, "Pixel mode (rasters without a CRS)", False),
            QgsProcessingParameterEnum(
                self.WRITE_MODE, "Output", options=[WRITE_MODE_LABELS[m] for m in WRITE_MODES], defaultValue=0
            ),
            QgsProcessingParameterFile(
                self.CHECKPOINT, "RegNetMamba-2 checkpoint (empty: packaged weights)", optional=True,
                fileFilter="PyTorch checkpoint (*.pt *.pth);;All files (*)",
            ),
        ]
        for parameter in advanced:
            parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(parameter)
        python = QgsProcessingParameterFile(
            # "(*)": Python executables have no extension, which the default "(*.*)" filter refuses.
            self.ENGINE_PYTHON, "Python with geomreg (empty: the plugin setting)", optional=True,
            fileFilter="All files (*)",
        )
        python.setFlags(python.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        self.addParameter(python)
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, "Registered raster"))
        self.addParameter(
            QgsProcessingParameterVectorDestination(
                self.TIE_POINTS, "Tie points", QgsProcessing.TypeVectorPoint, optional=True, createByDefault=True
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.REPORT, "Report", fileFilter="JSON (*.json)", optional=True, createByDefault=False
            )
        )
        self.addOutput(QgsProcessingOutputNumber(self.RMSE_PX, "RMSE (pixels)"))
        self.addOutput(QgsProcessingOutputNumber(self.RMSE_MAP, "RMSE (map units)"))
        self.addOutput(QgsProcessingOutputNumber(self.N_TIE_POINTS, "Tie points used"))
        self.addOutput(QgsProcessingOutputString(self.STATUS, "Status"))

    def processAlgorithm(  # noqa: N802
        self, parameters: dict[str, Any], context: QgsProcessingContext, feedback: QgsProcessingFeedback
    ) -> dict[str, Any]:
        request = RegistrationRequest(
            reference=self._raster_source(parameters, self.REFERENCE, context),
            moving=self._raster_source(parameters, self.MOVING, context),
            output=self.parameterAsOutputLayer(parameters, self.OUTPUT, context),
            transform=TRANSFORMS[self.parameterAsEnum(parameters, self.TRANSFORM, context)],
            matcher=MATCHERS[self.parameterAsEnum(parameters, self.MATCHER, context)],
            tile_size=self.parameterAsInt(parameters, self.TILE_SIZE, context),
            max_shift=self.parameterAsDouble(parameters, self.MAX_SHIFT, context),
            max_shift_unit=SHIFT_UNITS[self.parameterAsEnum(parameters, self.MAX_SHIFT_UNIT, context)],
            device=DEVICES[self.parameterAsEnum(parameters, self.DEVICE, context)],
            overwrite=True,  # Processing's convention: a chosen destination is replaced
            overlap=self.parameterAsInt(parameters, self.OVERLAP, context),
            ref_band=(self.parameterAsString(parameters, self.REF_BAND, context) or "auto").strip().lower(),
            mov_band=(self.parameterAsString(parameters, self.MOV_BAND, context) or "auto").strip().lower(),
            resolution=self.parameterAsDouble(parameters, self.RESOLUTION, context),
            pixel_mode=self.parameterAsBoolean(parameters, self.PIXEL_MODE, context),
            write_mode=WRITE_MODES[self.parameterAsEnum(parameters, self.WRITE_MODE, context)],
            checkpoint=self.parameterAsFile(parameters, self.CHECKPOINT, context) or "",
        )
        tie_points = self.parameterAsOutputLayer(parameters, self.TIE_POINTS, context) or ""
        report = self.parameterAsFileOutput(parameters, self.REPORT, context) or ""
        # Temporary outputs live in folders of Processing's temporary directory that may not exist yet.
        for path in (request.output, tie_points, report):
            if path and os.path.isabs(path):
                os.makedirs(os.path.dirname(path), exist_ok=True)
        problems = validate_request(request)
        if problems:
            raise QgsProcessingException("\n".join(p.message for p in problems))

        settings = load_settings()
        python = self.parameterAsFile(parameters, self.ENGINE_PYTHON, context)
        if python:
            settings = settings.with_changes(python_path=python, engine_mode="subprocess")
        try:
            engine = resolve_engine(settings)
        except EngineNotFound as exc:
            raise QgsProcessingException(str(exc)) from exc
        feedback.pushInfo(f"Engine: {engine.describe()}")

        outcome = run_registration(
            request,
            engine,
            progress=lambda fraction, stage: feedback.setProgress(100.0 * fraction),
            is_canceled=feedback.isCanceled,
            log=feedback.pushInfo,
            tie_points=tie_points,
            report=report,
        )
        if outcome.status == "canceled":
            feedback.reportError(outcome.message)
            return {self.STATUS: "canceled"}
        if not outcome.ok:
            raise QgsProcessingException(outcome.message)
        feedback.pushInfo(outcome.summary())
        if outcome.tie_points and context.willLoadLayerOnCompletion(outcome.tie_points):
            context.layerToLoadOnCompletionDetails(outcome.tie_points).setPostProcessor(_STYLER)
        return {
            self.OUTPUT: outcome.output,
            self.TIE_POINTS: outcome.tie_points or None,
            self.REPORT: outcome.report_path or None,
            self.RMSE_PX: outcome.rmse_px,
            self.RMSE_MAP: outcome.rmse_map,
            self.N_TIE_POINTS: outcome.n_tie_points,
            self.STATUS: outcome.status,
        }

    def _raster_source(self, parameters: dict[str, Any], name: str, context: QgsProcessingContext) -> str:
        layer = self.parameterAsRasterLayer(parameters, name, context)
        if layer is None:
            raise QgsProcessingException(f"{name.capitalize()} raster '{parameters.get(name)}' cannot be read as a raster.")
        if layer.providerType() != "gdal":
            raise QgsProcessingException(
                f"{name.capitalize()} layer '{layer.name()}' is a {layer.providerType()} layer, not a raster file."
            )
        return layer.source()


def _index(values: tuple[str, ...], value: str) -> int:
    return values.index(value) if value in values else 0
