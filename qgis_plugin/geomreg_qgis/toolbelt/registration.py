"""One registration, start to finish, shared by the dialog's QgsTask and the Processing algorithm.

Everything the engine writes goes into a hidden staging folder beside the output first, and is
moved into place only when the run succeeded and was not cancelled: whatever happens to the engine
(killed on cancel, crashed, failed), no partial output is ever left where the user looks.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
import os
import re
import shutil
import tempfile
import traceback
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

from .engine import Engine
from .progress import OverallProgress, ProgressEvent
from .request import RegistrationRequest
from .runner import run_cli

STAGING_PREFIX = ".geomreg-staging-"

ProgressCallback = Callable[[float, "str | None"], None]


@dataclass(frozen=True)
class RegistrationOutcome:
    # "registered", "failed" (engine could not register), "bad-input", "output-error" (the machine could not
    # take the outputs: no space left, read-only, permission denied; geomreg's exit code 3), "canceled", "error"
    status: str
    message: str
    output: str = ""
    tie_points: str = ""
    report_path: str = ""
    other_files: tuple[str, ...] = ()
    report: dict = field(default_factory=dict)
    rmse_px: float | None = None
    rmse_map: float | None = None
    n_tie_points: int | None = None

    @property
    def ok(self) -> bool:
        return self.status == "registered"

    def summary(self) -> str:
        parts = []
        if self.rmse_px is not None:
            parts.append(f"{self.rmse_px:.3g} px")
        if self.rmse_map is not None:
            parts.append(f"{self.rmse_map:.3g} map units")
        rmse = f"RMSE {' / '.join(parts)}" if parts else "RMSE not reported"
        points = f", {self.n_tie_points} tie points" if self.n_tie_points is not None else ""
        return f"{Path(self.output).name} registered: {rmse}{points}."


class CanceledByUser(Exception):
    """Raised from a progress callback to stop an in-process run."""


def run_registration(
    request: RegistrationRequest,
    engine: Engine,
    *,
    progress: ProgressCallback,
    is_canceled: Callable[[], bool],
    log: Callable[[str], None],
    tie_points: str = "",
    report: str = "",
) -> RegistrationOutcome:
    """Runs `request` with `engine`; `tie_points`/`report` optionally name where those files go."""
    out_dir = os.path.dirname(os.path.abspath(request.output))
    try:
        staging = tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=out_dir)
    except OSError as exc:
        return RegistrationOutcome("output-error", machine_fault_message(os.path.abspath(request.output), exc))
    staged_output = os.path.join(staging, os.path.basename(request.output))
    try:
        if engine.kind == "in-process":
            outcome = _run_in_process(request, staged_output, progress, is_canceled, log)
        else:
            outcome = _run_subprocess(request, engine, staged_output, progress, is_canceled, log)
        if is_canceled():
            return RegistrationOutcome("canceled", "Registration cancelled: nothing was written.")
        if outcome.status == "failed":
            return _publish_failure_report(outcome, request, staging, report)
        if outcome.status != "registered":
            return outcome
        return _publish(outcome, request, staging, staged_output, tie_points, report)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# --- subprocess -------------------------------------------------------------------------------

def _run_subprocess(
    request: RegistrationRequest,
    engine: Engine,
    staged_output: str,
    progress: ProgressCallback,
    is_canceled: Callable[[], bool],
    log: Callable[[str], None],
) -> RegistrationOutcome:
    # The staging folder is new and empty: the engine never needs --overwrite there.
    args = [a for a in request.cli_args(output=staged_output) if a != "--overwrite"]
    if engine.supports("--progress-json"):
        args.append("--progress-json")
    log(f"Running {engine.python} -m geomreg.cli {' '.join(args)}")
    last_stage: list[str | None] = [None]
    overall = OverallProgress()
    staging_dir = os.path.dirname(staged_output) + os.sep
    out_dir = os.path.dirname(os.path.abspath(request.output)) + os.sep

    def on_event(event: ProgressEvent) -> None:
        if event.progress is not None:
            # JSON lines give the overall fraction; a tqdm bar only its own.
            progress(overall.update(event.progress, event.stage, overall=bool(event.raw)), event.stage)
        if event.stage and event.stage != last_stage[0]:
            last_stage[0] = event.stage
            log(f"stage: {event.stage}")
        if event.message:
            log(event.message.replace(staging_dir, out_dir))

    run = run_cli(engine.python, args, on_event=on_event, is_canceled=is_canceled, cwd=os.path.dirname(staged_output))
    if run.canceled:
        return RegistrationOutcome("canceled", "Registration cancelled: nothing was written.")
    result = run.result or {}
    report = _read_report(staged_output, result)
    if run.returncode == 0:
        if not os.path.exists(staged_output):
            return RegistrationOutcome("error", f"geomreg reported success but wrote no '{Path(request.output).name}'.")
        return _registered(staged_output, result, report)
    # Messages name the staged output: the user knows only the final one.
    reason = str(result.get("reason") or result.get("message") or run.failure_message()).replace(staging_dir, out_dir)
    if run.returncode == 1:
        return RegistrationOutcome("failed", f"Registration failed: {reason}", report=report)
    if run.returncode == 2:
        return RegistrationOutcome("bad-input", reason)
    if run.returncode == 3:
        # The engine's one line, "<output>: no space left on device": the message bar and the log show it as is.
        return RegistrationOutcome("output-error", reason)
    return RegistrationOutcome("error", f"geomreg stopped with exit code {run.returncode}: {reason}")


# --- in-process ---------------------------------------------------------------------------------

def _run_in_process(
    request: RegistrationRequest,
    staged_output: str,
    progress: ProgressCallback,
    is_canceled: Callable[[], bool],
    log: Callable[[str], None],
) -> RegistrationOutcome:
    # Inside QGIS the engine leaves malloc as it is: its CPU tuning keeps freed memory in the process for
    # reuse, right for a matching job, not for a desktop session that goes on long after one registration.
    os.environ.setdefault("GEOMREG_CPU_ALLOCATOR", "system")
    import geomreg  # noqa: PLC0415 (the engine is only imported when used: torch is slow to load)

    def on_progress(fraction: float, stage: str | None = None) -> None:
        # The engine calls this between batches: raising here is how a cancel reaches it.
        if is_canceled():
            raise CanceledByUser()
        progress(float(fraction), stage)

    # Only an engine that takes a progress callable gets one (an older one would read it as True and
    # draw a tqdm bar on QGIS's stderr); without it a cancel takes effect when the engine returns.
    progress_arg = on_progress if accepts_progress_callback(geomreg.register) else False
    log(f"Running geomreg.register({request.reference!r}, {request.moving!r}, output=..., {request.api_kwargs()})")
    try:
        # register() writes a resampled output itself; the other modes go through Registration.write.
        resample = request.write_mode == "resample"
        reg = geomreg.register(
            request.reference, request.moving, output=staged_output if resample else None, progress=progress_arg,
            **request.api_kwargs(),
        )
        if not resample and getattr(reg, "status", "") == "registered":
            reg.write(staged_output, mode=request.write_mode)
    except CanceledByUser:
        return RegistrationOutcome("canceled", "Registration cancelled: nothing was written.")
    except OSError as exc:
        if hasattr(exc, "cause") and hasattr(exc, "path"):  # geomreg.OutputError: the same line the CLI prints
            staging_dir = os.path.dirname(staged_output) + os.sep
            out_dir = os.path.dirname(os.path.abspath(request.output)) + os.sep
            return RegistrationOutcome("output-error", str(exc).replace(staging_dir, out_dir))
        return RegistrationOutcome("bad-input", str(exc))
    except ValueError as exc:
        return RegistrationOutcome("bad-input", str(exc))
    except Exception as exc:  # noqa: BLE001 (any engine error must reach the user as a message, not kill QGIS)
        log(traceback.format_exc())
        return RegistrationOutcome("error", f"geomreg failed: {type(exc).__name__}: {exc}")
    status = str(getattr(reg, "status", "registered"))
    report = dict(getattr(reg, "report", {}) or {})
    if status != "registered":
        reason = report.get("reason") or report.get("message") or status
        return RegistrationOutcome("failed", f"Registration failed: {reason}", report=report)
    if not os.path.exists(staged_output):
        return RegistrationOutcome("error", f"geomreg reported success but wrote no '{Path(request.output).name}'.")
    result = {"rmse_px": getattr(reg, "rmse", None), "rmse_map": getattr(reg, "rmse_map", None),
              "n_inliers": getattr(reg, "n_inliers", None)}
    return _registered(staged_output, result, report)


def accepts_progress_callback(register: Callable) -> bool:
    """Does `register(progress=...)` take a callable `progress(fraction, stage)`? (Read off its annotation.)"""
    try:
        annotation = inspect.signature(register).parameters["progress"].annotation
    except (KeyError, TypeError, ValueError):
        return False
    return "Callable" in str(annotation)


# --- outputs ------------------------------------------------------------------------------------

def _read_report(staged_output: str, result: dict) -> dict:
    staging = os.path.dirname(staged_output)
    named = result.get("report")
    candidates = [named] if isinstance(named, str) else []
    candidates += sorted(str(p) for p in Path(staging).glob("*.json"))
    for path in candidates:
        try:
            with open(path, encoding="utf-8") as fh:
                data = json.load(fh)
            if isinstance(data, dict):
                return data
        except (OSError, ValueError):
            continue
    return {}


def _registered(staged_output: str, result: dict, report: dict) -> RegistrationOutcome:
    # The report is the engine's full account; the result line (or API attributes) fills what it lacks.
    rmse_px, rmse_map = find_rmse(report)
    fallback_px, fallback_map = find_rmse(result)
    rmse_px = rmse_px if rmse_px is not None else fallback_px
    rmse_map = rmse_map if rmse_map is not None else fallback_map
    n_points = _find_count(report)
    n_points = n_points if n_points is not None else _find_count(result)
    return RegistrationOutcome(
        "registered", "registered", output=staged_output, report=report, rmse_px=rmse_px, rmse_map=rmse_map,
        n_tie_points=n_points,
    )


def _flatten(obj: object, prefix: str = "") -> dict[str, object]:
    flat: dict[str, object] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    else:
        flat[prefix] = obj
    return flat


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(float(value)) else None


_RMSE_KEYS = {
    "px": ("rmse_px", "rmse.px", "statistics.rmse_px", "result.rmse_px"),
    "map": ("rmse_map", "rmse.map", "statistics.rmse_map", "result.rmse_map"),
}
_COUNT_KEYS = ("n_inliers", "inliers", "counts.inliers", "counts.n_inliers", "statistics.n_inliers", "n_tie_points")


def find_rmse(obj: dict) -> tuple[float | None, float | None]:
    """(RMSE in pixels, RMSE in map units) of the fitted transform, from a result line or a report."""
    flat = _flatten(obj)
    found: dict[str, float | None] = {}
    for unit, keys in _RMSE_KEYS.items():
        found[unit] = next((_number(flat[k]) for k in keys if k in flat and _number(flat[k]) is not None), None)
    if found["px"] is None and found["map"] is None:
        # Another layout: any other RMSE, except per-tile, coarse-pass or cross-validation ones.
        for key, value in flat.items():
            low, number = key.lower(), _number(value)
            if number is None or "rmse" not in low or re.search(r"tile|coarse|cv|fold|ce90", low):
                continue
            unit = "px" if re.search(r"px|pix", low) else "map"
            found[unit] = number if found[unit] is None else found[unit]
    return found["px"], found["map"]


def _find_count(obj: dict) -> int | None:
    flat = _flatten(obj)
    for key in _COUNT_KEYS:
        if key in flat and _number(flat[key]) is not None:
            return int(flat[key])  # type: ignore[arg-type]
    return None


def _destination(staged: Path, request: RegistrationRequest, tie_points: str, report: str) -> str:
    out_dir = os.path.dirname(os.path.abspath(request.output))
    if staged.name == os.path.basename(request.output):
        return os.path.abspath(request.output)
    if staged.suffix.lower() == ".gpkg" and tie_points:
        return tie_points
    if staged.suffix.lower() == ".json" and report:
        return report
    return os.path.join(out_dir, staged.name)


def _publish(
    outcome: RegistrationOutcome,
    request: RegistrationRequest,
    staging: str,
    staged_output: str,
    tie_points: str,
    report_path: str,
) -> RegistrationOutcome:
    """Moves the staged files to their destinations, refusing to replace files unless overwrite."""
    moves = [(str(p), _destination(p, request, tie_points, report_path)) for p in sorted(Path(staging).iterdir())]
    if not request.overwrite:
        existing = [dst for _, dst in moves if os.path.exists(dst)]
        if existing:
            return RegistrationOutcome("bad-input", f"Output '{existing[0]}' already exists (tick 'Overwrite' to replace it).")
    try:
        published = _swap_in(moves)
    except _PublishError as exc:
        return RegistrationOutcome("output-error", str(exc))
    final_report = _retarget_paths(outcome.report, published)
    assert isinstance(final_report, dict)
    gpkgs = [dst for src, dst in published.items() if dst.lower().endswith(".gpkg")]
    jsons = [dst for src, dst in published.items() if dst.lower().endswith(".json")]
    if final_report != outcome.report and jsons:
        _rewrite_json(jsons[0], final_report)
    main = published.get(staged_output, os.path.abspath(request.output))
    used = {main, *(gpkgs[:1]), *(jsons[:1])}
    return RegistrationOutcome(
        "registered",
        "registered",
        output=main,
        tie_points=_pick_tie_points(gpkgs),
        report_path=jsons[0] if jsons else "",
        other_files=tuple(dst for dst in published.values() if dst not in used),
        report=final_report,
        rmse_px=outcome.rmse_px,
        rmse_map=outcome.rmse_map,
        n_tie_points=outcome.n_tie_points,
    )


def _publish_failure_report(
    outcome: RegistrationOutcome, request: RegistrationRequest, staging: str, report_path: str
) -> RegistrationOutcome:
    """A failed registration keeps its report (why it failed, tie-point counts), as the CLI does."""
    staged = sorted(Path(staging).glob("*.json"))
    if not staged:
        return outcome
    destination = _destination(staged[0], request, "", report_path)
    if os.path.exists(destination) and not request.overwrite:
        return outcome
    try:
        _swap_in([(str(staged[0]), destination)])
    except _PublishError as exc:
        return replace(outcome, message=f"{outcome.message} (its report could not be kept: {exc})")
    return replace(outcome, message=f"{outcome.message} (report: {destination})", report_path=destination)


def _pick_tie_points(gpkgs: list[str]) -> str:
    for path in gpkgs:
        if "tie" in Path(path).name.lower() or "point" in Path(path).name.lower():
            return path
    return gpkgs[0] if gpkgs else ""


def machine_fault_message(path: str, exc: OSError) -> str:
    """The line geomreg prints for an output the machine could not take: "<path>: no space left on device"."""
    return f"{path}: {(exc.strerror or str(exc)).lower()}"


class _PublishError(Exception):
    pass


def _swap_in(moves: list[tuple[str, str]]) -> dict[str, str]:
    """Moves the staged files to their destinations all or nothing: existing files are first renamed to
    backups beside them, then the new ones moved in; a failure puts the backups back and removes what
    was moved, so the previous set stays whole. Raises _PublishError with the one-line reason."""
    token = uuid.uuid4().hex[:8]
    backups: list[tuple[str, str]] = []
    published: dict[str, str] = {}
    current = moves[0][1] if moves else ""
    try:
        for _, dst in moves:
            current = dst
            if os.path.exists(dst):
                bak = os.path.join(os.path.dirname(dst), f".{os.path.basename(dst)}.{token}.old")
                os.replace(dst, bak)
                backups.append((bak, dst))
        for src, dst in moves:
            current = dst
            _move_atomically(src, dst)
            published[src] = dst
    except OSError as exc:
        for dst in published.values():
            if not any(d == dst for _, d in backups):
                with contextlib.suppress(OSError):
                    os.remove(dst)
        for bak, dst in backups:
            with contextlib.suppress(OSError):
                os.replace(bak, dst)
        raise _PublishError(machine_fault_message(current, exc)) from exc
    for bak, _ in backups:
        with contextlib.suppress(OSError):
            os.remove(bak)
    return published


def _move_atomically(src: str, dst: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    try:
        os.replace(src, dst)  # same file system: atomic
    except OSError:
        # Another file system: copy next to the destination under a temporary name, then rename.
        tmp = os.path.join(os.path.dirname(os.path.abspath(dst)), f".{Path(dst).name}.{uuid.uuid4().hex}.partial")
        try:
            shutil.copy2(src, tmp)
            os.replace(tmp, dst)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)


def _retarget_paths(obj: object, moved: dict[str, str]) -> object:
    """The report names the staged files; once moved, it must name where they are."""
    if isinstance(obj, dict):
        return {k: _retarget_paths(v, moved) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_retarget_paths(v, moved) for v in obj]
    if isinstance(obj, str):
        for src, dst in moved.items():
            if src in obj:
                return obj.replace(src, dst)
    return obj


def _rewrite_json(path: str, data: object) -> None:
    tmp = f"{path}.{uuid.uuid4().hex}.partial"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh, indent=2, default=str)
    os.replace(tmp, path)
