"""Progressive tile sampling: spread order, rounds, stopping rules, and a registration that matches fewer tiles."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

import geomreg
from geomreg.geo.config import RegistrationConfig
from geomreg.geo.plan import TileTask
from geomreg.geo.sampling import FIRST_ROUND, TileSampler, spread_order

from .scenes import moving_scene, reference_scene, shift, truth_error_px


def _tasks(nx: int, ny: int, step: int = 100) -> list[TileTask]:
    out = []
    for j in range(ny):
        for i in range(nx):
            out.append(TileTask(len(out), "fine", None, None, None, (i * step, j * step, 128, 128), (0, 0, 1, 1)))
    return out


class _Plan:
    def __init__(self, tasks, **cfg) -> None:
        self.tasks = tuple(tasks)
        self.config = RegistrationConfig(**cfg)


def test_spread_order_starts_central_then_reaches_the_corners():
    tasks = _tasks(7, 5)
    order = spread_order(tasks)
    assert sorted(order) == list(range(len(tasks)))
    assert order[0] == 2 * 7 + 3  # the centre tile
    corners = {0, 6, 28, 34}
    assert corners <= set(order[:5])
    # The first nine are spread: no two of them are neighbours.
    c = np.array([[t.ref_window[0], t.ref_window[1]] for t in (tasks[i] for i in order[:FIRST_ROUND])])
    d = np.linalg.norm(c[:, None] - c[None], axis=2) + np.eye(len(c)) * 1e9
    assert d.min() > 100


def test_sampler_stops_when_the_model_is_pinned_down():
    s = TileSampler(_Plan(_tasks(10, 10)))
    first = s.first()
    assert len(first) == FIRST_ROUND
    nxt = s.after("registered", "affine", {"max_std_px": 0.3})
    assert len(nxt) == 5 and not set(nxt) & set(first)  # 9 -> 14 tiles
    nxt = s.after("registered", "affine", {"max_std_px": 0.08})
    assert nxt == [] and s.done == 14
    summ = s.summary()
    assert summ["tiles_processed"] == 14 and summ["mode"] == "progressive" and "0.080" in summ["stopped"]
    assert [r["tiles"] for r in summ["rounds"]] == [9, 14]


def test_sampler_auto_needs_the_same_model_twice():
    s = TileSampler(_Plan(_tasks(10, 10)))
    s.first()
    assert s.after("registered", "translation", {"max_std_px": 0.01})  # first round: no previous choice to agree with
    assert s.after("registered", "affine", {"max_std_px": 0.01})  # the choice changed
    assert s.after("registered", "affine", {"max_std_px": 0.01}) == []


def test_sampler_fixed_transform_stops_at_once_and_failures_continue():
    s = TileSampler(_Plan(_tasks(10, 10), transform="homography"))
    s.first()
    assert s.after("failed", None, None)  # too few tie points yet: more tiles
    assert s.after("registered", "homography", {"max_std_px": None})  # not estimable yet
    assert s.after("registered", "homography", {"max_std_px": 0.05}) == []


def test_sampler_all_tiles_for_tps_and_when_asked():
    n = 100
    for cfg in ({"tiles": "all"}, {"transform": "tps"}):
        s = TileSampler(_Plan(_tasks(10, 10), **cfg))
        assert len(s.first()) == n
        assert s.after("registered", "affine", {"max_std_px": 0.01}) == []
        assert s.summary()["mode"] == "all"
    s = TileSampler(_Plan(_tasks(10, 10)))
    s.first()
    rest = s.after("registered", "tps", None)  # auto chose a spline: everything else at once
    assert len(rest) == n - FIRST_ROUND
    assert s.after("registered", "tps", None) == [] and "spline" in s.summary()["stopped"]


def test_sampler_grows_to_every_tile_when_never_certain():
    s = TileSampler(_Plan(_tasks(6, 6)))
    got = list(s.first())
    while True:
        nxt = s.after("registered", "poly3", {"max_std_px": 0.5})
        if not nxt:
            break
        got += nxt
    assert sorted(got) == list(range(36))
    assert "every tile matched" in s.summary()["stopped"]


def test_register_matches_a_sample_of_tiles_with_the_same_accuracy(tmp_path, texture, matcher):
    ref, g = reference_scene(tmp_path, texture, margin=0, size=640)
    T = shift(-2.37 * 30, 1.61 * 30)
    mov = moving_scene(tmp_path, texture, g, T)
    kw = dict(matcher=matcher, progress=False, tile_size=160, overlap=16, max_shift=16, transform="translation")
    sampled = geomreg.register(ref, mov, **kw)
    full = geomreg.register(ref, mov, tiles="all", **kw)
    assert sampled.status == full.status == "registered"
    n = len(full.plan.tasks)
    assert full.sampling["tiles_processed"] == n and full.sampling["mode"] == "all"
    k = sampled.sampling["tiles_processed"]
    assert k < n, sampled.sampling
    assert sampled.uncertainty["max_std_px"] <= 0.1
    assert sampled.report["uncertainty"]["max_std_px"] == sampled.uncertainty["max_std_px"]
    assert sampled.report["tile_sampling"]["tiles_processed"] == k
    assert truth_error_px(sampled, T) < 0.3 and truth_error_px(full, T) < 0.3


def test_config_validates_the_new_fields():
    import pytest

    from geomreg.geo.errors import InputError

    with pytest.raises(InputError):
        RegistrationConfig(tiles="some")
    with pytest.raises(InputError):
        RegistrationConfig(max_uncertainty=0)
    with pytest.raises(InputError):
        RegistrationConfig(max_memory=1000)
    assert replace(RegistrationConfig(), max_memory=2**31).max_memory == 2**31
