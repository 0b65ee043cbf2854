"""The Dask tasks of a batch and the state of a pair's outputs.

Every function here runs on a worker and gets only small picklable things (jobs, plans, tile tasks);
it reads its own raster windows. A task never raises for a bad pair: it returns a TaskFailure with the
reason, so that one bad pair fails alone and its reason reaches the summary. The steps are those of
`geomreg.register` (geomreg/api.py), in the same order and with the same batches, so a pair's
outputs are the same as `geomreg register` gives.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from geomreg.geo.errors import InputError, OutputError
from geomreg.geo.outputs import machine_faults
from geomreg.geo.plan import RegistrationPlan, TileTask
from geomreg.geo.registration import sidecar_paths
from geomreg.geo.tiles import TileMatches

from pipelines.manifest import PairJob

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskFailure:
    stage: str  # "matcher", "plan", "tiles", "coarse", "fusion", "write"
    reason: str


@dataclass(frozen=True)
class Planned:
    plan: RegistrationPlan
    seconds: float  # worker time spent planning (and refining after a coarse pass)


@dataclass(frozen=True)
class Chunk:
    """The tie points of consecutive tiles of one pair (one matcher batch)."""

    matches: tuple[TileMatches, ...]
    seconds: float
    matcher_name: str


@dataclass(frozen=True)
class PairOutcome:
    status: str  # "registered", "failed" (registration failed) or "error" (bad input, crash)
    reason: str | None = None
    transform: str | None = None
    tie_points: int = 0
    inliers: int = 0
    rmse_px: float = float("nan")
    ce90_px: float = float("nan")
    tiles: int = 0
    tiles_matched: int = 0
    outputs: dict = field(default_factory=dict)
    seconds: dict = field(default_factory=dict)  # worker seconds by step
    fault: str | None = None  # "output": the machine could not take the outputs (no space, read-only, ...)


def _reason(e: BaseException) -> str:
    if isinstance(e, InputError):
        return str(e)
    return f"{type(e).__name__}: {e}"


# --------------------------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------------------------


def check_matcher(name: str, checkpoint: str | None) -> str | TaskFailure:
    """Load (once per worker, through the plugin) the matcher a pair needs; its name or why it cannot be."""
    from pipelines.plugin import MatcherUnavailableOnWorker, worker_matcher

    try:
        m = worker_matcher(name, checkpoint)
    except MatcherUnavailableOnWorker as e:
        return TaskFailure("matcher", str(e))
    return str(getattr(m, "name", type(m).__name__))


def plan_pair(job: PairJob) -> Planned | TaskFailure:
    from geomreg.geo.plan import plan_registration

    t0 = time.perf_counter()
    try:
        from geomreg.geo.memory import bounded_gdal_cache

        with bounded_gdal_cache(job.config.max_memory):  # as geomreg.register plans
            plan = plan_registration(job.reference, job.moving, job.config)
    except Exception as e:  # noqa: BLE001 - a bad pair fails alone, with its reason
        if not isinstance(e, InputError):
            log.exception("%s: planning failed", job.moving)
        return TaskFailure("plan", _reason(e))
    return Planned(plan, time.perf_counter() - t0)


def worker_memory_limit() -> int | None:
    """The memory limit of the Dask worker running this task (None outside a worker or without a limit)."""
    try:
        from distributed import get_worker

        w = get_worker()
    except (ImportError, ValueError):
        return None
    mm = getattr(w, "memory_manager", None)
    limit = getattr(mm, "memory_limit", None) if mm is not None else getattr(w, "memory_limit", None)
    return int(limit) if limit else None


def device_memory() -> int | None:
    """Total memory of this worker's CUDA device (None without one); run on every worker by the runner."""
    try:
        import torch
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    return int(torch.cuda.mem_get_info()[1])


def match_chunk(tasks: tuple[TileTask, ...], matcher: str, checkpoint: str | None, batch_size: int,
                max_memory: int | None = None) -> Chunk | TaskFailure:
    """Match consecutive tiles of one pair with the worker's matcher, in batches of at most batch_size that
    keep the worker's RSS within the pair's memory budget and 80 % of the worker's memory limit."""
    from geomreg.geo.memory import memory_budget_for_worker
    from geomreg.geo.tiles import match_tiles

    from pipelines.plugin import MatcherUnavailableOnWorker, worker_cache

    cache = worker_cache()
    try:
        m = cache.get(matcher, checkpoint)
    except MatcherUnavailableOnWorker as e:
        return TaskFailure("matcher", str(e))
    t0 = time.perf_counter()
    try:
        with cache.matching_lock():
            matches = match_tiles(list(tasks), m, batch_size=batch_size,
                                  max_memory=memory_budget_for_worker(max_memory, worker_memory_limit()))
    except Exception as e:  # noqa: BLE001
        if not isinstance(e, InputError):
            log.exception("tiles %s of %s failed", [t.tile_id for t in tasks], tasks[0].moving.path if tasks else "?")
        return TaskFailure("tiles", _reason(e))
    return Chunk(tuple(matches), time.perf_counter() - t0, str(getattr(m, "name", type(m).__name__)))


def _first_failure(items: Sequence) -> TaskFailure | None:
    return next((x for x in items if isinstance(x, TaskFailure)), None)


def refine_pair(planned: Planned, *chunks: Chunk | TaskFailure) -> Planned | TaskFailure:
    """Full-resolution tiles placed by the coarse pass (geomreg.geo.plan.refine_plan)."""
    from geomreg.geo.plan import refine_plan

    bad = _first_failure(chunks)
    if bad is not None:
        return bad
    t0 = time.perf_counter()
    try:
        plan = refine_plan(planned.plan, _all_matches(chunks))
    except Exception as e:  # noqa: BLE001
        log.exception("coarse pass of %s failed", planned.plan.moving.path)
        return TaskFailure("coarse", _reason(e))
    return Planned(plan, planned.seconds + time.perf_counter() - t0)


def _all_matches(chunks) -> list[TileMatches]:
    """Every tile's matches, in chunk order (coarse chunks first, as the callers pass them)."""
    return [m for c in chunks for m in c.matches]


def assess_round(planned: Planned, *chunks: Chunk | TaskFailure) -> tuple | TaskFailure:
    """A progressive round (geomreg/geo/sampling.py): fuse the tiles matched so far (coarse chunks first);
    (status, transform, uncertainty) for the client's TileSampler to decide whether more tiles are needed."""
    from geomreg.geo.fusion import fuse

    bad = _first_failure(chunks)
    if bad is not None:
        return bad
    plan = planned.plan
    try:
        reg = fuse(plan, _all_matches(chunks), plan.config.transform)
    except Exception as e:  # noqa: BLE001
        log.exception("fusion of %s failed", plan.moving.path)
        return TaskFailure("fusion", _reason(e))
    return reg.status, reg.transform_kind, reg.uncertainty


def fuse_pair(job: PairJob, planned: Planned, overwrite: bool, n_coarse: int, *chunks: Chunk | TaskFailure,
              sampler=None) -> PairOutcome:
    """Fuse the tie points of all tiles (coarse chunks first, as geomreg.register does) and write the outputs.

    sampler: the pair's TileSampler (geomreg/geo/sampling.py); its rounds go into the report."""
    from geomreg.geo.fusion import fuse

    bad = _first_failure(chunks)
    if bad is not None:
        return PairOutcome("error", f"{bad.stage}: {bad.reason}")
    plan = planned.plan
    coarse, fine = chunks[:n_coarse], chunks[n_coarse:]
    tms = _all_matches(chunks)
    match_s = sum(c.seconds for c in fine)
    # The timings geomreg.register records (sums of worker time here: the tiles ran in parallel).
    timings = {"plan_s": round(planned.seconds, 4)}
    if n_coarse:
        timings["coarse_s"] = round(sum(c.seconds for c in coarse), 4)
    timings["match_s"] = round(match_s, 4)
    n_fine = sum(len(c.matches) for c in fine)
    timings["tiles_per_s"] = round(n_fine / max(match_s, 1e-9), 3)
    name = chunks[0].matcher_name if chunks else job.matcher
    t0 = time.perf_counter()
    try:
        reg = fuse(plan, tms, job.config.transform, timings=timings, matcher_name=name)
    except Exception as e:  # noqa: BLE001
        log.exception("fusion of %s failed", job.moving)
        return PairOutcome("error", f"fusion: {_reason(e)}")
    if sampler is not None:
        if sampler.stopped is None:  # every tile in one round: this fusion is the round's
            sampler.after(reg.status, reg.transform_kind, reg.uncertainty)
        reg.sampling = sampler.summary()
    fuse_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = Path(job.output)
    if not overwrite and reg.status == "registered" and output_state(job).state == "complete":
        # This task ran to the end before, and its worker died before the client had the result: the scheduler
        # ran it again. The outputs are complete and the same; they are this pair's.
        log.info("%s: %s is complete already (this task ran before on a worker that died)", job.where, out)
        reg.outputs = {k: str(q) for k, q in sidecars(out).items()}
    else:
        err = _write(reg, job, out, overwrite)
        if err is not None:
            return err
    write_s = time.perf_counter() - t0
    tp = reg._tie_points
    counts = reg.counts
    return PairOutcome(
        status=reg.status, reason=reg.reason, transform=reg.transform_kind, tie_points=len(tp), inliers=reg.n_inliers,
        rmse_px=reg.rmse, ce90_px=reg.ce90, tiles=counts.get("tiles", len(plan.tasks)), tiles_matched=counts.get("tiles_matched", 0),
        outputs=dict(reg.outputs),
        seconds={"plan": planned.seconds, "tiles": match_s + timings.get("coarse_s", 0.0), "fusion": fuse_s, "write": write_s},
    )


def _write(reg, job: PairJob, out: Path, overwrite: bool) -> PairOutcome | None:
    """Write a pair's outputs; None when written (or when a failed registration wrote its report), else why not."""
    try:
        with machine_faults(out):
            out.parent.mkdir(parents=True, exist_ok=True)
            remove_partials(out)
        # The new set replaces the old one all at once (geomreg.geo.outputs.OutputSet): an interrupted
        # rewrite leaves the previous outputs whole.
        reg.write(out, overwrite=overwrite, mode=job.mode)
    except OutputError as e:
        log.error("%s: %s", job.where, e)
        return PairOutcome("error", f"write: {e}", fault="output")
    except RuntimeError:
        if reg.status == "registered":
            log.exception("writing %s failed", out)
            return PairOutcome("error", f"write: could not write {out}")
        # A failed registration writes its report only.
    except InputError as e:
        return PairOutcome("error", str(e))
    except OSError as e:
        return PairOutcome("error", f"write: {out}: {e.strerror or e}", fault="output")
    return None


# --------------------------------------------------------------------------------------------
# Outputs already there
# --------------------------------------------------------------------------------------------


def sidecars(output: str | Path) -> dict[str, Path]:
    """The files `Registration.write` produces for `output`: the raster and its sidecars."""
    p = Path(output)
    return {"raster": p, **sidecar_paths(p)}


def remove_partials(output: Path) -> list[Path]:
    """Bring the output set of `output` back to a whole one: roll back a replacement a crash interrupted
    (geomreg.geo.outputs.OutputSet) and delete the temporary files an interrupted write left beside it
    (.part, staged .new, backups); those of other outputs are left alone."""
    from geomreg.geo.outputs import leftovers, recover_output_set

    names = tuple(q.name for q in sidecars(output).values())
    recover_output_set(output, names)
    removed = []
    for q in leftovers(output, names):
        q.unlink(missing_ok=True)
        removed.append(q)
    return removed


def _jsonable(v):
    return json.loads(json.dumps(v, default=str))


@dataclass(frozen=True)
class OutputState:
    state: str  # "absent", "complete", "partial" (redo it) or "different" (a complete output of another registration)
    detail: str = ""


def output_state(job: PairJob) -> OutputState:
    """Whether a pair's outputs are complete. The report is written last and atomically, so a report that
    says 'registered' next to a readable raster and both tie point files means the pair is done."""
    from geomreg.geo.outputs import leftovers

    files = sidecars(job.output)
    if any(q.name.endswith(".swap.json") for q in leftovers(job.output, tuple(p.name for p in files.values()))):
        # A crash in the middle of replacing the set: the files may mix two runs; writing rolls it back first.
        return OutputState("partial", "an interrupted replacement (its journal is there)")
    present = {k: p.exists() for k, p in files.items()}
    if not any(present.values()):
        return OutputState("absent")
    if not present["report"]:
        return OutputState("partial", "no report (an earlier write was interrupted)")
    try:
        report = json.loads(files["report"].read_text())
    except (OSError, ValueError) as e:
        return OutputState("partial", f"unreadable report ({e})")
    if report.get("status") != "registered":
        return OutputState("partial", f"an earlier attempt failed: {report.get('reason')}")
    missing = [k for k, ok in present.items() if not ok]
    if missing:
        return OutputState("partial", f"missing {', '.join(missing)}")
    try:
        import rasterio

        from rasterio.windows import Window

        with rasterio.open(files["raster"]) as ds:
            if ds.width < 1 or ds.height < 1:
                return OutputState("partial", "empty raster")
            # The last block is the last thing in the file: reading it catches a truncated copy cheaply.
            ds.read(window=Window(ds.width - 1, ds.height - 1, 1, 1))
    except Exception as e:  # noqa: BLE001
        return OutputState("partial", f"unreadable raster ({e})")
    ref = (report.get("reference") or {}).get("path")
    mov = (report.get("moving") or {}).get("path")
    if ref != job.reference or mov != job.moving:
        return OutputState("different", f"it registers {mov} onto {ref}")
    want = _jsonable({k: getattr(job.config, k) for k in job.config.field_names()})
    have = report.get("config") or {}
    # Batch size and memory budget change how tiles are batched, not the result.
    diff = sorted(k for k in want if k not in ("batch_size", "max_memory") and have.get(k) != want[k])
    if diff:
        return OutputState("different", f"it was made with other options ({', '.join(diff)})")
    if report.get("matcher") not in (None, job.matcher):
        return OutputState("different", f"it was made with the {report.get('matcher')} matcher")
    return OutputState("complete")
