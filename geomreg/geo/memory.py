"""A memory budget for tile matching: how many tiles the matcher may take at once.

Where the memory of a whole-scene registration goes (measured 2026-12-06, benchmarks/geo_scale.py and
docs/scaling.md): the matcher's working set per tile pair dominates everything else (window reads, tie
points and the written blocks are tens of MB). RegNetMamba-2 on CPU needs about 0.75 GB above the loaded
model for one 512 px tile with its 36 px moving margin, and the working sets of a batch add up: the
default batch of eight tiles, run by the matcher as two batches of four, peaked at 3.1-3.2 GB RSS. glibc
then keeps that peak (geomreg/nn/cpu_allocator.py), so the process stays there.

The budget bounds the process's resident set: before matching, the RSS of the process (libraries, model)
is the base; each batch of n tiles is expected to peak at base + n * per_tile. The per-tile cost is
calibrated by measurement: the first batch holds one tile and the peak RSS during it is sampled; each later
batch refines the estimate (the largest per-tile cost seen), and the batch grows at most twofold per step,
so a wrong estimate costs at most one batch above it. A matcher may state a prior (`memory_per_pair(h, w)`
in bytes), used until a measurement exists and as a floor afterwards.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from dataclasses import dataclass, field

from geomreg.geo.errors import InputError

log = logging.getLogger(__name__)

MIB = 1 << 20
GIB = 1 << 30
# The default budget of a whole registration process: under the 2 GB the project promises at any scene
# size, with room for the allocator's fragmentation (a kept heap grows by 5-15 % over a long run).
DEFAULT_MAX_MEMORY = int(1.5 * GIB)
# Growth margin on the per-tile estimate (fragmentation, tiles whose matches take more fine windows).
_MARGIN = 1.15
# A matcher that states no prior: assume this much per tile until the first batch is measured.
_UNKNOWN_PER_TILE = 512 * MIB

_SIZE_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*([kmgt]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1e3, "m": 1e6, "g": 1e9, "t": 1e12, "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}


def parse_memory(value: int | float | str | None) -> int | None:
    """'2G', '1.5GB', '1500M', '2GiB' or a number of bytes -> bytes; None stays None (the default budget).

    Decimal units (k, M, G) are powers of 1000 and binary ones (KiB, MiB, GiB) powers of 1024, as in Dask.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise InputError(f"cannot read max_memory {value!r}: give bytes or a size such as 1.5G or 1500MB")
    if isinstance(value, (int, float)):
        n = float(value)
    else:
        m = _SIZE_RE.match(str(value))
        if not m:
            raise InputError(f"cannot read max_memory {value!r}: give bytes or a size such as 1.5G or 1500MB")
        unit = (m.group(2) or "").lower().removesuffix("b")
        n = float(m.group(1)) * _UNITS[unit]
    if not n >= 256 * MIB:
        raise InputError(f"max_memory must be at least 256 MB (one tile of the network needs about 0.75 GB), got {value!r}")
    return int(n)


def current_rss() -> int:
    """Resident set size of this process in bytes (0 where /proc is missing)."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def total_memory() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 * GIB


def default_budget() -> int:
    """DEFAULT_MAX_MEMORY, or half the machine's memory when that is less."""
    return min(DEFAULT_MAX_MEMORY, total_memory() // 2)


class PeakSampler:
    """The peak RSS while a block runs, sampled by a daemon thread (every `interval` s) and at both ends.

    Reading the kernel's high-water mark would need resetting it (/proc/self/clear_refs), which would also
    reset what a caller measures (getrusage's ru_maxrss): sampling leaves it alone. Tensors live for
    milliseconds at least, and glibc keeps freed blocks (cpu_allocator), so the samples see the peak.
    """

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, current_rss())

    def __enter__(self) -> "PeakSampler":
        self.peak = current_rss()
        self._thread = threading.Thread(target=self._run, name="geomreg-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.peak = max(self.peak, current_rss())


@dataclass
class TileBatcher:
    """Sizes the matcher's batches so that base + n * per_tile stays within `budget` bytes of RSS.

    One per matcher and process (see `batcher_for`): the calibration carries over from one call of
    match_tiles to the next, as a Dask worker or a progressive registration calls it many times.
    """

    budget: int
    max_batch: int = 8
    prior_per_tile: int | None = None  # bytes; the matcher's own estimate, or None
    base: int | None = None  # RSS before the first batch (libraries and the matcher loaded)
    per_tile: int | None = None  # bytes, the largest per-tile cost measured
    measurements: list[tuple[int, int]] = field(default_factory=list)  # (tiles, peak RSS) of each batch
    _last: int = 0  # size of the last batch

    def estimate(self) -> int:
        vals = [v for v in (self.per_tile, self.prior_per_tile) if v]
        return max(vals) if vals else _UNKNOWN_PER_TILE

    def next_size(self, cap: int | None = None) -> int:
        """Tiles for the next batch (at least one, at most max_batch and cap)."""
        cap = self.max_batch if cap is None else max(1, min(cap, self.max_batch))
        if self.per_tile is None:
            return 1  # calibrate on one tile first
        base = self.base if self.base is not None else current_rss()
        fit = int((self.budget - base) // (self.estimate() * _MARGIN))
        return max(1, min(cap, fit, 2 * max(self._last, 1)))

    def observe(self, n: int, peak: int) -> None:
        """Record that a batch of n tiles peaked at `peak` bytes of RSS."""
        if self.base is None or n <= 0 or peak <= 0:
            return
        self._last = n
        self.measurements.append((n, peak))
        per = max(0, peak - self.base) // n
        first = self.per_tile is None
        self.per_tile = max(self.per_tile or 0, per)
        if first:
            log.info("tile memory: %.0f MB per tile measured (base %.0f MB, budget %.0f MB: batches of %d)",
                     per / MIB, self.base / MIB, self.budget / MIB, self.next_size())
        if peak > self.budget:
            log.warning("tile matching peaked at %.0f MB, over the memory budget of %.0f MB (one tile needs about "
                        "%.0f MB here: a smaller tile size or a larger --max-memory)", peak / MIB, self.budget / MIB,
                        self.estimate() / MIB)

    def start(self) -> None:
        if self.base is None:
            self.base = current_rss()

    def summary(self) -> dict:
        return {"budget_mb": round(self.budget / MIB), "base_mb": None if self.base is None else round(self.base / MIB),
                "per_tile_mb": None if self.per_tile is None else round(self.per_tile / MIB),
                "prior_per_tile_mb": None if not self.prior_per_tile else round(self.prior_per_tile / MIB),
                "peak_mb": round(max((p for _, p in self.measurements), default=0) / MIB),
                "batches": len(self.measurements), "largest_batch": max((n for n, _ in self.measurements), default=0)}


_BATCHERS: dict[tuple, TileBatcher] = {}
_LOCK = threading.Lock()


def prior_per_tile(matcher, side: int) -> int | None:
    """The matcher's own estimate of one tile pair's working set (bytes), when it states one."""
    fn = getattr(matcher, "memory_per_pair", None) or getattr(getattr(matcher, "base", None), "memory_per_pair", None)
    if not callable(fn):
        return None
    try:
        v = int(fn(side, side))
    except Exception:  # noqa: BLE001 - a prior is optional
        return None
    return v if v > 0 else None


def batcher_for(matcher, side: int, budget: int | None, max_batch: int) -> TileBatcher:
    """The process's batcher for this matcher, tile side (moving window, px) and budget."""
    b = default_budget() if budget is None else int(budget)
    key = (id(matcher), type(matcher).__qualname__, int(side), b, int(max_batch))
    with _LOCK:
        got = _BATCHERS.get(key)
        if got is None:
            got = _BATCHERS[key] = TileBatcher(b, max_batch, prior_per_tile(matcher, side))
        return got


def memory_budget_for_worker(config_budget: int | None, worker_limit: int | None, share: float = 0.8) -> int | None:
    """A Dask worker's tile budget: the configured one, capped at `share` of the worker's memory limit (the
    nanny pauses a worker at 80 % and kills it at 95 %)."""
    if not worker_limit:
        return config_budget
    cap = int(worker_limit * share)
    return cap if config_budget is None else min(config_budget, cap)


def gdal_cache_mb(budget: int | None) -> int:
    """GDAL block cache (MB) within a memory budget: a tenth of it, 64-256 MB (windowed reads and block writes
    reuse a few rows of 512 px blocks at most)."""
    b = default_budget() if budget is None else budget
    return int(max(64, min(256, b // 10 // MIB)))


def bounded_gdal_cache(budget: int | None):
    """A rasterio.Env whose GDAL block cache is gdal_cache_mb(budget): GDAL's default (5 % of the machine's
    memory) fills with blocks of a large scene while planning reads its overview and while the output is written."""
    import rasterio

    return rasterio.Env(GDAL_CACHEMAX=gdal_cache_mb(budget))


def gpu_tiles_per_batch(device_bytes: int, per_tile_bytes: int, cap: int = 64, share: float = 0.7) -> int:
    """Tiles a GPU worker takes per batch: `share` of its device memory over the per-tile working set, in
    [1, cap]. The rest of the device holds the weights, the caching allocator's slack and cuDNN workspaces."""
    if device_bytes <= 0 or per_tile_bytes <= 0:
        return 1
    return max(1, min(cap, int(device_bytes * share // per_tile_bytes)))


__all__ = ["DEFAULT_MAX_MEMORY", "bounded_gdal_cache", "PeakSampler", "TileBatcher", "batcher_for", "current_rss", "default_budget",
           "gdal_cache_mb", "gpu_tiles_per_batch", "memory_budget_for_worker", "parse_memory", "prior_per_tile"]
