"""The matcher on each worker: loaded once per worker process, then shared by every tile task there.

`MatcherPlugin` is a Dask WorkerPlugin. Its setup limits the threads torch and OpenCV may use (so
worker processes do not oversubscribe the cores), picks the worker's device (a GPU worker, one with
the `GPU` resource, uses its own GPU) and starts loading the default matcher in the background.
Tasks call `worker_matcher(name, checkpoint)`, which returns the cached instance or loads it once.

Weights come only from the package (checksum-verified) or an explicit local checkpoint path, read
with ``torch.load(weights_only=True)`` (geomreg.matching.weights); nothing is downloaded.
"""

from __future__ import annotations

import logging
import threading
from contextlib import nullcontext
from typing import Any

from geomreg.matching.types import ImageMatcher

log = logging.getLogger(__name__)

PLUGIN_NAME = "geomreg-matcher"


class MatcherUnavailableOnWorker(RuntimeError):
    """The matcher cannot be built on this worker (no packaged weights, bad checkpoint...)."""


class MatcherCache:
    """Matchers by (name, checkpoint), built once; a failure is remembered and re-raised with its reason."""

    def __init__(self, device: str = "auto", op_threads: int | None = None) -> None:
        self.device = device
        self.op_threads = op_threads
        self._lock = threading.Lock()
        self._matchers: dict[tuple[str, str | None], ImageMatcher] = {}
        self._errors: dict[tuple[str, str | None], str] = {}
        # One batch at a time on a GPU, even when the worker runs several threads.
        self.gpu_lock: threading.Lock | None = None

    def get(self, name: str, checkpoint: str | None = None) -> ImageMatcher:
        key = (name, checkpoint)
        with self._lock:
            if key in self._matchers:
                return self._matchers[key]
            if key in self._errors:
                raise MatcherUnavailableOnWorker(self._errors[key])
            try:
                m = _build(name, self.device, checkpoint)
            except Exception as e:  # noqa: BLE001 - every reason a matcher cannot be built is reported the same way
                from geomreg.api import MatcherUnavailable

                msg = str(e) if isinstance(e, MatcherUnavailable) else f"matcher {name!r} cannot be loaded: {e}"
                if (name == "auto" or name.startswith("regnetmamba2")) and checkpoint is None:
                    msg += " (in a batch: --matcher cfog, or --checkpoint PATH / a checkpoint column)"
                self._errors[key] = msg
                raise MatcherUnavailableOnWorker(msg) from None
            self._matchers[key] = m
            _limit_threads(self.op_threads)  # building a matcher may have imported torch
            if str(getattr(m, "device", "cpu")).startswith("cuda") and self.gpu_lock is None:
                self.gpu_lock = threading.Lock()
            log.info("loaded matcher %s on %s", name, getattr(m, "device", "cpu"))
            return m

    def matching_lock(self):
        return self.gpu_lock if self.gpu_lock is not None else nullcontext()


def _build(name: str, device: str, checkpoint: str | None) -> ImageMatcher:
    from geomreg.api import resolve_matcher

    return resolve_matcher(name, device=device, checkpoint=checkpoint)


def _limit_threads(n: int | None) -> None:
    """Threads OpenCV and torch (once imported) may use in this process; best effort."""
    if n is None:
        return
    import sys

    try:
        import cv2

        cv2.setNumThreads(n)
    except Exception:  # noqa: BLE001
        pass
    if "torch" in sys.modules:
        try:
            sys.modules["torch"].set_num_threads(n)
        except Exception:  # noqa: BLE001
            pass


def _worker_device(device: str, worker: Any) -> str:
    """A GPU worker of a multi-GPU LocalCluster (named 0, 1, ...) takes the GPU with its number."""
    if device != "auto":
        return device
    resources = getattr(getattr(worker, "state", None), "total_resources", None) or getattr(worker, "total_resources", {}) or {}
    if not resources.get("GPU"):
        return device
    try:
        import torch

        n = torch.cuda.device_count()
    except Exception:  # noqa: BLE001
        return device
    try:
        idx = int(str(worker.name).rsplit("-", 1)[-1])
    except (TypeError, ValueError):
        return device
    return f"cuda:{idx % n}" if n > 1 else device


try:
    from distributed import WorkerPlugin as _WorkerPlugin
except ImportError:  # pragma: no cover - distributed is a dependency
    _WorkerPlugin = object  # type: ignore[assignment,misc]


class MatcherPlugin(_WorkerPlugin):  # type: ignore[misc,valid-type]
    """Registers a MatcherCache on every worker (present and future ones) and preloads matchers."""

    name = PLUGIN_NAME
    idempotent = False  # a new batch may bring another device or matcher list: replace the old plugin

    def __init__(self, device: str = "auto", preload: tuple[tuple[str, str | None], ...] = (), op_threads: int | None = None) -> None:
        self.device = device
        self.preload = tuple(preload)
        self.op_threads = op_threads
        self.cache: MatcherCache | None = None

    def setup(self, worker) -> None:
        _limit_threads(self.op_threads)
        self.cache = MatcherCache(_worker_device(self.device, worker), self.op_threads)
        if self.preload:
            # Loading runs beside the worker's event loop (setup runs on it): heartbeats go on meanwhile.
            threading.Thread(target=self._preload, name="geomreg-preload", daemon=True).start()

    def _preload(self) -> None:
        for name, ckpt in self.preload:
            try:
                self.cache.get(name, ckpt)
            except MatcherUnavailableOnWorker as e:
                log.info("%s", e)  # the batch reports it per pair (pipelines.graph.check_matcher)

    def teardown(self, worker) -> None:
        self.cache = None


_process_cache: MatcherCache | None = None
_process_lock = threading.Lock()


def worker_cache() -> MatcherCache:
    """The MatcherCache of this worker's plugin, or a process-wide one when the plugin is not registered."""
    global _process_cache
    try:
        from distributed import get_worker

        plugin = get_worker().plugins.get(PLUGIN_NAME)
    except (ImportError, ValueError):
        plugin = None
    if plugin is not None and getattr(plugin, "cache", None) is not None:
        return plugin.cache
    with _process_lock:
        if _process_cache is None:
            _process_cache = MatcherCache("auto")
        return _process_cache


def worker_matcher(name: str, checkpoint: str | None = None) -> ImageMatcher:
    return worker_cache().get(name, checkpoint)
