"""Read ahead: tile windows loaded in a background thread while the matcher works on the previous batch.

Why a thread: the reads are GDAL calls (rasterio), which release the GIL, and the network releases it in its
torch kernels, so reading the next tiles overlaps the current batch on CPU and GPU alike, without the pickling
and start-up of a process pool. One thread reads, in order, so the raster handles it opens are used by that
thread alone (a GDAL dataset handle must not be shared between threads).
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Callable, Iterable, Iterator, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

_DONE = object()


class _Failure:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc


def prefetch(items: Iterable[T], depth: int) -> Iterator[T]:
    """Iterate ``items`` with up to ``depth`` of them produced ahead in a background thread, in order.

    depth <= 0 iterates in the calling thread (no read-ahead). An exception raised while producing an item is
    raised here, at that item. Closing the iterator early (break, an exception in the consumer) stops the
    producer after at most one more item, and waits for it, so nothing it opened outlives the loop.
    """
    if depth <= 0:
        yield from items
        return
    q: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            q.put(_Failure(exc))

    worker = threading.Thread(target=produce, name="geomreg-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            item = q.get()
            if item is _DONE:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue
            try:
                q.get_nowait()
            except queue.Empty:
                pass
            worker.join(timeout=0.05)


def prefetch_map(fn: Callable[[T], object], items: Iterable[T], depth: int) -> Iterator[object]:
    """``prefetch(map(fn, items), depth)``: fn runs in the read-ahead thread."""
    return prefetch((fn(x) for x in items), depth)
