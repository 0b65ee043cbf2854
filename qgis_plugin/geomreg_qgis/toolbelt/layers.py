"""Adding a registration's outputs to the map: the registered raster and the tie points by residual."""

from __future__ import annotations

from pathlib import Path

from qgis.core import (
    QgsClassificationQuantile,
    QgsGradientColorRamp,
    QgsGraduatedSymbolRenderer,
    QgsLayerTreeGroup,
    QgsMarkerSymbol,
    QgsProject,
    QgsRasterLayer,
    QgsStyle,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor

RESIDUAL_CLASSES = 5


def residual_field(layer: QgsVectorLayer) -> str:
    """The residual column to style by: pixels preferred (comparable across scenes), else any residual."""
    names = [f.name() for f in layer.fields()]
    for preferred in ("residual_px", "residual_pix", "residual"):
        if preferred in names:
            return preferred
    for name in names:
        if "resid" in name.lower():
            return name
    return ""


def style_by_residual(layer: QgsVectorLayer) -> bool:
    """Graduated colours (quantiles, green = small residual, red = large); False when no residual column."""
    field = residual_field(layer)
    if not field:
        return False
    renderer = QgsGraduatedSymbolRenderer(field)
    renderer.setSourceSymbol(
        QgsMarkerSymbol.createSimple({"name": "circle", "size": "2.6", "outline_color": "35,35,35", "outline_width": "0.2"})
    )
    renderer.setClassificationMethod(QgsClassificationQuantile())
    renderer.updateClasses(layer, RESIDUAL_CLASSES)
    ramp = QgsStyle.defaultStyle().colorRamp("RdYlGn")
    if ramp is None:
        ramp = QgsGradientColorRamp(QColor(26, 150, 65), QColor(215, 25, 28))
    else:
        ramp.invert()
    renderer.updateColorRamp(ramp)
    layer.setRenderer(renderer)
    layer.triggerRepaint()
    return True


def add_outputs_to_project(
    output: str, tie_points: str, title: str, project: QgsProject | None = None
) -> tuple[QgsRasterLayer | None, QgsVectorLayer | None]:
    """Adds both layers in a group named `title`; returns them (None for one that failed to load)."""
    project = project or QgsProject.instance()
    root = project.layerTreeRoot()
    group: QgsLayerTreeGroup = root.insertGroup(0, title)
    raster = QgsRasterLayer(output, Path(output).stem, "gdal")
    if raster.isValid():
        project.addMapLayer(raster, False)
        group.addLayer(raster)
    else:
        raster = None
    vector = None
    if tie_points:
        vector = QgsVectorLayer(tie_points, "tie points", "ogr")
        if vector.isValid():
            if style_by_residual(vector):
                vector.setName(f"tie points ({residual_field(vector)})")  # the legend's classes need their unit
            project.addMapLayer(vector, False)
            group.insertLayer(0, vector)  # points above the raster
        else:
            vector = None
    return raster, vector
