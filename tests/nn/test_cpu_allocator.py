"""The glibc malloc tuning: freed tensor memory stays in the process for reuse."""

from __future__ import annotations

import platform
import sys

import pytest
import torch

from geomreg.nn import cpu_allocator


def _resident_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096


def test_system_setting_leaves_malloc_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cpu_allocator.ENV_SWITCH, "system")
    assert cpu_allocator.keep_freed_memory.__wrapped__() is False


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_tensor_memory_is_kept_for_reuse(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cpu_allocator.ENV_SWITCH, raising=False)
    assert cpu_allocator.keep_freed_memory.__wrapped__() is True
    big = torch.ones(64 * 2**20 // 4)  # 64 MiB, touched: above any default mmap threshold
    held = _resident_bytes()
    del big
    # Untuned, glibc unmaps the block on free and the resident size drops by 64 MiB.
    assert _resident_bytes() > held - 8 * 2**20
