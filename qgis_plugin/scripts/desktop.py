"""Starts the real QGIS desktop under Xvfb with the plugin installed in a fresh profile.

    python3 qgis_plugin/scripts/desktop.py check
    python3 qgis_plugin/scripts/desktop.py screenshots --reference REF.tif --moving MOV.tif --shots docs/

"check" verifies that QGIS itself loads the plugin (Raster menu entry, toolbar, Processing algorithm);
"screenshots" also opens the dialog, runs a registration (CFOG matcher by default) and saves
qgis_dialog.png and qgis_result.png. Prints QGIS's own report as JSON; exit code 1 if it saw a problem.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLUGIN = HERE.parent / "geomreg_qgis"
REPO = HERE.parents[1]
SCREEN = (1440, 900)


def make_profile(root: Path, engine_python: str) -> Path:
    """A QGIS profile folder with the plugin copied in and enabled, and the engine's Python set."""
    profile = root / "profiles" / "default"
    plugins = profile / "python" / "plugins"
    plugins.mkdir(parents=True)
    shutil.copytree(PLUGIN, plugins / PLUGIN.name, ignore=shutil.ignore_patterns("__pycache__"))
    ini = profile / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True)
    ini.write_text(
        "[PythonPlugins]\n"
        f"{PLUGIN.name}=true\n"
        "\n[geomreg_qgis]\n"
        f"engine_mode=subprocess\npython_path={engine_python}\n"
        "\n[qgis]\n"
        "checkVersion=false\nshowTips=false\n",
        encoding="utf-8",
    )
    return root


def run_qgis(mode: str, *, engine_python: str, env_extra: dict[str, str], timeout: float) -> dict:
    xvfb_run = shutil.which("xvfb-run")
    qgis = shutil.which("qgis")
    if not xvfb_run or not qgis:
        raise SystemExit("xvfb-run and qgis are needed (apt-get install xvfb qgis)")
    with tempfile.TemporaryDirectory(prefix="geomreg-qgis-desktop-") as tmp:
        root = make_profile(Path(tmp), engine_python)
        result = Path(tmp) / "result.json"
        env = dict(
            os.environ, GEOMREG_DESKTOP_RESULT=str(result), GEOMREG_DESKTOP_MODE=mode,
            GEOMREG_DESKTOP_SCREEN=f"{SCREEN[0]}x{SCREEN[1]}", **env_extra,
        )
        env.pop("QT_QPA_PLATFORM", None)  # a real X display (Xvfb), not offscreen
        command = [
            xvfb_run, "-a", "-s", f"-screen 0 {SCREEN[0]}x{SCREEN[1]}x24", qgis, "--profiles-path", str(root),
            "--profile", "default", "--nologo", "--noversioncheck", "--hide-browser",
            "--code", str(HERE / "inside_qgis.py"),
        ]
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)
        if not result.exists():
            tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
            raise SystemExit(f"QGIS wrote no result (exit {done.returncode}):\n{tail}")
        return json.loads(result.read_text(encoding="utf-8"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["check", "screenshots"])
    parser.add_argument("--engine-python", default=str(REPO / ".venv" / "bin" / "python"))
    parser.add_argument("--reference", default="")
    parser.add_argument("--moving", default="")
    parser.add_argument("--output", default="", help="registered raster (default: a temporary file)")
    parser.add_argument("--matcher", default="cfog")
    parser.add_argument("--shots", default=str(REPO / "docs"), help="folder for the screenshots")
    parser.add_argument("--timeout", type=float, default=540.0)
    args = parser.parse_args(argv)

    env_extra: dict[str, str] = {}
    workdir = tempfile.mkdtemp(prefix="geomreg-qgis-shots-")
    if args.mode == "screenshots":
        if not (args.reference and args.moving):
            parser.error("screenshots need --reference and --moving")
        Path(args.shots).mkdir(parents=True, exist_ok=True)
        env_extra = {
            "GEOMREG_DESKTOP_SHOTS": str(Path(args.shots).resolve()),
            "GEOMREG_DESKTOP_REFERENCE": str(Path(args.reference).resolve()),
            "GEOMREG_DESKTOP_MOVING": str(Path(args.moving).resolve()),
            "GEOMREG_DESKTOP_OUTPUT": args.output or str(Path(workdir) / f"{Path(args.moving).stem}_registered.tif"),
            "GEOMREG_DESKTOP_MATCHER": args.matcher,
            "GEOMREG_DESKTOP_TIMEOUT": str(max(60.0, args.timeout - 90.0)),
        }
    try:
        report = run_qgis(args.mode, engine_python=args.engine_python, env_extra=env_extra, timeout=args.timeout)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(report, indent=2))
    return 1 if report.get("errors") or not report.get("plugin_loaded") else 0


if __name__ == "__main__":
    sys.exit(main())
