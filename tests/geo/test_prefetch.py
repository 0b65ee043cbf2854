"""The read-ahead thread (geomreg/geo/prefetch.py) and its use by match_tiles."""

import threading
import time

import numpy as np
import pytest

from geomreg.geo.prefetch import prefetch, prefetch_map


def test_items_come_in_order_from_another_thread():
    threads = set()

    def produce(x):
        threads.add(threading.current_thread().name)
        return x * x

    assert list(prefetch_map(produce, range(20), depth=3)) == [x * x for x in range(20)]
    assert threads == {"geomreg-prefetch"}


def test_depth_zero_reads_in_the_calling_thread():
    names = []
    assert list(prefetch_map(lambda x: names.append(threading.current_thread().name) or x, range(3), depth=0)) == [0, 1, 2]
    assert set(names) == {threading.current_thread().name}


def test_reads_ahead_while_the_consumer_works():
    produced = []

    def produce(x):
        produced.append(x)
        return x

    it = prefetch_map(produce, range(10), depth=2)
    assert next(it) == 0
    deadline = time.monotonic() + 5
    while len(produced) < 3 and time.monotonic() < deadline:  # the consumer "works"; the reader goes on
        time.sleep(0.01)
    assert produced[:3] == [0, 1, 2]
    assert len(produced) <= 4  # item 0 taken, 2 queued, at most one more waiting to be queued
    assert list(it) == list(range(1, 10))


def test_an_error_is_raised_at_its_item():
    def produce(x):
        if x == 3:
            raise OSError("tile 3: read failed")
        return x

    got = []
    with pytest.raises(OSError, match="tile 3"):
        for x in prefetch_map(produce, range(6), depth=2):
            got.append(x)
    assert got == [0, 1, 2]


def test_closing_early_stops_the_reader():
    produced = []
    it = prefetch((produced.append(x) or x for x in range(1000)), depth=2)
    for x in it:
        if x == 1:
            break
    it.close()
    n = len(produced)
    time.sleep(0.2)
    assert len(produced) == n <= 5
    assert not any(t.name == "geomreg-prefetch" for t in threading.enumerate())


def test_match_tiles_reads_ahead_with_the_same_result():
    from geomreg.geo import match_tiles, plan_registration
    from geomreg.geo.config import RegistrationConfig
    from geomreg.geo.sample import sample_pair
    from geomreg.matching.cfog import CFOGMatcher

    pair = sample_pair()
    plan = plan_registration(pair.reference, pair.moving, RegistrationConfig(tile_size=320, overlap=32))
    tasks = plan.tasks[:4]
    inline = match_tiles(tasks, CFOGMatcher(), batch_size=2, read_ahead=0)
    ahead = match_tiles(tasks, CFOGMatcher(), batch_size=2, read_ahead=3)
    assert [t.tile_id for t in ahead] == [t.tile_id for t in inline]
    for a, b in zip(ahead, inline):
        assert a.skipped == b.skipped
        np.testing.assert_array_equal(a.ref_map, b.ref_map)
        np.testing.assert_array_equal(a.mov_map, b.mov_map)
