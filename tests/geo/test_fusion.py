from __future__ import annotations

import numpy as np

from geomreg.geo.fusion import choose, cv_scores, dedupe, tile_consistency


def test_dedupe_keeps_most_confident_copy():
    ref = np.array([[10.2, 10.3], [10.4, 10.1], [50.0, 50.0], [10.3, 10.2]])
    mov = ref - [2.0, 1.0]
    mov[3] = ref[3] - [9.0, 9.0]  # same place, different displacement: a conflicting match is kept for the fit to judge
    conf = np.array([0.5, 0.9, 0.7, 0.8])
    keep = dedupe(ref, mov, conf)
    assert list(keep) == [1, 2, 3]


def test_tile_consistency_removes_local_outliers():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 256, (60, 2))
    dst = src + [1.0, 2.0]
    dst[:5] += 15.0
    tid = np.zeros(60, dtype=int)
    keep = tile_consistency(src, dst, tid, 3.0, 0)
    assert not keep[:5].any() and keep[5:].all()


def test_choose_prefers_simplest_within_tolerance():
    assert choose({"translation": 0.20, "affine": 0.19, "poly2": 0.185}) == "translation"
    assert choose({"translation": 0.90, "affine": 0.20, "poly2": 0.19}) == "affine"
    assert choose({"translation": 2.0, "affine": 1.2, "poly2": 0.3, "tps": 0.29}) == "poly2"


def test_cv_scores_rank_true_model_first():
    rng = np.random.default_rng(0)
    src = rng.uniform(0, 1000, (400, 2))
    dst = src @ np.array([[1.0, 0.004], [-0.004, 1.0]]).T + [2, 3] + rng.normal(0, 0.1, (400, 2))
    tid = (src[:, 0] // 250).astype(int) * 4 + (src[:, 1] // 250).astype(int)
    s = cv_scores(["translation", "affine", "poly2"], src, dst, tid, 3.0, 5, 0, 64.0)
    assert s["affine"] < 0.2 and s["translation"] > 0.5
    assert choose(s) == "affine"
