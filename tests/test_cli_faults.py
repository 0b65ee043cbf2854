"""`geomreg register` when the machine cannot take the outputs: exit code 3, one line "<path>: <cause>" on
stderr (no traceback, no libtiff lines), nothing half-written, the previous outputs kept. Real faults: a
600 KB tmpfs, a read-only mount (root, as CI runs; chmod otherwise)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from geomreg.cli import main
from geomreg.geo.sample import sample_pair
from tests.faults import fill, listing, read_only_folder, tmpfs

REG = ["--matcher", "cfog", "--tile-size", "320", "--overlap", "32", "--transform", "translation", "--no-progress"]


def _geomreg(*args: str | Path) -> subprocess.CompletedProcess:
    """The real process, as a user or a script runs it (native stderr included)."""
    return subprocess.run([sys.executable, "-m", "geomreg.cli", *map(str, args)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_full_disk_exit_3_one_line_empty_folder(tmp_path):
    """The case of the issue: `geomreg register` onto a 600 KB tmpfs."""
    p = sample_pair()
    with tmpfs(tmp_path / "disk", "600k") as d:
        r = _geomreg("register", p.reference, p.moving, "-o", d / "out.tif", *REG)
        assert r.returncode == 3, r.stderr
        assert r.stderr == f"error: {d / 'out.tif'}: no space left on device\n"
        assert listing(d) == []


def test_full_disk_progress_json_error_event(tmp_path):
    p = sample_pair()
    with tmpfs(tmp_path / "disk", "600k") as d:
        r = _geomreg("register", p.reference, p.moving, "-o", d / "out.tif", *REG[:-1], "--progress-json")
        assert r.returncode == 3
        events = [json.loads(line) for line in r.stderr.splitlines()]
        assert events[-1] == {"event": "error", "message": f"{d / 'out.tif'}: no space left on device", "code": 3}
        assert listing(d) == []


def test_read_only_folder_exit_3(tmp_path):
    p = sample_pair()
    with read_only_folder(tmp_path / "ro") as d:
        r = CliRunner().invoke(main, ["register", str(p.reference), str(p.moving), "-o", str(d / "out.tif"), *REG])
        assert r.exit_code == 3, r.output
        cause = "read-only file system" if os.geteuid() == 0 else "permission denied"
        assert f"error: {d / 'out.tif'}: {cause}" in r.output and "Traceback" not in r.output


def test_overwrite_onto_a_full_disk_keeps_the_previous_outputs(tmp_path):
    p = sample_pair()
    with tmpfs(tmp_path / "disk", "8m") as d:
        r = CliRunner().invoke(main, ["register", str(p.reference), str(p.moving), "-o", str(d / "out.tif"), *REG])
        assert r.exit_code == 0, r.output
        before = {n: (d / n).read_bytes() for n in listing(d)}
        fill(d)
        r = _geomreg("register", p.reference, p.moving, "-o", d / "out.tif", *REG, "--overwrite")
        assert r.returncode == 3 and "no space left on device" in r.stderr and len(r.stderr.splitlines()) == 1
        assert {n: (d / n).read_bytes() for n in listing(d)} == before


@pytest.mark.parametrize("command", ["register", "batch"])
def test_help_lists_the_exit_codes(command):
    r = CliRunner().invoke(main, [command, "--help"])
    assert r.exit_code == 0
    text = r.output
    assert "Exit codes:" in text and "  3  " in text and "docs/failure_modes.md" in text
    if command == "batch":
        assert "  4  the Dask scheduler was lost" in text
