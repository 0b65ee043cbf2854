"""Finding the geomreg engine: inside QGIS's own Python, or in another Python environment.

QGIS ships its own Python, often without PyTorch (or with an incompatible NumPy/GDAL). geomreg
can therefore live in a separate environment; the plugin then runs its CLI as a subprocess.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .settings import PluginSettings

# Runs the CLI whatever `geomreg.cli` looks like (click group or plain main): no `__main__` needed.
CLI_LAUNCHER = "import sys; from geomreg.cli import main; sys.exit(main())"

_PROBE = (
    "import importlib.util, json, sys\n"
    "info = {'python': sys.version.split()[0], 'executable': sys.executable}\n"
    "try:\n"
    "    import geomreg\n"
    "    info['geomreg'] = getattr(geomreg, '__version__', '?')\n"
    "    info['cli'] = importlib.util.find_spec('geomreg.cli') is not None\n"
    "except Exception as exc:\n"
    "    info['error'] = type(exc).__name__ + ': ' + str(exc)\n"
    "print(json.dumps(info))\n"
)

# What the engine needs besides geomreg itself; all must import inside QGIS for the in-process path.
ENGINE_MODULES = ("geomreg", "torch", "rasterio", "cv2", "geopandas")

# Environment variables that QGIS sets for its own Python/GDAL/PROJ and that would make another
# Python import QGIS's packages or read a PROJ database of another version.
_SCRUBBED_ENV = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "GDAL_DATA", "GDAL_DRIVER_PATH", "PROJ_LIB", "PROJ_DATA")

INSTALL_HINT = (
    "geomreg is not installed where the plugin can reach it. Install it in a Python 3.11 environment, e.g.\n"
    "    python3.11 -m venv ~/geomreg-env\n"
    "    ~/geomreg-env/bin/pip install geomreg        (or: pip install -e /path/to/geomreg)\n"
    "then give that environment's Python (~/geomreg-env/bin/python, or Scripts\\python.exe on Windows) "
    "in the plugin dialog under 'Engine', or set the GEOMREG_PYTHON environment variable."
)


class EngineNotFound(RuntimeError):
    """No usable engine; the message says what was tried and how to install geomreg."""


@dataclass(frozen=True)
class Engine:
    kind: str  # "in-process" or "subprocess"
    python: str = ""  # the interpreter that runs the CLI (subprocess only)
    version: str = ""  # geomreg's version
    cli_options: frozenset[str] = field(default_factory=frozenset)  # long options of `geomreg register`

    def supports(self, option: str) -> bool:
        return option in self.cli_options

    def describe(self) -> str:
        if self.kind == "in-process":
            return f"geomreg {self.version} inside QGIS's Python"
        return f"geomreg {self.version} via {self.python}"


def subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED_ENV}
    env["PYTHONUNBUFFERED"] = "1"  # progress lines must arrive as they are written
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def neutral_cwd() -> str:
    # `python -c` puts the working folder first on sys.path: run where no stray `geomreg/` can be picked up.
    return tempfile.gettempdir()


def creation_flags() -> int:
    # A process group of its own lets a cancel reach the CLI and any worker it started.
    return getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0) | getattr(subprocess, "CREATE_NO_WINDOW", 0)


def in_process_status() -> tuple[bool, str]:
    """Is the full engine importable in this Python? Uses find_spec only: importing torch is slow."""
    missing = []
    for name in ENGINE_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    if missing:
        return False, f"not importable in QGIS's Python ({sys.executable}): {', '.join(missing)}"
    return True, "importable in QGIS's Python"


def _in_process_engine() -> Engine:
    import geomreg  # noqa: PLC0415 (only once we know it is there)

    return Engine(kind="in-process", version=str(getattr(geomreg, "__version__", "?")))


def dev_checkout_python() -> str:
    """The `.venv` of a geomreg checkout that holds this plugin (qgis_plugin/geomreg_qgis/...)."""
    repo = Path(__file__).resolve().parents[3]
    for candidate in (repo / ".venv" / "bin" / "python", repo / ".venv" / "Scripts" / "python.exe"):
        if candidate.exists() and (repo / "geomreg" / "__init__.py").exists():
            return str(candidate)
    return ""


def _python_of_console_script() -> str:
    script = shutil.which("geomreg")
    if not script:
        return ""
    sibling = Path(script).with_name("python.exe" if os.name == "nt" else "python")
    if sibling.exists():
        return str(sibling)
    try:
        first = Path(script).read_text(encoding="utf-8", errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return ""
    return first[2:].strip() if first.startswith("#!") and "python" in first else ""


def python_candidates(settings: PluginSettings) -> list[tuple[str, str]]:
    """(python, where it came from) in the order they are tried."""
    found = [
        (settings.python_path.strip(), "plugin setting"),
        (os.environ.get("GEOMREG_PYTHON", "").strip(), "GEOMREG_PYTHON"),
        (_python_of_console_script(), "'geomreg' on PATH"),
        (dev_checkout_python(), "the geomreg checkout holding the plugin"),
    ]
    seen: set[str] = set()
    result = []
    for python, origin in found:
        if python and python not in seen:
            seen.add(python)
            result.append((python, origin))
    return result


_probe_cache: dict[str, Engine] = {}


def probe_python(python: str, *, refresh: bool = False, timeout: float = 120.0) -> Engine:
    """Checks that `python` runs and has geomreg with its CLI; raises EngineNotFound otherwise."""
    if not refresh and python in _probe_cache:
        return _probe_cache[python]
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        raise EngineNotFound(f"Python '{python}' does not exist or is not executable.")
    info = _run_json(python, ["-c", _PROBE], timeout)
    if "error" in info:
        raise EngineNotFound(f"Python '{python}' cannot import geomreg ({info['error']}).")
    if not info.get("cli"):
        raise EngineNotFound(f"geomreg {info.get('geomreg')} in '{python}' has no command-line interface (geomreg.cli).")
    engine = Engine(
        kind="subprocess",
        python=python,
        version=str(info.get("geomreg", "?")),
        cli_options=frozenset(_register_options(python, timeout)),
    )
    _probe_cache[python] = engine
    return engine


def _run_json(python: str, args: list[str], timeout: float) -> dict:
    try:
        done = subprocess.run(
            [python, *args], capture_output=True, text=True, timeout=timeout, env=subprocess_env(),
            creationflags=creation_flags(), cwd=neutral_cwd(),
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise EngineNotFound(f"Python '{python}' could not be run: {exc}") from exc
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        raise EngineNotFound(f"Python '{python}' failed to start (exit {done.returncode}): {' | '.join(tail)}")
    return json.loads(lines[-1])


def _register_options(python: str, timeout: float) -> set[str]:
    """Long options that `geomreg register --help` lists, so that only supported ones are passed."""
    try:
        done = subprocess.run(
            [python, "-c", CLI_LAUNCHER, "register", "--help"], capture_output=True, text=True, timeout=timeout,
            env=subprocess_env(), creationflags=creation_flags(), cwd=neutral_cwd(),
        )
    except (OSError, subprocess.SubprocessError):
        return set()
    return help_options(done.stdout)


def help_options(help_text: str) -> set[str]:
    """The long options of a click help page: only from the option column of lines that start with an option,
    so an option named inside a wrapped help text ("... under --max-") is not taken for one."""
    found: set[str] = set()
    for line in help_text.splitlines():
        if re.match(r" {1,4}-", line):  # click indents option lines by 2; wrapped help text much deeper
            spec = re.split(r"\s{2,}", line.strip(), maxsplit=1)[0]  # the option column, before the help text
            found.update(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", spec))
    return found


def resolve_engine(settings: PluginSettings, *, refresh: bool = False) -> Engine:
    """The engine to use under `settings`, or EngineNotFound saying what was tried and how to install."""
    tried: list[str] = []
    if settings.engine_mode in ("auto", "in-process"):
        ok, reason = in_process_status()
        if ok:
            return _in_process_engine()
        tried.append(f"geomreg {reason}")
        if settings.engine_mode == "in-process":
            raise EngineNotFound(f"In-process engine requested but geomreg is {reason}.\n\n{INSTALL_HINT}")
    for python, origin in python_candidates(settings):
        try:
            return probe_python(python, refresh=refresh)
        except EngineNotFound as exc:
            if origin == "plugin setting":
                # The user named this one: say why it does not work rather than quietly using another.
                raise EngineNotFound(f"{exc}\n\n{INSTALL_HINT}") from exc
            tried.append(f"{origin}: {exc}")
    if not python_candidates(settings):
        tried.append("no Python environment configured (plugin setting or GEOMREG_PYTHON)")
    raise EngineNotFound("No geomreg engine found. Tried:\n- " + "\n- ".join(tried) + f"\n\n{INSTALL_HINT}")
