"""The "geomreg" Processing provider."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..icon import icon_path
from .coregister import CoregisterRasterAlgorithm


class GeomregProvider(QgsProcessingProvider):
    def loadAlgorithms(self) -> None:  # noqa: N802 (Qt naming)
        self.addAlgorithm(CoregisterRasterAlgorithm())

    def id(self) -> str:
        return "geomreg"

    def name(self) -> str:
        return "geomreg"

    def longName(self) -> str:  # noqa: N802
        return "geomreg (RegNetMamba-2 co-registration)"

    def icon(self) -> QIcon:
        return QIcon(icon_path())

    # The engine writes GeoTIFF rasters and GeoPackage tie points: offer only those.
    def supportedOutputRasterLayerExtensions(self) -> list[str]:  # noqa: N802
        return ["tif"]

    def supportedOutputVectorLayerExtensions(self) -> list[str]:  # noqa: N802
        return ["gpkg"]

    def defaultVectorFileExtension(self, hasGeometry: bool = True) -> str:  # noqa: N802, N803
        return "gpkg"

    def defaultRasterFileExtension(self) -> str:  # noqa: N802
        return "tif"
