"""The `geomreg` command line: `register`, `sample`, `train`, and the commands that installed packages add
through the `geomreg.commands` entry-point group (`batch`, from pipelines).

Exit codes: 0 registered, 1 registration failed, 2 bad input (the message names the file and the problem),
3 the outputs could not be written (no space left, permission denied, read-only file system, a vanished
folder: one line "<path>: <cause>", the previous outputs kept). See docs/failure_modes.md.

`geomreg register --progress-json` is for programs that drive the CLI (the QGIS plugin): no tqdm bars,
and stderr carries one JSON object per line instead of text:

    {"event": "progress", "stage": "tiles", "done": 12, "total": 25, "progress": 0.43}
    {"event": "log", "level": "WARNING", "logger": "geomreg.geo.plan", "message": "..."}
    {"event": "result", "status": "registered", "rmse_px": 0.21, "rmse_map": 6.3, "n_inliers": 381,
     "reason": null, "transform": "affine", "ce90_px": 0.3, "outputs": {"raster": "...", "report": "..."}}
    {"event": "error", "message": "moving.tif: file not found", "code": 2}   (+ "traceback" when unexpected)

`progress` is the overall fraction over all stages (coarse tiles, tiles, fusion, writing); the last line
is either the result (exit code 0 registered, 1 failed) or the error (its `code` is the exit code).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import signal
import sys
import threading
import traceback
from pathlib import Path
from typing import Iterator

import click

from geomreg.cli_options import (
    EXIT_BAD_INPUT, EXIT_CODES_REGISTER, EXIT_FAILED, EXIT_OK, EXIT_OUTPUT, config_from_options, registration_options,
)

log = logging.getLogger(__name__)

# Commands that other installed packages add to `geomreg` (pipelines adds `batch`): entry points of this group,
# each naming a click command. The library never imports those packages itself.
COMMANDS_GROUP = "geomreg.commands"

__all__ = ["main", "registration_options", "config_from_options", "EXIT_OK", "EXIT_FAILED", "EXIT_BAD_INPUT", "EXIT_OUTPUT",
           "COMMANDS_GROUP"]


# --- machine-readable output (--progress-json) ---------------------------------------------------


def _json_number(v) -> float | None:
    """JSON has no NaN: a missing statistic is null."""
    if v is None:
        return None
    v = float(v)
    return v if math.isfinite(v) else None


def emit_json(obj: dict) -> None:
    """One JSON object on one line of stderr, flushed at once (a reader follows the run line by line)."""
    click.echo(json.dumps(obj, separators=(",", ":"), default=str), err=True)


class JsonProgress:
    """The progress callable of `register(progress=...)` that writes JSON progress lines."""

    def __call__(self, fraction: float, stage: str) -> None:  # the plain-callable form, for completeness
        emit_json({"event": "progress", "stage": stage, "progress": round(float(fraction), 4)})

    def on_event(self, ev) -> None:
        emit_json({"event": "progress", "stage": ev.stage, "done": ev.done, "total": ev.total, "progress": round(ev.progress, 4)})


class _JsonLogHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            emit_json({"event": "log", "level": record.levelname, "logger": record.name, "message": record.getMessage()})
        except Exception:  # noqa: BLE001 - logging must never stop a registration
            self.handleError(record)


@contextlib.contextmanager
def _json_logging() -> Iterator[None]:
    """While a --progress-json command runs, log records (and Python warnings) leave as JSON lines; the plain
    stderr handler that `main` installed is detached so that no text line interleaves with them."""
    root = logging.getLogger()
    plain = [h for h in root.handlers if type(h) is logging.StreamHandler]
    for h in plain:
        root.removeHandler(h)
    handler = _JsonLogHandler()
    root.addHandler(handler)
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        root.removeHandler(handler)
        for h in plain:
            root.addHandler(h)


def _result_event(reg) -> dict:
    return {
        "event": "result", "status": reg.status, "rmse_px": _json_number(reg.rmse), "rmse_map": _json_number(reg.rmse_map),
        "n_inliers": int(reg.n_inliers), "reason": reg.reason, "transform": reg.transform_kind,
        "ce90_px": _json_number(reg.ce90), "outputs": dict(reg.outputs),
    }


def _fail(message: str, code: int, as_json: bool = False) -> None:
    if as_json:
        emit_json({"event": "error", "message": message, "code": code})
    else:
        click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _honour_sigint() -> None:
    """With --progress-json, SIGINT is how the controlling program cancels (the QGIS plugin does). A process
    started from a non-interactive shell's background job inherits SIGINT ignored, and would then run to the
    end and write its outputs: restore Python's handler, which _guard turns into "interrupted", exit 1."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _guard(f):
    """Bad input -> message on stderr and exit 2, outputs the machine cannot take -> one line "<path>: <cause>"
    and exit 3, never a traceback for those. With --progress-json every way out
    is a JSON line: the error event (for an unexpected exception with its traceback, exit code 1)."""

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        from geomreg.api import MatcherUnavailable
        from geomreg.geo.errors import InputError, OutputError

        as_json = bool(kwargs.get("progress_json"))
        if as_json:
            _honour_sigint()  # KeyboardInterrupt below is the program's cancel
        try:
            return f(*args, **kwargs)
        except InputError as e:
            _fail(str(e), EXIT_BAD_INPUT, as_json)
        except OutputError as e:
            _fail(str(e), EXIT_OUTPUT, as_json)
        except MatcherUnavailable as e:
            _fail(f"{e} (try --matcher cfog)", EXIT_BAD_INPUT, as_json)
        except KeyboardInterrupt:
            _fail("interrupted; no output written", EXIT_FAILED, as_json)
        except Exception as e:  # noqa: BLE001 - only reached with --progress-json; otherwise re-raised as before
            if not as_json:
                raise
            # The traceback rides along in the error event (a reader takes the first error line as the cause).
            emit_json({"event": "error", "message": f"{type(e).__name__}: {e}", "code": EXIT_FAILED,
                       "traceback": traceback.format_exc()})
            sys.exit(EXIT_FAILED)

    return wrapper


class _JsonUsageErrors(click.Command):
    """A command whose usage errors (bad option values) also come out as a JSON error line when the
    command line asks for --progress-json; click then prints its usual usage text and exits 2."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        wants_json = "--progress-json" in args
        try:
            return super().parse_args(ctx, args)
        except click.exceptions.Exit:
            raise
        except click.ClickException as e:
            if wants_json:
                emit_json({"event": "error", "message": e.format_message(), "code": e.exit_code})
            raise


@click.group()
@click.version_option(package_name="geomreg")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
def main(verbose: int) -> None:
    """geomreg: co-registration of multimodal satellite imagery with RegNetMamba-2."""
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


def _summary(reg, out: Path | None, failure_to_stderr: bool = True) -> None:
    kind = reg.transform_kind or "-"
    if reg.status == "registered":
        click.echo(f"registered: {kind}, RMSE {reg.rmse:.3f} px ({reg.rmse_map:.3g} map units), CE90 {reg.ce90:.3f} px, "
                   f"{reg.n_inliers} inlier tie points of {len(reg._tie_points)}")
        for k, v in reg.outputs.items():
            click.echo(f"  {k}: {v}")
    else:
        click.echo(f"registration failed: {reg.reason}", err=failure_to_stderr)
        if reg.outputs.get("report"):
            click.echo(f"  report: {reg.outputs['report']}", err=failure_to_stderr)


@main.command("register", cls=_JsonUsageErrors, epilog=EXIT_CODES_REGISTER)
@click.argument("reference", type=str)
@click.argument("moving", type=str)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Registered raster (GeoTIFF/COG).")
@registration_options
@click.option("--mode", type=click.Choice(["resample", "georef", "gcps"]), default="resample", show_default=True,
              help="resample onto the reference grid; georef: corrected geotransform only; gcps: embedded GCPs.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--progress/--no-progress", default=True, show_default=True)
@click.option("--progress-json", is_flag=True,
              help="For programs: no progress bars; stderr gets one JSON object per line (progress, log, then result or error).")
@_guard
def register_command(reference, moving, output, mode, overwrite, progress, progress_json, matcher, checkpoint, device, **kw):
    """Register MOVING onto REFERENCE and write OUTPUT with its report, tie points and .points next to it."""
    from geomreg.api import register

    with _json_logging() if progress_json else contextlib.nullcontext():
        cfg = config_from_options(**kw)
        from geomreg.geo.outputs import check_output_path

        check_output_path(output, (reference, moving), overwrite)  # refuse before spending time on matching
        out = Path(output)
        from geomreg._native_stderr import native_stderr_as_log

        # register() writes the outputs itself, so its progress covers writing and a stop leaves nothing.
        with native_stderr_as_log():  # libtiff's own lines on a full disk: the error line says it once
            reg = register(reference, moving, out, matcher=matcher, device=device, checkpoint=checkpoint, overwrite=overwrite,
                           mode=mode, progress=JsonProgress() if progress_json else progress, config=cfg)
        if progress_json:
            _summary(reg, out, failure_to_stderr=False)  # stdout: stderr carries JSON only
            emit_json(_result_event(reg))
        else:
            _summary(reg, out)
    sys.exit(EXIT_OK if reg.status == "registered" else EXIT_FAILED)


@main.command("sample")
@click.option("-o", "--out-dir", type=click.Path(file_okay=False), default="geomreg_sample_output", show_default=True)
@click.option("--matcher", default="auto", show_default=True,
              help="auto: RegNetMamba-2 when its packaged weights are installed and validated, else the CFOG-style matcher.")
@click.option("--device", default="auto", show_default=True)
@click.option("--progress/--no-progress", default=True, show_default=True)
@_guard
def sample_command(out_dir, matcher, device, progress):
    """Register the bundled sample pair (Landsat-8 optical -> SIMULATED SAR-like) and check the known answer."""
    import numpy as np

    from geomreg.api import MatcherUnavailable, register, resolve_matcher
    from geomreg.geo.sample import sample_pair

    pair = sample_pair()
    if matcher == "auto":
        from geomreg.matching.api import auto_matcher_name

        chosen, why = auto_matcher_name()
        try:
            if chosen == "cfog":
                raise MatcherUnavailable(why)
            m = resolve_matcher(chosen, device=device)
        except MatcherUnavailable as e:
            click.echo(f"note: {e}; using the CFOG-style matcher", err=True)
            m = resolve_matcher("cfog", device=device)
    else:
        m = resolve_matcher(matcher, device=device)
    d = Path(out_dir)
    d.mkdir(parents=True, exist_ok=True)
    out = d / "moving_sar_simulated_registered.tif"
    click.echo(f"reference: {pair.reference}\nmoving:    {pair.moving}  (SIMULATED SAR-like, georeferencing off by a known offset)")
    # The sample is small (640 x 640 px): 256 px tiles give the fusion several tiles to compare.
    reg = register(pair.reference, pair.moving, out, matcher=m, tile_size=256, overlap=32, progress=progress, overwrite=True)
    _summary(reg, out)
    if reg.status != "registered":
        sys.exit(EXIT_FAILED)
    poly = reg.plan.overlap
    xs = np.linspace(poly.bounds[0], poly.bounds[2], 11)
    ys = np.linspace(poly.bounds[1], poly.bounds[3], 11)
    gx, gy = np.meshgrid(xs, ys)
    ex, ey = reg.map_to_reference(gx, gy)
    tx, ty = pair.true_map_to_reference(gx, gy)
    err = np.hypot(ex - tx, ey - ty) / reg.plan.reference.grid.res
    click.echo(f"error against the known answer: RMSE {np.sqrt(np.mean(err ** 2)):.3f} px, max {err.max():.3f} px")
    sys.exit(EXIT_OK)


def _add_optional_commands() -> None:
    # Optional commands: the CLI works without them.
    try:
        from geomreg.train.cli_cmd import train_command

        main.add_command(train_command, "train")
    except ImportError:
        pass
    from importlib.metadata import entry_points

    for ep in entry_points(group=COMMANDS_GROUP):
        if ep.name in main.commands:
            continue
        try:
            command = ep.load()
        except ImportError as e:  # a package registered but not importable here: the rest of the CLI still works
            log.debug("geomreg %s is unavailable: %s", ep.name, e)
            continue
        main.add_command(command, ep.name)


_add_optional_commands()

if __name__ == "__main__":  # pragma: no cover
    main()
