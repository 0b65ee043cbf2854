"""Plugin settings, stored in the QGIS profile (QgsSettings) under "geomreg_qgis/"."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from qgis.core import QgsSettings

PREFIX = "geomreg_qgis"

ENGINE_MODES = ("auto", "in-process", "subprocess")


@dataclass(frozen=True)
class PluginSettings:
    # auto: import geomreg inside QGIS when it is complete there, else run the CLI of `python_path`.
    engine_mode: str = "auto"
    # Python executable of an environment where geomreg is installed (a venv, conda env, ...).
    python_path: str = ""
    matcher: str = "auto"
    device: str = "auto"
    transform: str = "auto"

    def with_changes(self, **changes: str) -> "PluginSettings":
        return replace(self, **changes)


def load_settings() -> PluginSettings:
    qs = QgsSettings()
    defaults = PluginSettings()
    values = {}
    for f in fields(PluginSettings):
        raw = qs.value(f"{PREFIX}/{f.name}", getattr(defaults, f.name))
        values[f.name] = str(raw) if raw is not None else getattr(defaults, f.name)
    if values["engine_mode"] not in ENGINE_MODES:
        values["engine_mode"] = "auto"
    return PluginSettings(**values)


def save_settings(settings: PluginSettings) -> None:
    qs = QgsSettings()
    for f in fields(PluginSettings):
        qs.setValue(f"{PREFIX}/{f.name}", getattr(settings, f.name))
