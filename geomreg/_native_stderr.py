"""Messages that C libraries (libtiff inside GDAL, mostly) print straight onto file descriptor 2.

On a full disk libtiff prints a line per failed write (`_tiffWriteProc: No space left on device.`) before
GDAL raises; the CLI's one-line error says the same with the file's name, so while a command runs those
lines are caught in a temporary file and handed back as log records afterwards: at WARNING when the
command went well (nothing a user saw before is hidden), at INFO (shown with -v) when an error line
already says what happened. Python's own stderr (progress bars, log records, JSON events) is untouched.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import sys
import tempfile
from typing import Iterator

log = logging.getLogger("geomreg.native")


class Caught:
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.failed = False  # the command ended with an exception (its own error line says what happened)


@contextlib.contextmanager
def native_stderr_as_log() -> Iterator[Caught]:
    caught = Caught()
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield caught
        return
    try:
        cap = tempfile.TemporaryFile()
    except OSError:  # no room for even that (the temporary folder is on the full disk): leave fd 2 alone
        os.close(saved)
        yield caught
        return
    # Python's stderr keeps going where it went: when it wrote to fd 2, it now writes to a copy of the old fd 2.
    swap = _writes_to_fd2(sys.stderr)
    old_stderr = sys.stderr
    if swap:
        new = io.TextIOWrapper(os.fdopen(os.dup(saved), "wb", buffering=0), encoding=getattr(old_stderr, "encoding", None) or "utf-8",
                               errors="backslashreplace", line_buffering=True, write_through=True)
        handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.StreamHandler) and h.stream is old_stderr]
        sys.stderr = new
        for h in handlers:
            h.setStream(new)
    os.dup2(cap.fileno(), 2)
    try:
        yield caught
    except Exception:
        caught.failed = True
        raise
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        if swap:
            for h in handlers:
                h.setStream(old_stderr)
            sys.stderr = old_stderr
            with contextlib.suppress(Exception):
                new.close()
        cap.seek(0)
        caught.lines = [ln for ln in cap.read().decode("utf-8", "replace").splitlines() if ln.strip()]
        cap.close()
        level = logging.INFO if caught.failed else logging.WARNING
        for ln in caught.lines:
            log.log(level, "%s", ln)


def _writes_to_fd2(stream) -> bool:
    try:
        return stream.fileno() == 2
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        return False
