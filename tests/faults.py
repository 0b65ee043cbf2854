"""Real faults of the machine for tests: a small tmpfs (a disk that fills up), a read-only mount, a full disk
made on purpose. Mounting needs root (CI runs as root); without it the tests that need a mount are skipped
with the reason. Every mount is unmounted in the fixture's teardown, whatever the test did."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
from pathlib import Path
from typing import Iterator

import pytest


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "600k") -> Iterator[Path]:
    """A tmpfs of `size` mounted on `path` (created), unmounted (lazily if busy) on exit; skips without root."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (a disk that fills up) needs root; CI runs the tests as root")
    path.mkdir(parents=True, exist_ok=True)
    r = _run("mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "tmpfs", str(path))
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}); a container without CAP_SYS_ADMIN?")
    try:
        yield path
    finally:
        if _run("umount", str(path)).returncode != 0:
            _run("umount", "-l", str(path))


def remount_read_only(path: Path) -> None:
    r = _run("mount", "-o", "remount,ro", str(path))
    if r.returncode != 0:
        pytest.skip(f"cannot remount {path} read-only: {r.stderr.strip()}")


@contextlib.contextmanager
def read_only_folder(path: Path) -> Iterator[Path]:
    """A folder no write can go into: a read-only tmpfs as root (root ignores permission bits), else chmod 0555."""
    if os.geteuid() == 0:
        with tmpfs(path, "1m") as d:
            remount_read_only(d)
            yield d
        return
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o555)
    try:
        yield path
    finally:
        path.chmod(0o755)


def fill(folder: Path, name: str = "filler.bin") -> Path:
    """Write zeros into `folder` until its file system is full (ENOSPC); returns the filler file."""
    p = folder / name
    chunk = b"\0" * 65536
    with open(p, "ab", buffering=0) as fh:
        try:
            while True:
                fh.write(chunk)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
    # The last partial chunk: fill the remaining bytes of the last page too.
    with open(p, "ab", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 512)
        except OSError as e:
            if e.errno != errno.ENOSPC:
                raise
    return p


def listing(folder: Path, ignore: tuple[str, ...] = ("filler.bin",)) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in ignore)
