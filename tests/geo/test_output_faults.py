"""Faults of the machine while writing outputs: a full disk, a read-only file system, a folder that vanishes, an
interrupt, a crash in the middle of replacing an output set. Whatever happens, the folder holds the previous
outputs whole (or nothing, when there were none) and no temporary file; the error is a geomreg.OutputError
that names the output and the cause.

The faults are real where a real one can be made: a small tmpfs that really fills up, a tmpfs remounted
read-only, a folder really removed. Only the moment of the fault is chosen by wrapping the writer of one
file (so that every step is covered) and a crash mid-swap is a child process that dies in a rename."""

from __future__ import annotations

import errno
import hashlib
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import geomreg
from geomreg.geo import outputs
from geomreg.geo.errors import OutputError
from geomreg.geo.registration import recover_outputs
from geomreg.geo.sample import sample_pair
from geomreg.matching.cfog import CFOGMatcher
from tests.faults import fill, listing, read_only_folder, tmpfs

SET = ["r.points", "r.tif", "r_report.json", "r_tiepoints.gpkg"]
STEPS = ["write_resampled", "write_geopackage", "write_qgis_points", "write_json"]
STEP_FILE = {"write_resampled": "r.tif", "write_geopackage": "r_tiepoints.gpkg", "write_qgis_points": "r.points",
             "write_json": "r_report.json"}


@pytest.fixture(scope="module")
def reg():
    p = sample_pair()
    r = geomreg.register(p.reference, p.moving, matcher=CFOGMatcher(), tile_size=320, overlap=32, transform="translation",
                         progress=False)
    assert r.ok, r.reason
    return r


def digest(folder: Path) -> dict[str, str]:
    return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in listing(folder)}


class Cancelled(Exception):
    pass


def _at_step(monkeypatch, step: str, action) -> None:
    """Run `action()` just before the writer of one file starts (the fault itself is real)."""
    real = getattr(outputs, step)

    def wrapped(*a, **kw):
        action()
        return real(*a, **kw)

    monkeypatch.setattr(outputs, step, wrapped)


# --- a full disk -------------------------------------------------------------------------------------


def test_full_disk_one_line_no_space_nothing_left(reg, tmp_path):
    """The case of the issue: a 600 KB tmpfs cannot take the raster."""
    with tmpfs(tmp_path / "disk", "600k") as d:
        with pytest.raises(OutputError) as ei:
            reg.write(d / "r.tif")
        e = ei.value
        assert e.errno == errno.ENOSPC and str(e) == f"{d / 'r.tif'}: no space left on device"
        assert isinstance(e, OSError) and e.filename == str(d / "r.tif") and e.strerror == "no space left on device"
        assert listing(d) == [] and reg.outputs == {}


@pytest.mark.parametrize("step", STEPS + ["commit"])
def test_full_disk_at_every_step_keeps_the_previous_set(reg, tmp_path, monkeypatch, step):
    with tmpfs(tmp_path / "disk", "8m") as d:
        reg.write(d / "r.tif")
        before = digest(d)
        assert sorted(before) == SET
        if step == "commit":
            real = outputs.OutputSet.commit
            monkeypatch.setattr(outputs.OutputSet, "commit", lambda self: (fill(d), real(self))[1])
        else:
            _at_step(monkeypatch, step, lambda: fill(d))
        with pytest.raises(OutputError) as ei:
            reg.write(d / "r.tif", overwrite=True)
        assert ei.value.errno == errno.ENOSPC
        name = "r.tif" if step == "commit" else STEP_FILE[step]  # the journal is written beside the raster
        assert ei.value.path == str(d / name) and "no space left on device" in str(ei.value)
        assert digest(d) == before  # the previous set, byte for byte, and no temporary file


def test_full_disk_without_a_previous_set_leaves_nothing(reg, tmp_path, monkeypatch):
    with tmpfs(tmp_path / "disk", "8m") as d:
        _at_step(monkeypatch, "write_json", lambda: fill(d))
        with pytest.raises(OutputError):
            reg.write(d / "r.tif")
        assert listing(d) == []


# --- read-only, vanished folder ----------------------------------------------------------------------


def test_read_only_folder(reg, tmp_path):
    with read_only_folder(tmp_path / "ro") as d:
        with pytest.raises(OutputError) as ei:
            reg.write(d / "r.tif")
        want = (errno.EROFS, "read-only file system") if os.geteuid() == 0 else (errno.EACCES, "permission denied")
        assert (ei.value.errno, ei.value.cause) == want and str(ei.value) == f"{d / 'r.tif'}: {want[1]}"


def test_file_system_remounted_read_only_mid_write_keeps_the_previous_set(reg, tmp_path, monkeypatch):
    from tests.faults import remount_read_only

    if os.geteuid() != 0:
        pytest.skip("remounting needs root")
    with tmpfs(tmp_path / "disk", "8m") as d:
        reg.write(d / "r.tif")
        before = digest(d)
        _at_step(monkeypatch, "write_geopackage", lambda: remount_read_only(d))
        with pytest.raises(OutputError) as ei:
            reg.write(d / "r.tif", overwrite=True)
        assert ei.value.errno == errno.EROFS and ei.value.path == str(d / "r_tiepoints.gpkg")
        # The staged raster could not be deleted on a read-only file system; the previous set is whole.
        assert {n: h for n, h in digest(d).items() if not n.startswith(".")} == before


def test_output_folder_removed_mid_write(reg, tmp_path, monkeypatch):
    d = tmp_path / "out"
    d.mkdir()
    _at_step(monkeypatch, "write_geopackage", lambda: shutil.rmtree(d))
    with pytest.raises(OutputError) as ei:
        reg.write(d / "r.tif")
    assert ei.value.errno == errno.ENOENT
    assert str(ei.value) == f"{d / 'r_tiepoints.gpkg'}: the output folder vanished (no such file or directory)"
    assert not d.exists()


def test_register_output_folder_removed_during_matching(tmp_path):
    p = sample_pair()
    d = tmp_path / "out"
    d.mkdir()

    def cb(fraction, stage):
        if stage == "fusion" and d.exists():
            shutil.rmtree(d)

    with pytest.raises(OutputError) as ei:
        geomreg.register(p.reference, p.moving, d / "r.tif", matcher=CFOGMatcher(), tile_size=320, overlap=32, progress=cb)
    assert ei.value.errno == errno.ENOENT and "vanished" in str(ei.value)


# --- interrupts and failed renames -------------------------------------------------------------------


@pytest.mark.parametrize("step", STEPS + ["before_commit"])
def test_cancel_at_every_step_keeps_the_previous_set(reg, tmp_path, monkeypatch, step):
    d = tmp_path
    reg.write(d / "r.tif")
    before = digest(d)

    def cancel():
        raise KeyboardInterrupt

    kw = {}
    if step == "before_commit":
        kw["before_commit"] = cancel
    else:
        _at_step(monkeypatch, step, cancel)
    with pytest.raises(KeyboardInterrupt):
        reg.write(d / "r.tif", overwrite=True, **kw)
    assert digest(d) == before


@pytest.mark.parametrize("fail_at", range(9))
def test_failed_rename_at_every_step_of_the_swap_rolls_back(reg, tmp_path, monkeypatch, fail_at):
    """A swap of 4 files over 4 old ones is 8 renames: a failure at each (and none: 8) leaves one whole set."""
    d = tmp_path
    reg.write(d / "r.tif")
    before = digest(d)
    calls = []
    real = outputs._rename

    def rename(a, b):
        calls.append((a, b))
        if len(calls) - 1 == fail_at:
            raise OSError(errno.EIO, "Input/output error", str(a))
        return real(a, b)

    monkeypatch.setattr(outputs, "_rename", rename)
    if fail_at < 8:
        with pytest.raises(OutputError) as ei:
            reg.write(d / "r.tif", overwrite=True)
        assert ei.value.errno == errno.EIO
        assert digest(d) == before
    else:
        reg.write(d / "r.tif", overwrite=True)
        assert sorted(digest(d)) == SET  # the new set (the same bytes but for the report's timings)
    assert len(calls) == min(fail_at + 1, 8)


@pytest.mark.parametrize("crash_at", [0, 2, 4, 5, 7])
def test_crash_mid_swap_is_rolled_back_by_the_next_write(reg, tmp_path, crash_at):
    """A process killed in the middle of the swap leaves a journal; the next write (or recover_outputs)
    restores the previous set whole before anything else."""
    d = tmp_path
    reg.write(d / "r.tif")
    before = digest(d)
    code = textwrap.dedent(f"""
        import os, pickle, sys
        from geomreg.geo import outputs
        reg = pickle.load(open(sys.argv[1], "rb"))
        real, n = outputs._rename, [0]
        def rename(a, b):
            if n[0] == {crash_at}:
                os._exit(9)  # no cleanup runs: as if the power went
            n[0] += 1
            return real(a, b)
        outputs._rename = rename
        reg.write(sys.argv[2], overwrite=True)
    """)
    pkl = tmp_path.parent / f"{tmp_path.name}.reg.pkl"
    pkl.write_bytes(pickle.dumps(reg))
    r = subprocess.run([sys.executable, "-c", code, str(pkl), str(d / "r.tif")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 9, r.stderr
    assert any(n.endswith(".swap.json") for n in os.listdir(d))
    done = recover_outputs(d / "r.tif")
    assert done and "rolled back" in done[0]
    assert digest(d) == before
    # and the next write goes through
    reg.write(d / "r.tif", overwrite=True)
    assert sorted(digest(d)) == SET


def test_leftover_backups_of_a_committed_swap_are_removed(reg, tmp_path):
    d = tmp_path
    reg.write(d / "r.tif")
    (d / ".r.tif.0123abcd.old").write_bytes(b"old raster")  # a crash after the commit point, before the cleanup
    assert recover_outputs(d / "r.tif") == ["removed the backup .r.tif.0123abcd.old of a completed replacement"]
    assert sorted(digest(d)) == SET


def test_output_error_pickles_and_is_an_oserror():
    e = OutputError("/x/out.tif", errno.ENOSPC, "no space left on device", "TIFFWrite: IO error")
    f = pickle.loads(pickle.dumps(e))
    assert (f.path, f.errno, f.cause, f.detail, str(f)) == (e.path, e.errno, e.cause, e.detail, "/x/out.tif: no space left on device")
    assert isinstance(f, OSError) and geomreg.OutputError is OutputError


def test_gdal_error_without_errno_is_classified_by_the_file_system(tmp_path):
    """GDAL raises CPLE_* errors, not OSError; the cause comes from the message or from the folder."""
    from rasterio._err import CPLE_AppDefinedError

    e = outputs.output_error(CPLE_AppDefinedError(1, 1, "TIFFWriteDirectoryTagData:IO error writing tag data"), tmp_path / "a.tif")
    assert e is not None and e.errno == errno.EIO  # plenty of room here: an I/O error, said as such
    e = outputs.output_error(CPLE_AppDefinedError(1, 1, "sqlite: database or disk is full"), tmp_path / "a.gpkg")
    assert e.errno == errno.ENOSPC
    e = outputs.output_error(CPLE_AppDefinedError(1, 1, "write failed"), tmp_path / "gone" / "a.tif")
    assert e.errno == errno.ENOENT and "vanished" in e.cause
    assert outputs.output_error(ValueError("a bug"), tmp_path / "a.tif") is None
