"""Keep freed tensor memory in the process for reuse (glibc malloc), the CPU counterpart of a caching allocator.

glibc serves every allocation above its mmap threshold (at most 32 MiB, raised dynamically) with a fresh
``mmap`` and hands it back with ``munmap`` on free, and it trims the heap top back to the OS. PyTorch on CPU
allocates a new tensor for almost every operation, and the SSD's intra-chunk matrices are 30 MiB and more
at 512 px, so the same pages are faulted in and zeroed by the kernel again and again. Raising both
thresholds makes freed blocks reusable, which makes a CPU pair markedly faster at the same peak memory
(docs/benchmarks.md, "Defaults and why"). The price is that the process
keeps its peak heap until it exits, as PyTorch's CUDA caching allocator does.

Set GEOMREG_CPU_ALLOCATOR=system to leave malloc untouched (for example when jemalloc or tcmalloc is
preloaded). Other C libraries (macOS, Windows, musl) are left as they are.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
import os
import sys

log = logging.getLogger(__name__)

ENV_SWITCH = "GEOMREG_CPU_ALLOCATOR"
# mallopt parameter numbers from glibc's <malloc.h>
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_KEEP = 2**31 - 1  # the largest value mallopt takes (an int): nothing is mmapped or trimmed below 2 GiB


@functools.cache
def keep_freed_memory() -> bool:
    """Tune glibc malloc once per process so freed tensor memory is reused; True when applied."""
    if os.environ.get(ENV_SWITCH, "").strip().lower() == "system":
        log.debug("%s=system: malloc left as it is", ENV_SWITCH)
        return False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    applied = bool(mallopt(_M_MMAP_THRESHOLD, _KEEP)) and bool(mallopt(_M_TRIM_THRESHOLD, _KEEP))
    if applied:
        log.debug("glibc malloc keeps freed memory for reuse (%s=system to disable)", ENV_SWITCH)
    return applied
