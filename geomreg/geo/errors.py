"""Errors of the geospatial layer: bad input is reported with the file and the problem, never a traceback."""

from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """Bad input (missing/corrupt file, no CRS, no overlap, bad band, output clash). CLI exit code 2."""

    def __init__(self, problem: str, path: str | Path | None = None) -> None:
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class WriteInterrupted(RuntimeError):
    """An output write was interrupted; the partial file was removed."""
