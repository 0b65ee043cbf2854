"""Running a batch: the tiles of all pairs as Dask tasks, each pair fused and written as soon as its tiles are done.

Per pair (the steps of `geomreg.register`, each a task on a worker):

    plan ──> [coarse tile batches ──> refine] ──> fine tile batches ──> fuse + write

The graph grows as results come in (a plan decides its tiles; a coarse pass places the fine ones), so
the client follows the futures with `distributed.as_completed` and submits each pair's next step the
moment its inputs are done. Only small objects (plans, tile tasks, per-pair outcomes) travel to and from
the client; tie points move from worker to worker. Tasks keep references through their futures, so the
results lost with a killed worker are recomputed by the scheduler and the batch goes on.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Sequence

from geomreg.cli_options import EXIT_OUTPUT
from pipelines.graph import (
    Planned, TaskFailure, assess_round, check_matcher, device_memory, fuse_pair, match_chunk, output_state, plan_pair,
    refine_pair, sidecars,
)
from pipelines.manifest import PairJob

log = logging.getLogger(__name__)


# Higher runs first: plans (cheap, they reveal the tiles), then the step that finishes a pair, then tiles
# of earlier pairs before those of later ones (pairs complete one after another, not all at the end).
_PRIO_PLAN, _PRIO_FINISH = 1_000_000, 500_000


@dataclass
class PairResult:
    index: int
    where: str
    name: str
    reference: str
    moving: str
    output: str
    status: str  # "registered", "skipped" (complete output already there), "failed" (registration failed), "error"
    reason: str | None = None
    transform: str | None = None
    tie_points: int = 0
    inliers: int = 0
    rmse_px: float = float("nan")
    ce90_px: float = float("nan")
    tiles: int = 0
    tiles_matched: int = 0
    seconds: float = 0.0  # worker time spent on this pair (plan + tiles + fusion + writing)
    elapsed_s: float = 0.0  # from its first task to its outputs, on the client's clock
    outputs: dict = field(default_factory=dict)
    fault: str | None = None  # "output": its outputs could not be written (no space, read-only, ...); "cluster": not run

    @property
    def ok(self) -> bool:
        return self.status in ("registered", "skipped")


@dataclass
class BatchResult:
    pairs: list[PairResult]
    wall_s: float
    tiles: int  # full-resolution tiles matched in this run
    n_workers: int

    @property
    def ok(self) -> bool:
        return all(p.ok for p in self.pairs)

    @property
    def exit_code(self) -> int:
        """0 all registered (or complete already), 3 some pair's outputs could not be written (a fault of the
        machine, which rerunning after freeing space fixes), 1 some pair failed or had bad input."""
        if self.ok:
            return 0
        return EXIT_OUTPUT if any(p.fault == "output" for p in self.pairs) else 1

    @property
    def tiles_per_s(self) -> float:
        return self.tiles / self.wall_s if self.wall_s > 0 else float("nan")

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.pairs:
            out[p.status] = out.get(p.status, 0) + 1
        return out


class ClusterLost(RuntimeError):
    """The client lost its Dask scheduler in the middle of a batch. `partial` holds the pairs finished before
    (their outputs are complete); the others are "not run" (fault "cluster"). Rerunning the batch against a
    scheduler skips the complete outputs and does the rest."""

    def __init__(self, message: str, partial: BatchResult) -> None:
        super().__init__(message)
        self.partial = partial


def _scheduler_lost(client) -> bool:
    # distributed cancels every future when its connection to the scheduler drops, then tries to reconnect.
    return getattr(client, "status", "running") not in ("running", "newly-created")


def _result(job: PairJob, status: str, reason: str | None = None, **kw) -> PairResult:
    return PairResult(job.index, job.where, job.name, job.reference, job.moving, job.output, status, reason, **kw)


def _from_report(job: PairJob) -> PairResult:
    """A skipped pair, described from the report of its complete output."""
    import json

    try:
        r = json.loads(sidecars(job.output)["report"].read_text())
    except (OSError, ValueError):
        r = {}
    counts = r.get("counts") or {}
    return _result(job, "skipped", "complete output exists", transform=(r.get("transform") or {}).get("kind"),
                   tie_points=int(counts.get("tie_points", 0)), inliers=int(r.get("n_inliers") or 0),
                   rmse_px=float(r.get("rmse_px") if r.get("rmse_px") is not None else float("nan")),
                   ce90_px=float(r.get("ce90_px") if r.get("ce90_px") is not None else float("nan")),
                   tiles=int(counts.get("tiles", 0)), tiles_matched=int(counts.get("tiles_matched", 0)), outputs=r.get("outputs") or {})


@dataclass
class _Pair:
    job: PairJob
    overwrite: bool
    t0: float = 0.0
    planned: object = None  # future of Planned (the plan, later the refined plan)
    coarse: list = field(default_factory=list)
    fine: list = field(default_factory=list)
    pending: int = 0  # tile batches not finished yet
    tiles: dict = field(default_factory=dict)  # future key -> number of tiles
    finish: object = None  # future of fuse_pair
    plan: object = None  # the (refined) plan whose fine tiles are matched
    sampler: object = None  # the pair's TileSampler (geomreg/geo/sampling.py): which fine tiles, round by round
    futures: list = field(default_factory=list)
    done: bool = False


def _chunks(tasks: Sequence, size: int) -> list[tuple]:
    # The same batches geomreg.api.run_tiles hands the matcher: outputs do not depend on the cluster.
    return [tuple(tasks[i : i + size]) for i in range(0, len(tasks), size)]


def _smallest_device(client) -> int | None:
    """Memory of the smallest CUDA device among the workers (None when none reports one)."""
    try:
        found = [v for v in client.run(device_memory).values() if v]
    except Exception as e:  # noqa: BLE001 - sizing falls back to the configured batch
        log.warning("could not read the workers' device memory (%s): tile batches keep their configured size", e)
        return None
    return min(found) if found else None


def _tiles_per_task(tasks: Sequence, job: PairJob, device_bytes: int | None) -> int:
    """Tiles per Dask task: the configured batch on CPU workers (each worker's memory budget then splits it,
    geomreg/geo/memory.py); on GPU workers as many as the device holds (geomreg.geo.memory.gpu_tiles_per_batch
    with the network's per-pair working set, measured on CPU and assumed on the device), at most 64."""
    if not device_bytes or not tasks:
        return job.config.batch_size
    from geomreg.geo.memory import gpu_tiles_per_batch
    from geomreg.matching.api import auto_matcher_name, memory_per_pair

    name = auto_matcher_name(job.checkpoint)[0] if job.matcher == "auto" else job.matcher  # the default is "auto"
    if not name.startswith("regnetmamba2"):
        return job.config.batch_size

    side = max(max(t.mov_window[2], t.mov_window[3]) for t in tasks)
    return gpu_tiles_per_batch(device_bytes, memory_per_pair(side, side))


def _describe_error(fut) -> str:
    try:
        exc = fut.exception(timeout=5)
    except Exception as e:  # noqa: BLE001
        return f"{type(e).__name__}: {e}"
    name = type(exc).__name__
    if name == "KilledWorker":
        return f"the workers running this task died repeatedly ({exc}); see the worker logs (memory?)"
    return f"{name}: {exc}"


def run_batch(client, jobs: Sequence[PairJob], *, overwrite: bool = False, progress: bool = True, device: str = "auto",
              gpu: bool = False, op_threads: int | None = None) -> BatchResult:
    """Register every pair of `jobs` on the cluster of `client`; one PairResult per job, in manifest order.

    Complete outputs are skipped (unless overwrite); incomplete ones (an interrupted write, a failed earlier
    attempt) are redone. `gpu`: tile batches ask for the `GPU=1` resource (workers advertising it).
    """
    from distributed import as_completed
    from tqdm.auto import tqdm

    from pipelines.plugin import MatcherPlugin

    t_start = time.perf_counter()
    results: dict[int, PairResult] = {}
    todo: list[_Pair] = []
    for job in jobs:
        st = output_state(job)
        if st.state == "complete" and not overwrite:
            log.info("%s: complete output %s exists; skipped", job.where, job.output)
            results[job.index] = _from_report(job)
        elif st.state == "different" and not overwrite:
            results[job.index] = _result(job, "error", f"{job.output} exists and {st.detail}; use --overwrite to replace it")
        else:
            if st.state == "partial":
                log.info("%s: redoing %s (%s)", job.where, job.output, st.detail)
            todo.append(_Pair(job, overwrite=overwrite or st.state != "absent"))

    n_workers = len(client.scheduler_info().get("workers", {}))
    tiles_done = 0
    if not todo:
        return BatchResult([results[j.index] for j in jobs], time.perf_counter() - t_start, 0, n_workers)

    token = uuid.uuid4().hex[:8]
    tile_res = {"GPU": 1} if gpu else None
    matchers = tuple(sorted({(p.job.matcher, p.job.checkpoint) for p in todo}, key=str))
    client.register_plugin(MatcherPlugin(device=device, preload=matchers, op_threads=op_threads))

    # The matcher each pair needs is checked once, on a worker that will match tiles, before any work.
    checks = {m: client.submit(check_matcher, m[0], m[1], key=f"geomreg-check-{i}-{token}", resources=tile_res,
                               priority=_PRIO_PLAN, pure=False) for i, m in enumerate(matchers)}
    unavailable: dict[tuple, str] = {}
    for m, fut in checks.items():
        try:
            r = fut.result()
        except Exception as e:  # noqa: BLE001
            r = TaskFailure("matcher", f"{type(e).__name__}: {e}")
        if isinstance(r, TaskFailure):
            unavailable[m] = r.reason
    del checks
    device_bytes = _smallest_device(client) if gpu else None

    pairs: dict[int, _Pair] = {}
    kinds: dict[str, tuple[str, _Pair]] = {}
    ac = as_completed()
    bar = tqdm(total=0, unit="tile", desc="tiles", disable=not progress, dynamic_ncols=True)
    n_total = len(jobs)

    def postfix() -> None:
        bar.set_postfix_str(f"pairs {len(results)}/{n_total}", refresh=True)

    def submit(pair: _Pair, kind: str, fn, *args, priority: int, resources=None, n: int = 0, **kwargs):
        key = f"geomreg-{kind}-{pair.job.index}-{len(pair.futures)}-{token}"
        fut = client.submit(fn, *args, key=key, priority=priority, resources=resources, pure=False, **kwargs)
        pair.futures.append(fut)
        kinds[fut.key] = (kind, pair)
        if n:
            pair.tiles[fut.key] = n
        ac.add(fut)
        return fut

    def finish(pair: _Pair, res: PairResult) -> None:
        pair.done = True
        res.elapsed_s = time.perf_counter() - pair.t0
        results[pair.job.index] = res
        live = [f for f in pair.futures if not f.done()]
        if live:
            client.cancel(live)
        # Dropping the futures lets the scheduler free this pair's tie points on the workers.
        pair.futures.clear()
        pair.coarse, pair.fine, pair.planned, pair.finish, pair.plan, pair.sampler = [], [], None, None, None, None
        log.info("%s %s: %s%s", pair.job.where, pair.job.name, res.status, f" ({res.reason})" if res.reason else "")
        postfix()

    def submit_tiles(pair: _Pair, tasks: Sequence, kind: str) -> list:
        futs = []
        size = _tiles_per_task(tasks, pair.job, device_bytes)
        for chunk in _chunks(tasks, size):
            futs.append(submit(pair, kind, match_chunk, chunk, pair.job.matcher, pair.job.checkpoint, size,
                               pair.job.config.max_memory, priority=-pair.job.index, resources=tile_res,
                               n=len(chunk) if kind == "fine" else 0))
        pair.pending = len(futs)
        if kind == "fine":
            bar.total += len(tasks)
            bar.refresh()
        return futs

    def submit_fuse(pair: _Pair) -> None:
        pair.finish = submit(pair, "fuse", fuse_pair, pair.job, pair.planned, pair.overwrite, len(pair.coarse),
                             *pair.coarse, *pair.fine, sampler=pair.sampler, priority=_PRIO_FINISH)

    def submit_round(pair: _Pair, plan, idx: list[int]) -> None:
        """The next round of a pair's fine tiles (TileSampler order); no tile left: fuse and write."""
        futs = submit_tiles(pair, [plan.tasks[i] for i in idx], "fine")
        pair.fine = pair.fine + futs
        if not futs:
            submit_fuse(pair)  # no tile: the fusion reports why

    def start_fine(pair: _Pair, plan) -> None:
        from geomreg.geo.sampling import TileSampler

        pair.fine, pair.sampler = [], TileSampler(plan)
        pair.plan = plan
        submit_round(pair, plan, pair.sampler.first())

    def after_plan(pair: _Pair, planned: Planned) -> None:
        plan = planned.plan
        if plan.needs_coarse:
            pair.coarse = submit_tiles(pair, plan.coarse_tasks, "coarse")
        else:
            start_fine(pair, plan)

    try:
        for pair in todo:
            pairs[pair.job.index] = pair
            pair.t0 = time.perf_counter()
            reason = unavailable.get((pair.job.matcher, pair.job.checkpoint))
            if reason is not None:
                finish(pair, _result(pair.job, "error", reason))
                continue
            pair.planned = submit(pair, "plan", plan_pair, pair.job, priority=_PRIO_PLAN)
        postfix()

        for fut in ac:
            kind, pair = kinds.pop(fut.key, (None, None))
            if pair is None or pair.done:
                continue
            if fut.status == "cancelled":
                if _scheduler_lost(client):
                    raise _lost(client)
                continue
            if fut.status == "error":
                finish(pair, _result(pair.job, "error", f"{kind}: {_describe_error(fut)}"))
                continue
            if kind in ("plan", "refine", "fuse", "assess"):
                try:
                    value = fut.result()
                except Exception:  # noqa: BLE001 - e.g. its worker died after it finished and the rerun failed
                    finish(pair, _result(pair.job, "error", f"{kind}: {_describe_error(fut)}"))
                    continue
            if kind == "plan" or kind == "refine":
                planned = value
                if isinstance(planned, TaskFailure):
                    finish(pair, _result(pair.job, "error", planned.reason if planned.stage == "plan" else f"{planned.stage}: {planned.reason}"))
                    continue
                pair.planned = fut
                if kind == "plan":
                    after_plan(pair, planned)
                else:
                    start_fine(pair, planned.plan)
            elif kind in ("coarse", "fine"):
                pair.pending -= 1
                if kind == "fine":
                    n = pair.tiles.pop(fut.key, 0)
                    tiles_done += n
                    bar.update(n)
                if pair.pending == 0:
                    if kind == "coarse":
                        submit(pair, "refine", refine_pair, pair.planned, *pair.coarse, priority=_PRIO_FINISH)
                    elif pair.sampler.everything:
                        submit_fuse(pair)
                    else:
                        # Progressive: fuse what is matched; the sampler decides on more tiles or the end.
                        submit(pair, "assess", assess_round, pair.planned, *pair.coarse, *pair.fine,
                               priority=_PRIO_FINISH)
            elif kind == "assess":
                if isinstance(value, TaskFailure):
                    finish(pair, _result(pair.job, "error", f"{value.stage}: {value.reason}"))
                    continue
                nxt = pair.sampler.after(*value)
                if nxt:
                    submit_round(pair, pair.plan, nxt)
                else:
                    submit_fuse(pair)
            elif kind == "fuse":
                o = value
                secs = sum(o.seconds.values()) if o.seconds else 0.0
                finish(pair, _result(pair.job, o.status, o.reason, transform=o.transform, tie_points=o.tie_points, inliers=o.inliers,
                                     rmse_px=o.rmse_px, ce90_px=o.ce90_px, tiles=o.tiles, tiles_matched=o.tiles_matched,
                                     seconds=secs, outputs=o.outputs, fault=getattr(o, "fault", None)))
        if any(not p.done for p in pairs.values()) and _scheduler_lost(client):
            raise _lost(client)
    except ClusterLost as e:
        e.partial = _partial(jobs, results, time.perf_counter() - t_start, tiles_done, n_workers)
        raise
    except BaseException as e:
        if _scheduler_lost(client) and not isinstance(e, KeyboardInterrupt):
            lost = _lost(client)
            lost.partial = _partial(jobs, results, time.perf_counter() - t_start, tiles_done, n_workers)
            raise lost from e
        # Interrupted (Ctrl-C) or the client lost the scheduler: stop the work of this batch on the cluster.
        live = [f for p in pairs.values() for f in p.futures if not f.done()]
        if live:
            try:
                client.cancel(live)
            except Exception:  # noqa: BLE001
                pass
        raise
    finally:
        bar.close()
    for pair in pairs.values():
        if not pair.done:  # cannot happen unless the scheduler dropped tasks; never report silence as success
            results[pair.job.index] = _result(pair.job, "error", "the cluster returned no result for this pair")
    return BatchResult([results[j.index] for j in jobs], time.perf_counter() - t_start, tiles_done, n_workers)


def _lost(client) -> ClusterLost:
    addr = getattr(getattr(client, "scheduler", None), "address", None) or "?"
    return ClusterLost(f"lost the Dask scheduler at {addr} in the middle of the batch", BatchResult([], 0.0, 0, 0))


def _partial(jobs: Sequence[PairJob], results: dict, wall_s: float, tiles: int, n_workers: int) -> BatchResult:
    pairs = [results.get(j.index) or _result(j, "not run", "the scheduler was lost before this pair finished", fault="cluster")
             for j in jobs]
    return BatchResult(pairs, wall_s, tiles, n_workers)
