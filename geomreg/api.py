"""`geomreg.register`: plan -> (coarse pass) -> match tiles in batches -> fuse -> write.

Progress: `register(progress=True)` draws tqdm bars; `progress=callable` calls `callable(fraction, stage)`
instead (fraction: the overall share of the work done, 0..1; stage: "coarse tiles", "tiles", "fusion",
"writing"). When the callable raises (a GUI's cancel), registration stops there and leaves no output.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from geomreg.geo.config import RegistrationConfig, parse_max_shift
from geomreg.geo.errors import InputError
from geomreg.geo.memory import bounded_gdal_cache, parse_memory
from geomreg.geo.plan import RegistrationPlan, plan_registration, refine_plan
from geomreg.geo.registration import Registration
from geomreg.geo.tiles import TileMatches, match_tiles
from geomreg.matching.types import ImageMatcher

log = logging.getLogger(__name__)

__all__ = ["register", "resolve_matcher", "build_config", "run_tiles", "register_tiles", "ProgressCallback", "ProgressEvent", "ProgressTracker",
           "STAGES"]

ProgressCallback = Callable[[float, str], None]

# The stages of a registration, in order. "coarse tiles" only happens when the plan needs a coarse pass.
STAGES = ("coarse tiles", "tiles", "fusion", "writing")
# Shares of the overall fraction for the stages that are not tile matching (matching dominates the run
# time with any learned matcher; fusion is a few robust fits; writing resamples the scene once).
_FUSION_SHARE = 0.05
_WRITING_SHARE = 0.10


@dataclass(frozen=True)
class ProgressEvent:
    """One step of a registration: `done` of `total` units of `stage`; `progress` is the overall fraction."""

    stage: str
    done: int
    total: int
    progress: float


class ProgressTracker:
    """Turns per-stage counts into one overall, never-decreasing fraction and hands it to a callback.

    A plain callable receives `(fraction, stage)`. A callable that also has an `on_event(ProgressEvent)`
    method (the CLI's --progress-json writer) receives the full event there instead. Whatever the callback
    raises propagates: that is how a caller cancels a registration.
    """

    def __init__(self, callback: ProgressCallback) -> None:
        self._callback = callback
        self._on_event = getattr(callback, "on_event", None)
        self._spans: dict[str, tuple[float, float]] = {}
        self._value = 0.0

    def begin(self, n_coarse: int, n_tiles: int, writes: bool) -> None:
        """Lay the stages out on [0, 1]: matching stages in proportion to their tile counts."""
        tail = _FUSION_SHARE + (_WRITING_SHARE if writes else 0.0)
        matching = 1.0 - tail
        n = max(n_coarse + n_tiles, 1)
        c1 = matching * n_coarse / n
        self._spans = {"coarse tiles": (0.0, c1), "tiles": (c1, matching), "fusion": (matching, matching + _FUSION_SHARE)}
        if writes:
            self._spans["writing"] = (matching + _FUSION_SHARE, 1.0)
        else:
            self._spans["fusion"] = (matching, 1.0)

    def update(self, stage: str, done: int, total: int) -> None:
        lo, hi = self._spans.get(stage, (self._value, self._value))
        frac = 1.0 if total <= 0 else min(max(done / total, 0.0), 1.0)
        self._value = max(self._value, min(1.0, lo + (hi - lo) * frac))
        ev = ProgressEvent(stage, int(done), int(total), self._value)
        if self._on_event is not None:
            self._on_event(ev)
        else:
            self._callback(ev.progress, ev.stage)


def _tracker(progress: bool | ProgressCallback) -> tuple[bool, ProgressTracker | None]:
    """(draw tqdm bars?, tracker for a callback) from register's `progress` argument."""
    if callable(progress):
        return False, ProgressTracker(progress)
    return bool(progress), None


class MatcherUnavailable(RuntimeError):
    """The requested matcher cannot be built (e.g. no trained weights). CLI exit code 2."""


def resolve_matcher(matcher: str | ImageMatcher, device: str = "auto", checkpoint: str | None = None) -> ImageMatcher:
    """A matcher instance from a name ("regnetmamba2", "cfog") or the instance itself."""
    if not isinstance(matcher, str):
        if not callable(getattr(matcher, "match_batch", None)):
            raise InputError(f"matcher must be a name or an ImageMatcher (with match/match_batch), got {type(matcher).__name__}")
        return matcher
    name = matcher.strip().lower()
    try:
        from geomreg.matching.api import get_matcher
    except ImportError:
        get_matcher = None
    if get_matcher is None:
        if name == "cfog":
            from geomreg.matching.cfog import CFOGMatcher

            return CFOGMatcher()
        raise MatcherUnavailable(f"matcher {matcher!r} is not available in this installation (geomreg.matching.api missing)")
    try:
        return get_matcher(name, device=device, checkpoint=checkpoint)
    except (InputError, MatcherUnavailable):
        raise
    except Exception as e:  # noqa: BLE001 - any failure to build a matcher is reported the same way
        raise MatcherUnavailable(f"matcher {matcher!r} cannot be loaded: {e}") from e


def build_config(config: RegistrationConfig | None = None, **options: Any) -> RegistrationConfig:
    """RegistrationConfig from keyword options (None values are ignored; max_shift accepts '300m')."""
    cfg = config or RegistrationConfig()
    opts = {k: v for k, v in options.items() if v is not None}
    if "max_memory" in opts:
        opts["max_memory"] = parse_memory(opts["max_memory"])
    if "max_shift" in opts:
        value, unit = parse_max_shift(opts["max_shift"])
        opts["max_shift"] = value
        opts.setdefault("max_shift_unit", unit)
    unknown = set(opts) - set(RegistrationConfig.field_names())
    if unknown:
        raise TypeError(f"unknown registration option(s): {', '.join(sorted(unknown))}")
    return replace(cfg, **opts)


def _as_path(obj, role: str, tmpdir: list) -> str:
    """A path for a path-like or a rioxarray DataArray (written to a temporary GeoTIFF window by window)."""
    if isinstance(obj, (str, os.PathLike)):
        return os.fspath(obj)
    if hasattr(obj, "rio") and hasattr(obj, "dims"):
        if not tmpdir:
            tmpdir.append(tempfile.TemporaryDirectory(prefix="geomreg-"))
        p = Path(tmpdir[0].name) / f"{role}.tif"
        try:
            obj.rio.to_raster(p, tiled=True, windowed=True, compress="deflate")
        except Exception as e:  # noqa: BLE001
            raise InputError(f"{role} DataArray cannot be written as a raster: {e}") from e
        return str(p)
    raise InputError(f"{role}: expected a path or a rioxarray DataArray, got {type(obj).__name__}")


def expected_tiles(plan: RegistrationPlan) -> int:
    """Full-resolution tiles the plan will match (known before the coarse pass: the grid does not move)."""
    if plan.tasks or not plan.needs_coarse:
        return len(plan.tasks)
    from geomreg.geo.tiling import tile_windows

    return len(tile_windows(plan.grid, plan.overlap, plan.config.tile_size, plan.config.overlap))


def run_tiles(plan: RegistrationPlan, matcher: ImageMatcher, progress: bool = False, *,
              tracker: ProgressTracker | None = None) -> tuple[RegistrationPlan, list[TileMatches], dict]:
    """Coarse pass when the plan needs one, then every full-resolution tile, in batches with a progress bar
    (`progress`) and/or a ProgressTracker updated after every batch (geomreg.register matches progressively
    instead: register_tiles)."""
    timings: dict[str, float] = {}
    plan, coarse = _coarse_pass(plan, matcher, progress, tracker, timings)
    t0 = time.perf_counter()
    fine = _batched(plan.tasks, matcher, plan.config.batch_size, progress, "tiles", tracker, plan.config.max_memory)
    timings["match_s"] = round(time.perf_counter() - t0, 4)
    timings["tiles_per_s"] = round(len(plan.tasks) / max(timings["match_s"], 1e-9), 3)
    return plan, coarse + fine, timings


def _coarse_pass(plan: RegistrationPlan, matcher: ImageMatcher, progress: bool, tracker: ProgressTracker | None,
                 timings: dict) -> tuple[RegistrationPlan, list[TileMatches]]:
    """The coarse tiles' matches and the plan refined by them when the plan needs a coarse pass (records
    timings["coarse_s"]); else the plan as it is and no matches."""
    if not plan.needs_coarse:
        return plan, []
    t0 = time.perf_counter()
    coarse = _batched(plan.coarse_tasks, matcher, plan.config.batch_size, progress, "coarse tiles", tracker, plan.config.max_memory)
    refined = refine_plan(plan, coarse)
    timings["coarse_s"] = round(time.perf_counter() - t0, 4)
    return refined, coarse


def _batched(tasks, matcher, batch_size: int, progress: bool, desc: str, tracker: ProgressTracker | None = None,
             max_memory: int | None = None) -> list[TileMatches]:
    from tqdm.auto import tqdm

    total = len(tasks)
    with tqdm(total=total, desc=desc, unit="tile", disable=not progress, leave=False) as bar:
        return _match_chunks(tasks, matcher, batch_size, desc, total, 0, bar, tracker, max_memory)


def _match_chunks(tasks, matcher, batch_size: int, desc: str, total: int, done: int, bar, tracker: ProgressTracker | None,
                  max_memory: int | None) -> list[TileMatches]:
    """Match tasks a batch at a time; `done` of `total` tiles of the stage were matched before these."""
    out: list[TileMatches] = []
    if tracker is not None:
        tracker.update(desc, done, total)  # a cancel before the first (possibly long) batch is honoured too
    for i in range(0, len(tasks), batch_size):
        chunk = list(tasks[i : i + batch_size])
        out.extend(match_tiles(chunk, matcher, batch_size=batch_size, max_memory=max_memory))
        bar.update(len(chunk))
        if tracker is not None:
            tracker.update(desc, done + min(i + batch_size, len(tasks)), total)
    return out


def register_tiles(plan: RegistrationPlan, matcher: ImageMatcher, progress: bool = False, *,
                   tracker: ProgressTracker | None = None, timings: dict | None = None) -> Registration:
    """Coarse pass when the plan needs one, then the full-resolution tiles matched progressively (a spread
    sample first, more until the model's uncertainty meets config.max_uncertainty; every tile with
    config.tiles == "all" or a thin-plate spline: geomreg/geo/sampling.py), fused into a Registration."""
    from tqdm.auto import tqdm

    from geomreg.geo.sampling import progressive

    timings = dict(timings or {})
    plan, coarse = _coarse_pass(plan, matcher, progress, tracker, timings)
    cfg = plan.config
    bs = cfg.batch_size
    n = len(plan.tasks)
    state = {"done": 0, "match_s": 0.0}
    name = getattr(matcher, "name", type(matcher).__name__)
    with tqdm(total=n, desc="tiles", unit="tile", disable=not progress, leave=False) as bar:

        def match(tasks) -> list[TileMatches]:
            t0 = time.perf_counter()
            out = _match_chunks(tasks, matcher, bs, "tiles", n, state["done"], bar, tracker, cfg.max_memory)
            state["done"] += len(tasks)
            state["match_s"] += time.perf_counter() - t0
            timings["match_s"] = round(state["match_s"], 4)
            timings["tiles_per_s"] = round(state["done"] / max(state["match_s"], 1e-9), 3)
            return out

        t0 = time.perf_counter()
        reg, _ = progressive(plan, match, coarse, timings=timings, matcher_name=name)
    # fusion rounds: the time of the rounds' fits, not of the matching between them
    reg.timings["fusion_rounds_s"] = round(time.perf_counter() - t0 - state["match_s"], 4)
    return reg


def register(
    reference,
    moving,
    output: str | os.PathLike | None = None,
    *,
    transform: str = "auto",
    matcher: str | ImageMatcher = "auto",
    tile_size: int | None = None,
    overlap: int | None = None,
    max_shift: float | str | None = None,
    device: str = "auto",
    progress: bool | Callable[[float, str], None] = True,  # spelled out: callers read "Callable" off the annotation
    overwrite: bool = False,
    checkpoint: str | None = None,
    config: RegistrationConfig | None = None,
    mode: str = "resample",
    max_memory: int | str | None = None,
    tiles: str | None = None,
    **options: Any,
) -> Registration:
    """Register `moving` onto `reference` (paths or rioxarray DataArrays).

    Returns a Registration (check .status). With `output`, writes the registered raster and, next to
    it, the report (<stem>_report.json), tie points (<stem>_tiepoints.gpkg) and a QGIS .points file;
    a failed registration writes its report only. Bad input raises InputError before anything is written.
    Extra keyword options are RegistrationConfig fields (ref_band, mov_band, pixel_mode, resolution, ...);
    options left at None (and transform left at "auto" when a config is given) keep the config's values
    (defaults: RegistrationConfig: 512 px tiles, 64 px overlap, max_shift 32 px).

    progress: True draws tqdm bars, False nothing; a callable `progress(fraction, stage)` is called with the
    overall fraction (0..1) and the stage ("coarse tiles", "tiles", "fusion", "writing") after every batch
    of tiles and around fusion and writing. If it raises, registration stops, nothing written stays behind,
    and the exception propagates. mode: how `output` is written ("resample", "georef", "gcps"; see
    Registration.write).

    max_memory: the RSS tile matching may reach (bytes, or '1.5G', '1500MB'); None: 1.5 GB, or half the
    machine's memory when that is less (geomreg/geo/memory.py). The matcher's batches shrink to fit it.
    tiles: "auto" (default) matches a spread sample of tiles, growing until a global model's predicted
    std over the overlap is at most config.max_uncertainty (0.1 px; reg.uncertainty, report "uncertainty");
    "all" matches every tile (a thin-plate spline always does).
    """
    t_start = time.perf_counter()
    if config is not None and transform == "auto":
        transform = None
    from geomreg.geo.registration import WRITE_MODES

    if mode not in WRITE_MODES:
        raise InputError(f"unsupported output mode {mode!r}; choose one of {', '.join(WRITE_MODES)}")
    bars, tracker = _tracker(progress)
    cfg = build_config(config, transform=transform, tile_size=tile_size, overlap=overlap, max_shift=max_shift,
                       max_memory=max_memory, tiles=tiles, **options)
    tmp: list = []
    try:
        ref_path = _as_path(reference, "reference", tmp)
        mov_path = _as_path(moving, "moving", tmp)
        if output is not None:
            from geomreg.geo.outputs import check_output_path
            from geomreg.geo.registration import recover_outputs

            recover_outputs(output)  # a crash mid-replacement of this output set: the previous set returns first
            check_output_path(output, (ref_path, mov_path), overwrite)
        t0 = time.perf_counter()
        with bounded_gdal_cache(cfg.max_memory):  # the overview read goes through every block of the overlap
            plan = plan_registration(ref_path, mov_path, cfg)
        timings = {"plan_s": round(time.perf_counter() - t0, 4)}
        m = resolve_matcher(matcher, device=device, checkpoint=checkpoint)
        if tracker is not None:
            tracker.begin(len(plan.coarse_tasks) if plan.needs_coarse else 0, expected_tiles(plan), writes=output is not None)
        reg = register_tiles(plan, m, progress=bars, tracker=tracker, timings=timings)
        if tracker is not None:
            tracker.update("fusion", 0, 1)
        reg._tmpdir = tmp  # keeps DataArray temporaries alive as long as the result
        log.info("%s: %s (%s, rmse %.3f px, %d inliers)", mov_path, reg.status, reg.transform_kind, reg.rmse, reg.n_inliers)
        if tracker is not None:
            tracker.update("fusion", 1, 1)
        if output is not None:
            if tracker is not None:
                tracker.update("writing", 0, 1)
            # The last progress call comes before the new outputs replace anything: a cancel there (or a
            # fault anywhere in writing) leaves the folder as it was, the previous outputs included.
            done = None if tracker is None else (lambda: tracker.update("writing", 1, 1))
            folder = Path(output).expanduser().parent
            if not folder.is_dir():  # it was there when the run began
                import errno
                import os

                from geomreg.geo.outputs import output_error

                raise output_error(FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(output)), output)
            try:
                reg.write(output, overwrite=overwrite, mode=mode, progress=bars, before_commit=done)
            except RuntimeError:
                if reg.status == "registered":
                    raise
                # A failed registration wrote its report only; the caller reads reg.status / reg.reason.
    except BaseException:
        for d in tmp:
            d.cleanup()
        raise
    reg.timings["total_s"] = round(time.perf_counter() - t_start, 4)
    return reg
