"""Builds the installable plugin zip: qgis_plugin/dist/geomreg_qgis-<version>.zip.

    python3 qgis_plugin/build_zip.py [--out DIR]

The zip holds the folder geomreg_qgis/ (what QGIS's "Install from ZIP" expects), without caches, and the
repository's LICENSE inside it (plugins.qgis.org refuses a package without one).
Needs only the standard library.
"""

from __future__ import annotations

import argparse
import configparser
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PLUGIN = HERE / "geomreg_qgis"
LICENSE = HERE.parent / "LICENSE"
SKIPPED_DIRS = {"__pycache__", ".pytest_cache"}
SKIPPED_SUFFIXES = {".pyc", ".pyo"}


def plugin_version() -> str:
    parser = configparser.ConfigParser()
    parser.read(PLUGIN / "metadata.txt", encoding="utf-8")
    return parser["general"]["version"]


def plugin_files() -> list[Path]:
    files = []
    for path in sorted(PLUGIN.rglob("*")):
        relative = path.relative_to(PLUGIN)
        if path.is_file() and not SKIPPED_DIRS & set(relative.parts) and path.suffix not in SKIPPED_SUFFIXES:
            files.append(path)
    return files


def build(out_dir: Path) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / f"{PLUGIN.name}-{plugin_version()}.zip"
    partial = target.with_suffix(".zip.partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in plugin_files():
            zf.write(path, Path(PLUGIN.name) / path.relative_to(PLUGIN))
        zf.write(LICENSE, Path(PLUGIN.name) / "LICENSE")
    partial.replace(target)  # never a half-written zip under the final name
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Build the geomreg QGIS plugin zip.")
    parser.add_argument("--out", type=Path, default=HERE / "dist", help="output folder (default: qgis_plugin/dist)")
    args = parser.parse_args(argv)
    target = build(args.out)
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
