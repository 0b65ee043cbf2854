"""Renders geomreg_qgis/icon.svg to icon.png (the plugin manager and metadata.txt use the PNG).

Run with a Python that has PyQt5 (e.g. qgis_plugin/.venv-qgis/bin/python) after editing the SVG.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PyQt5.QtCore import Qt  # noqa: E402
from PyQt5.QtGui import QGuiApplication, QImage, QPainter  # noqa: E402
from PyQt5.QtSvg import QSvgRenderer  # noqa: E402

PLUGIN = Path(__file__).resolve().parents[1] / "geomreg_qgis"


def render(size: int = 64) -> Path:
    app = QGuiApplication.instance() or QGuiApplication(sys.argv[:1])  # noqa: F841 (needed by QPainter)
    renderer = QSvgRenderer(str(PLUGIN / "icon.svg"))
    image = QImage(size, size, QImage.Format_ARGB32)
    image.fill(Qt.transparent)
    painter = QPainter(image)
    renderer.render(painter)
    painter.end()
    out = PLUGIN / "icon.png"
    if not image.save(str(out)):
        raise SystemExit(f"could not write {out}")
    return out


if __name__ == "__main__":
    print(render())
