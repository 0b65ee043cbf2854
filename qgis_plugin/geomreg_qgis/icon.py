"""Where the plugin's icon lies."""

from __future__ import annotations

from pathlib import Path

PLUGIN_DIR = Path(__file__).resolve().parent


def icon_path() -> str:
    return str(PLUGIN_DIR / "icon.svg")
