"""Finding the engine: inside QGIS, in another Python environment, or a message saying how to install it."""

from __future__ import annotations

import os
import subprocess
import sys
import types

import pytest

from geomreg_qgis.toolbelt import engine as engine_mod
from geomreg_qgis.toolbelt.engine import (
    INSTALL_HINT,
    EngineNotFound,
    in_process_status,
    probe_python,
    resolve_engine,
    subprocess_env,
)
from geomreg_qgis.toolbelt.settings import PluginSettings


def test_in_process_status_agrees_with_a_real_import():
    # What the in-process engine needs, imported for real in a fresh interpreter (in_process_status only looks).
    imports = subprocess.run([sys.executable, "-c", "import geomreg, torch, rasterio, cv2, geopandas"], capture_output=True, timeout=600)
    ok, reason = in_process_status()
    assert ok == (imports.returncode == 0), imports.stderr.decode()[-500:]
    assert reason == "importable in QGIS's Python" if ok else reason.startswith("not importable in QGIS's Python")


def test_in_process_status_names_what_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # find_spec: not importable
    fake_cv2 = types.ModuleType("cv2")
    fake_cv2.__spec__ = None  # find_spec raises ValueError: counted as missing, not a crash
    monkeypatch.setitem(sys.modules, "cv2", fake_cv2)
    assert in_process_status() == (False, f"not importable in QGIS's Python ({sys.executable}): torch, cv2")


def test_subprocess_env_drops_qgis_python_and_proj_paths(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/usr/share/qgis/python")
    monkeypatch.setenv("PROJ_LIB", "/usr/share/proj")
    env = subprocess_env()
    assert "PYTHONPATH" not in env and "PROJ_LIB" not in env
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PATH"] == os.environ["PATH"]


def test_missing_python_is_named_with_install_instructions(tmp_path):
    missing = str(tmp_path / "env" / "bin" / "python")
    settings = PluginSettings(engine_mode="subprocess", python_path=missing)
    with pytest.raises(EngineNotFound) as info:
        resolve_engine(settings)
    message = str(info.value)
    assert f"Python '{missing}' does not exist" in message
    assert INSTALL_HINT in message
    assert "pip install geomreg" in message


def test_python_without_geomreg_is_refused():
    # Debian's own Python runs, but has no geomreg: the probe must say so, not crash.
    with pytest.raises(EngineNotFound, match="cannot import geomreg"):
        probe_python("/usr/bin/python3", refresh=True)


def test_nothing_found_lists_what_was_tried(monkeypatch):
    monkeypatch.delenv("GEOMREG_PYTHON", raising=False)
    monkeypatch.setattr(engine_mod, "dev_checkout_python", lambda: "")
    monkeypatch.setattr(engine_mod, "_python_of_console_script", lambda: "")
    monkeypatch.setattr(engine_mod, "in_process_status", lambda: (False, "not importable in QGIS's Python (x)"))
    with pytest.raises(EngineNotFound) as info:
        resolve_engine(PluginSettings(engine_mode="auto", python_path=""))
    message = str(info.value)
    assert message.startswith("No geomreg engine found. Tried:")
    assert "not importable in QGIS's Python" in message
    assert "no Python environment configured" in message
    assert INSTALL_HINT in message


def test_in_process_mode_without_engine_says_so(monkeypatch):
    monkeypatch.setattr(engine_mod, "in_process_status", lambda: (False, "not importable in QGIS's Python (x): torch"))
    with pytest.raises(EngineNotFound, match="In-process engine requested"):
        resolve_engine(PluginSettings(engine_mode="in-process"))


@pytest.mark.engine
def test_project_venv_is_found_and_probed(subprocess_engine):
    assert subprocess_engine.kind == "subprocess"
    assert subprocess_engine.version
    # The options the plugin passes must be ones the CLI lists.
    assert {"--transform", "--matcher", "--tile-size", "--max-shift", "--device", "--overwrite"} <= subprocess_engine.cli_options
    again = resolve_engine(PluginSettings(engine_mode="subprocess", python_path=subprocess_engine.python))
    assert again == subprocess_engine


@pytest.mark.engine
def test_env_variable_is_a_fallback(subprocess_engine, monkeypatch):
    monkeypatch.setenv("GEOMREG_PYTHON", subprocess_engine.python)
    monkeypatch.setattr(engine_mod, "dev_checkout_python", lambda: "")
    found = resolve_engine(PluginSettings(engine_mode="subprocess", python_path=""))
    assert found.python == subprocess_engine.python
    assert sys.executable != found.python


@pytest.mark.engine
def test_plugin_options_mirror_the_cli(subprocess_engine):
    """Every option the plugin passes exists in `geomreg register`, and every CLI option has a plugin field."""
    from geomreg_qgis.toolbelt.request import RegistrationRequest

    everything = RegistrationRequest(
        "a.tif", "b.tif", "c.tif", transform="affine", matcher="cfog", tile_size=256, max_shift=300,
        max_shift_unit="map", device="cpu", overwrite=True, overlap=32, ref_band="2", mov_band="mean",
        resolution=20.0, pixel_mode=True, write_mode="gcps", checkpoint="w.pt", tiles="all", max_uncertainty=0.05,
        max_memory="1G",
    )
    passed = {a for a in everything.cli_args() if a.startswith("--")}
    assert passed <= subprocess_engine.cli_options
    # Output handling (-o), terminal progress and help are the plugin's own business.
    not_mirrored = {"--output", "--help", "--progress", "--no-progress", "--progress-json"}
    assert subprocess_engine.cli_options - not_mirrored <= passed


def test_help_options_come_from_the_option_column_only():
    from geomreg_qgis.toolbelt.engine import help_options

    page = (
        "Options:\n"
        "  --tiles [auto|all]              auto: match tiles until the std is under --max-\n"
        "                                  uncertainty px; see --max-uncertainty.\n"
        "  --max-uncertainty FLOAT         px.\n"
        "  --progress / --no-progress      Progress bar.\n"
        "  -o, --output FILE               Output.\n"
    )
    assert help_options(page) == {"--tiles", "--max-uncertainty", "--progress", "--no-progress", "--output"}
