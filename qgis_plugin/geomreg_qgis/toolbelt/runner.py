"""Running `geomreg register` in another Python, reading its progress, stopping it on cancel."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from .engine import CLI_LAUNCHER, creation_flags, subprocess_env
from .progress import LineSplitter, ProgressEvent, parse_line

# After a cancel: time given to the CLI to clean up after SIGINT (its temp files), then after SIGTERM.
GRACE_SECONDS = (5.0, 5.0)


@dataclass(frozen=True)
class RunOutcome:
    returncode: int | None  # None when the process was stopped on cancel
    canceled: bool
    result: dict | None  # the last JSON result line, if the CLI printed one
    error_lines: tuple[str, ...]  # error messages the CLI printed
    tail: tuple[str, ...] = field(default_factory=tuple)  # last output lines, for the log

    def failure_message(self) -> str:
        if self.error_lines:
            return self.error_lines[0]  # the first error says what went wrong; later ones follow from it
        useful = [line for line in self.tail if line.strip()]
        return useful[-1] if useful else f"geomreg exited with code {self.returncode}"


def run_cli(
    python: str,
    cli_args: list[str],
    *,
    on_event: Callable[[ProgressEvent], None],
    is_canceled: Callable[[], bool],
    cwd: str | None = None,
) -> RunOutcome:
    """Runs `python -c <launcher> *cli_args`, feeding each parsed output line to `on_event`.

    stdout and stderr are merged: tqdm writes to stderr, a JSON progress stream may use either.
    """
    process = subprocess.Popen(
        [python, "-c", CLI_LAUNCHER, *cli_args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        env=subprocess_env(),
        start_new_session=os.name != "nt",
        creationflags=creation_flags(),
    )
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=_pump, args=(process, lines), daemon=True)
    reader.start()

    tail: deque[str] = deque(maxlen=40)
    errors: list[str] = []
    result: dict | None = None
    canceled = False
    finished_reading = False
    while not finished_reading:
        if not canceled and is_canceled():
            canceled = True
            _stop(process)
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            continue
        if line is None:
            finished_reading = True
            continue
        tail.append(line)
        event = parse_line(line)
        if event is None:
            continue
        if event.result is not None:
            result = event.result
        if event.is_error and event.message:
            errors.append(_strip_error_prefix(event.message))
        on_event(event)
    returncode = process.wait()
    reader.join(timeout=5)
    if not canceled and is_canceled():
        canceled = True  # cancelled while the last lines were read: the run's outputs are not wanted
    return RunOutcome(
        returncode=None if canceled else returncode,
        canceled=canceled,
        result=result,
        error_lines=tuple(errors),
        tail=tuple(tail),
    )


def _pump(process: subprocess.Popen, lines: "queue.Queue[str | None]") -> None:
    splitter = LineSplitter()
    stream = process.stdout
    assert stream is not None
    while True:
        chunk = stream.read1(65536) if hasattr(stream, "read1") else stream.read(4096)
        if not chunk:
            break
        for line in splitter.feed(chunk.decode("utf-8", errors="replace")):
            lines.put(line)
    for line in splitter.flush():
        lines.put(line)
    lines.put(None)


def _strip_error_prefix(message: str) -> str:
    for prefix in ("error:", "registration failed:"):
        if message.lower().startswith(prefix):
            return message[len(prefix):].strip()
    return message


def _stop(process: subprocess.Popen) -> None:
    """SIGINT first (Python runs its cleanup: temp files removed), then SIGTERM, then SIGKILL."""
    if process.poll() is not None:
        return
    steps = [signal.SIGINT, signal.SIGTERM] if os.name != "nt" else [signal.CTRL_BREAK_EVENT]  # type: ignore[attr-defined]
    for sig, grace in zip(steps, GRACE_SECONDS):
        try:
            if os.name != "nt":
                os.killpg(process.pid, sig)
            else:
                process.send_signal(sig)
        except (ProcessLookupError, PermissionError, OSError):
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if process.poll() is not None:
                return
            time.sleep(0.05)
    try:
        if os.name != "nt":
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()
    except (ProcessLookupError, PermissionError, OSError):
        pass
