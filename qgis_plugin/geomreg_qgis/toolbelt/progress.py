"""Reading the progress of `geomreg register` from its output, one line at a time.

Preferred protocol (`--progress-json`): one JSON object per line, e.g.
    {"event": "progress", "progress": 0.42, "stage": "matching", "done": 21, "total": 50}
    {"event": "result", "status": "registered", "rmse_px": 0.21, "output": "...", "tie_points": "...", "report": "..."}
    {"event": "error", "message": "moving raster 'b.tif' has no CRS"}
Fallback, for a CLI without that option: tqdm bars ("matching:  42%|####      | 21/50 [...]").
Any other line is a plain log line.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

_ERROR_PREFIXES = ("error", "usage:", "registration failed")
_TQDM = re.compile(r"(?:^|\s)(?:(?P<desc>[^|\r\n]*?):\s*)?(?P<pct>\d{1,3})%\|")


@dataclass(frozen=True)
class ProgressEvent:
    progress: float | None = None  # fraction in [0, 1]
    stage: str | None = None
    message: str | None = None  # a human-readable line (log or error)
    is_error: bool = False
    result: dict | None = None  # the final result object, when the line carries it
    raw: dict = field(default_factory=dict)


def parse_line(line: str) -> ProgressEvent | None:
    """The event a line of CLI output carries, or None for an empty line."""
    text = line.strip()
    if not text:
        return None
    if text.startswith("{") and text.endswith("}"):
        event = _parse_json(text)
        if event is not None:
            return event
    match = _TQDM.search(text)
    if match:
        pct = min(100, int(match.group("pct")))
        desc = (match.group("desc") or "").strip() or None
        return ProgressEvent(progress=pct / 100.0, stage=desc)
    return ProgressEvent(message=text, is_error=text.lower().startswith(_ERROR_PREFIXES))


def _parse_json(text: str) -> ProgressEvent | None:
    try:
        obj = json.loads(text)
    except ValueError:
        return None
    if not isinstance(obj, dict):
        return None
    kind = str(obj.get("event", obj.get("type", ""))).lower()
    progress = _fraction(obj)
    stage = obj.get("stage")
    message = obj.get("message")
    is_error = kind == "error" or str(obj.get("level", "")).lower() in ("error", "critical")
    is_result = kind in ("result", "done", "finished") or ("status" in obj and kind not in ("progress", "error"))
    result = obj if is_result else None
    return ProgressEvent(
        progress=progress,
        stage=str(stage) if stage is not None else None,
        message=str(message) if message is not None else None,
        is_error=is_error,
        result=result,
        raw=obj,
    )


def _fraction(obj: dict) -> float | None:
    if isinstance(obj.get("progress"), (int, float)):
        value = float(obj["progress"])
        # A CLI could count in percent: anything above 1 is read as such.
        return max(0.0, min(1.0, value / 100.0 if value > 1.0 else value))
    if isinstance(obj.get("percent"), (int, float)):
        return max(0.0, min(1.0, float(obj["percent"]) / 100.0))
    done, total = obj.get("done"), obj.get("total")
    if isinstance(done, (int, float)) and isinstance(total, (int, float)) and total > 0:
        return max(0.0, min(1.0, float(done) / float(total)))
    return None


class LineSplitter:
    """Turns a byte stream into lines, treating "\\r" (tqdm's redraws) as a line end too."""

    def __init__(self) -> None:
        self._buffer = ""

    def feed(self, chunk: str) -> list[str]:
        self._buffer += chunk
        parts = re.split(r"\r\n|\r|\n", self._buffer)
        self._buffer = parts.pop()
        return parts

    def flush(self) -> list[str]:
        rest, self._buffer = self._buffer, ""
        return [rest] if rest else []


# Share of the whole run taken by each of geomreg's tqdm bars (read off typical runs: matching
# dominates). Only used for the tqdm fallback: JSON progress lines carry the overall fraction.
STAGE_SPANS = {"coarse tiles": (0.0, 0.15), "tiles": (0.15, 0.9), "writing": (0.9, 1.0)}


class OverallProgress:
    """Turns per-bar fractions into one overall fraction that never goes back."""

    def __init__(self, spans: dict[str, tuple[float, float]] | None = None) -> None:
        self._spans = STAGE_SPANS if spans is None else spans
        self._value = 0.0

    def update(self, fraction: float, stage: str | None, overall: bool) -> float:
        if overall:
            value = fraction
        elif stage in self._spans:
            lo, hi = self._spans[stage]
            value = lo + (hi - lo) * fraction
        else:
            # An unknown bar: it moves within what is left, so that the total stays monotonic.
            value = self._value + (1.0 - self._value) * fraction * 0.5
        self._value = max(self._value, min(1.0, value))
        return self._value
