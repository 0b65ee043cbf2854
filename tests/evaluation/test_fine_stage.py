import numpy as np
import torch

from geomreg.data.manifest import read_manifest
from geomreg.evaluation.fine_stage import fine_stage_stats, overall
from geomreg.matching.config import RegNetMamba2Config
from geomreg.matching.model import RegNetMamba2
from geomreg.train.pairs import cache_pair


def test_fine_stage_stats_cover_every_modality_and_both_kinds(tiny_dataset):
    torch.manual_seed(0)
    cfg = RegNetMamba2Config.from_dict({"coarse": {"threshold": 0.0}})
    model = RegNetMamba2(cfg)
    pairs = [cache_pair(r) for r in read_manifest(tiny_dataset)]
    stats = fine_stage_stats(model, pairs, size=64)
    mods = {r.modality for r in read_manifest(tiny_dataset)}
    assert {(s.modality, s.kind) for s in stats} == {(m, k) for m in mods for k in ("real", "self")}
    for s in stats:
        assert 0 <= s.correct <= s.matches
        if s.correct:
            # an anchor error is at most the window reach; the window's expectation cannot leave the window
            assert 0 <= s.anchor_median_px < 6.0 and 0 <= s.fine_median_px < 11.0
            assert np.isfinite(s.gain) or s.correct == 0
    o = overall(stats, "self")
    assert not o or np.isfinite(o["fine_median_px"])


def test_gain_measures_how_far_predictions_reach():
    from geomreg.evaluation.fine_stage import _gain

    truth = np.array([[1.0, -2.0], [0.5, 1.5], [-1.0, 0.0]])
    assert np.isclose(_gain(truth, truth), 1.0)
    assert np.isclose(_gain(truth, 0.8 * truth), 1.25)  # predictions stopping 20 % short
    assert np.isnan(_gain(np.zeros((0, 2)), np.zeros((0, 2))))
