"""Logging into QGIS's Log Messages panel (tab "geomreg")."""

from __future__ import annotations

from qgis.core import Qgis, QgsMessageLog

LOG_TAG = "geomreg"


def log_info(message: str) -> None:
    QgsMessageLog.logMessage(message, LOG_TAG, Qgis.Info)


def log_warning(message: str) -> None:
    QgsMessageLog.logMessage(message, LOG_TAG, Qgis.Warning)


def log_error(message: str) -> None:
    QgsMessageLog.logMessage(message, LOG_TAG, Qgis.Critical)
