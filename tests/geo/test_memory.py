"""The memory budget of tile matching: sizes, the RSS sampler, and batches that shrink to fit the budget."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from geomreg.geo.errors import InputError
from geomreg.geo.memory import GIB, MIB, TileBatcher, current_rss, memory_budget_for_worker, parse_memory
from geomreg.matching.types import MatchResult


@pytest.mark.parametrize("text, expected", [("2G", 2_000_000_000), ("1.5GB", 1_500_000_000), ("1500MB", 1_500_000_000),
                                            ("2GiB", 2 * GIB), ("512mib", 512 * MIB), (3_000_000_000, 3_000_000_000),
                                            (None, None)])
def test_parse_memory(text, expected):
    assert parse_memory(text) == expected


@pytest.mark.parametrize("bad", ["lots", "-1G", "10MB", True, "1.5 PB"])
def test_parse_memory_rejects(bad):
    with pytest.raises(InputError):
        parse_memory(bad)


_TRANSIENT = """
import numpy as np
from geomreg.geo.memory import MIB, PeakSampler, current_rss

before = current_rss()
assert before > 0
with PeakSampler() as s:
    a = np.ones(200 * MIB // 8)  # touched: resident
    a.sum()
    del a
assert s.peak - before >= 150 * MIB, (before, s.peak)
"""


def test_peak_sampler_sees_a_transient_allocation():
    # In a fresh process: once a Matcher has run in this one, malloc keeps freed memory (cpu_allocator), and the
    # 200 MiB may come from it without the RSS moving at all.
    r = subprocess.run([sys.executable, "-c", _TRANSIENT], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_batcher_calibrates_on_one_tile_then_fits_the_budget():
    b = TileBatcher(budget=2000 * MIB, max_batch=8)
    assert b.next_size() == 1  # nothing measured yet
    b.base = 500 * MIB
    b.observe(1, 800 * MIB)  # one tile: 300 MB
    assert b.per_tile == 300 * MIB
    assert b.next_size() == 2  # (2000 - 500) / (300 * 1.15) = 4.3, but at most twice the last batch
    b.observe(2, 1100 * MIB)
    assert b.next_size() == 4
    b.observe(4, 1700 * MIB)
    assert b.next_size() == 4  # the budget, not the doubling, bounds it now
    assert b.next_size(cap=3) == 3
    b.observe(4, 2100 * MIB)  # a batch costlier than measured raises the estimate: smaller batches
    assert b.per_tile == 400 * MIB and b.next_size() == 3


def test_batcher_uses_the_matchers_prior_as_a_floor():
    b = TileBatcher(budget=2000 * MIB, max_batch=8, prior_per_tile=700 * MIB, base=300 * MIB)
    b.observe(1, 500 * MIB)  # measured 200 MB, e.g. memory kept free by the allocator from earlier work
    assert b.estimate() == 700 * MIB and b.next_size() == 2


def test_worker_budget_is_capped_by_the_worker_memory_limit():
    assert memory_budget_for_worker(None, None) is None
    assert memory_budget_for_worker(None, 4 * GIB) == int(0.8 * 4 * GIB)
    assert memory_budget_for_worker(1 * GIB, 4 * GIB) == 1 * GIB
    assert memory_budget_for_worker(8 * GIB, 4 * GIB) == int(0.8 * 4 * GIB)


class _HungryMatcher:
    """A matcher whose working set is `per_pair` bytes per pair, held while it matches (real, touched memory)."""

    name = "hungry"

    def __init__(self, per_pair: int) -> None:
        self.per_pair = per_pair
        self.batches: list[int] = []

    def match(self, ref, mov):
        return self.match_batch([(ref, mov)])[0]

    def match_batch(self, pairs):
        self.batches.append(len(pairs))
        work = np.ones(len(pairs) * self.per_pair // 8)
        work.sum()
        out = []
        for ref, _ in pairs:
            h, w = ref.shape
            xy = np.array([[w / 2, h / 2], [w / 3, h / 3]], np.float64)
            out.append(MatchResult(xy, xy.copy(), np.ones(2)))
        del work
        return out


def test_match_tiles_batches_shrink_to_the_budget(tmp_path, texture):
    from geomreg.geo.config import RegistrationConfig
    from geomreg.geo.plan import plan_registration
    from geomreg.geo.tiles import match_tiles

    from .scenes import moving_scene, reference_scene, shift

    ref, g = reference_scene(tmp_path, texture, size=384)
    mov = moving_scene(tmp_path, texture, g, shift(30.0, 0.0))
    plan = plan_registration(ref, mov, RegistrationConfig(tile_size=96, overlap=16, max_shift=16.0))
    tasks = list(plan.tasks)
    assert len(tasks) >= 9
    per_pair = 120 * MIB
    budget = current_rss() + 400 * MIB  # room for about three pairs above what the process holds now
    m = _HungryMatcher(per_pair)
    out = match_tiles(tasks, m, batch_size=8, max_memory=budget)
    assert len(out) == len(tasks)
    assert m.batches[0] == 1  # calibration
    assert max(m.batches) <= 3, m.batches  # 400 MB / (120 MB * 1.15): never the full batch of 8
    roomy = _HungryMatcher(per_pair)
    match_tiles(tasks, roomy, batch_size=8, max_memory=current_rss() + 8 * GIB)
    assert max(roomy.batches) == 8  # a generous budget lets the batch grow to batch_size
