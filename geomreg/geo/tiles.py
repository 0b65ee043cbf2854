"""Matching tiles: each task reads its own windows, the matcher sees batches, tie points come back in map coordinates."""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from rasterio.enums import Resampling

from geomreg.geo.io import apply_stretch, open_raster, read_window
from geomreg.geo.memory import PeakSampler, batcher_for
from geomreg.geo.plan import TileTask
from geomreg.geo.prefetch import prefetch_map
from geomreg.matching.types import ImageMatcher, MatchResult

log = logging.getLogger(__name__)

SKIP_NODATA = "nodata"
SKIP_STRUCTURE = "low structure"
SKIP_NO_MATCH = "no matches"


@dataclass(frozen=True)
class TileMatches:
    """Tie points of one tile. Map coordinates are in the reference CRS on both sides:
    `mov_map` is where the moving scene's georeferencing puts the point, `ref_map` where the reference does."""

    tile_id: int
    level: str
    ref_map: np.ndarray  # [N, 2]
    mov_map: np.ndarray  # [N, 2]
    confidence: np.ndarray  # [N]
    skipped: str | None = None  # reason when the tile gave nothing (nodata, low structure, no matches, error)
    notes: tuple[str, ...] = field(default=())
    seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.confidence)

    @classmethod
    def skip(cls, task: TileTask, reason: str, notes: Sequence[str] = (), seconds: float = 0.0) -> "TileMatches":
        z = np.zeros((0, 2))
        return cls(task.tile_id, task.level, z, z.copy(), np.zeros(0), reason, tuple(notes), seconds)


@dataclass(frozen=True)
class _Loaded:
    task: TileTask
    ref: np.ndarray  # float32, NaN = invalid
    mov: np.ndarray
    ref_valid: np.ndarray
    mov_valid: np.ndarray
    seconds: float


def _matcher_input(img: np.ndarray) -> np.ndarray:
    # The scene-wide stretch puts every tile in [0, 1]. Matchers re-normalise their input and would take
    # such a [0, 1] float image, heavy-tailed after the stretch of a SAR scene, for raw SAR amplitude and
    # log it a second time; shifting by 1 keeps its tail ratio small (a percentile stretch is shift-invariant).
    return img + np.float32(1.0)


def load_tile(task: TileTask, ref_ds, mov_ds) -> _Loaded | TileMatches:
    """Read and check one task's windows; a TileMatches (skipped) when the tile is not worth matching."""
    t0 = time.perf_counter()
    rs = Resampling[task.resampling]
    ri, rv = read_window(ref_ds, task.reference, task.grid, task.ref_window, rs)
    mi, mv = read_window(mov_ds, task.moving, task.grid, task.mov_window, rs)
    for name, v in (("reference", rv), ("moving", mv)):
        frac = 1.0 - float(v.mean())
        if frac > task.max_nodata_fraction:
            return TileMatches.skip(task, SKIP_NODATA, [f"{name} window {frac:.0%} nodata"], time.perf_counter() - t0)
    r = apply_stretch(ri, rv, task.reference.stretch)
    m = apply_stretch(mi, mv, task.moving.stretch)
    for name, img, v in (("reference", r, rv), ("moving", m, mv)):
        s = float(np.std(img[v]))
        if s < task.min_structure:
            return TileMatches.skip(task, SKIP_STRUCTURE, [f"{name} window intensity std {s:.3f}"], time.perf_counter() - t0)
    return _Loaded(task, r, m, rv, mv, time.perf_counter() - t0)


def _to_map(t: _Loaded, res: MatchResult) -> TileMatches:
    task = t.task
    if len(res) == 0:
        return TileMatches.skip(task, SKIP_NO_MATCH, res.notes, t.seconds)
    rxy, mxy = np.asarray(res.ref_xy, np.float64), np.asarray(res.mov_xy, np.float64)
    keep = np.isfinite(rxy).all(axis=1) & np.isfinite(mxy).all(axis=1)
    # No tie point may rest on nodata on either side (nearest pixel).
    for xy, valid in ((rxy, t.ref_valid), (mxy, t.mov_valid)):
        h, w = valid.shape
        ix = np.rint(np.nan_to_num(xy[:, 0], nan=-1)).astype(int)
        iy = np.rint(np.nan_to_num(xy[:, 1], nan=-1)).astype(int)
        inside = (ix >= 0) & (ix < w) & (iy >= 0) & (iy < h)
        ok = np.zeros(len(xy), dtype=bool)
        ok[inside] = valid[iy[inside], ix[inside]]
        keep &= ok
    if not keep.any():
        return TileMatches.skip(task, SKIP_NO_MATCH, res.notes + ("all matches on nodata",), t.seconds)
    rxy, mxy = rxy[keep], mxy[keep]
    conf = np.asarray(res.confidence, np.float64)[keep]
    rc, rr = task.ref_window[:2]
    mc, mr = task.mov_window[:2]
    ref_map = task.grid.px_to_map(rxy + [rc, rr])
    mov_map = task.grid.px_to_map(mxy + [mc, mr])
    return TileMatches(task.tile_id, task.level, ref_map, mov_map, conf, None, tuple(res.notes), t.seconds)


def match_tiles(tasks: Sequence[TileTask], matcher: ImageMatcher, batch_size: int = 8,
                read_ahead: int | None = None, max_memory: int | None = None) -> list[TileMatches]:
    """Match tasks (in order) with `matcher`; one TileMatches per task, skipped tiles with their reason.

    Each call opens the rasters it needs itself (windowed reads only), so it runs unchanged in a
    worker process that received nothing but the tasks. Up to ``read_ahead`` tiles (default: one batch) are
    read in a background thread while the matcher works (geomreg/geo/prefetch.py); 0 reads in line.
    At most `batch_size` tiles go to the matcher at once, fewer when the memory budget (`max_memory` bytes
    of RSS; None: the default budget) says so (geomreg/geo/memory.py: calibrated on the first tile, refined
    on every batch).
    """
    out: list[TileMatches | None] = [None] * len(tasks)
    handles: dict[str, object] = {}
    side = max((max(t.mov_window[2], t.mov_window[3], t.ref_window[2], t.ref_window[3]) for t in tasks), default=0)
    batcher = batcher_for(matcher, side, max_memory, batch_size)

    def ds(path: str, src):
        if path not in handles:
            handles[path] = open_raster(src)
        return handles[path]

    try:
        pending: list[tuple[int, _Loaded]] = []

        def flush() -> None:
            if not pending:
                return
            batcher.start()
            t0 = time.perf_counter()
            with PeakSampler() as peak:
                results = matcher.match_batch([(p.ref, p.mov) for _, p in pending])
            each = (time.perf_counter() - t0) / len(pending)
            batcher.observe(len(pending), peak.peak)
            for (i, p), res in zip(pending, results):
                tm = _to_map(p, res)
                out[i] = TileMatches(tm.tile_id, tm.level, tm.ref_map, tm.mov_map, tm.confidence, tm.skipped, tm.notes, p.seconds + each)
            pending.clear()

        def read(task: TileTask) -> _Loaded | TileMatches:
            return load_tile(task, ds(task.reference.path, task.reference), ds(task.moving.path, task.moving))

        reads = prefetch_map(read, tasks, batch_size if read_ahead is None else read_ahead)
        with contextlib.closing(reads):  # the reader stops before the handles close
            for i, loaded in enumerate(reads):
                if isinstance(loaded, TileMatches):
                    out[i] = loaded
                    continue
                pending.append((i, _Loaded(loaded.task, _matcher_input(loaded.ref), _matcher_input(loaded.mov),
                                           loaded.ref_valid, loaded.mov_valid, loaded.seconds)))
                if len(pending) >= batcher.next_size(batch_size):
                    flush()
        flush()
    finally:
        for h in handles.values():
            h.close()
    return [o for o in out if o is not None]
