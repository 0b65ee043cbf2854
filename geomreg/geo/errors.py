"""Errors of the geospatial layer: bad input is reported with the file and the problem, never a traceback."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad input (missing/corrupt file, no CRS, no overlap, bad band, output clash). CLI exit code 2."""

    def __init__(self, problem: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class OutputError(OSError):
    """An output could not be written because of the machine, not the input: no space left, permission
    denied, a read-only file system, a folder that vanished, an I/O error. CLI exit code 3.

    A subclass of OSError (so `except OSError` code keeps working): `.errno` is the errno the cause maps to
    (errno.ENOSPC, EACCES, EROFS, ENOENT, EIO, ...), `.strerror` and `.cause` the cause in words,
    `.path`/`.filename` the output the user asked for (never a temporary name), `.detail` what the
    underlying library said. str(e) is the one line the CLI prints: "<path>: <cause>".
    """

    def __init__(self, path: str | Path, errno: int, cause: str, detail: str | None = None) -> None:
        super().__init__(errno, cause, str(path))
        self.path = str(path)
        self.cause = cause
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.path}: {self.cause}"

    def __reduce__(self):
        # OSError pickles (errno, strerror) only; Dask sends this exception between processes.
        return (type(self), (self.path, self.errno, self.cause, self.detail))


class WriteInterrupted(RuntimeError):
    """An output write was interrupted; the partial file was removed."""
