"""CFOG polish around another matcher's model: CFOGMatcher.refine and RefinedMatcher."""

from __future__ import annotations

import numpy as np
import pytest

from geomreg.matching.cfog import CFOGMatcher
from geomreg.matching.refine import RefinedMatcher, RefineConfig, base_homography
from geomreg.matching.types import ImageMatcher, MatchResult
from tests.matching.test_cfog import apply, errors, rmse, rotated_pair, translation

# A small rotation plus a shift: what the network leaves for the polish to localise.
ANGLE, SHIFT = np.deg2rad(4.0), (6.4, -3.3)


@pytest.fixture(scope="module")
def pair():
    return rotated_pair(ANGLE, SHIFT, texture_seed=5, modality_seed=4)


class CoarseMatcher:
    """Stands in for the network's coarse matches: a grid of true correspondences, each off by up to 4 px."""

    name = "coarse"

    def __init__(self, A: np.ndarray, n: int = 64, noise_px: float = 4.0) -> None:
        self.A, self.n, self.noise = A, n, noise_px

    def match(self, ref, mov) -> MatchResult:
        rng = np.random.default_rng(0)
        g = np.linspace(40, 280, int(np.sqrt(self.n)))
        ref_xy = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
        mov_xy = apply(self.A, ref_xy) + rng.uniform(-self.noise, self.noise, ref_xy.shape)
        return MatchResult(ref_xy, mov_xy, np.full(len(ref_xy), 0.5), ("coarse: grid",))

    def match_batch(self, pairs):
        return [self.match(r, m) for r, m in pairs]


def test_refine_localises_around_a_model_a_few_pixels_off(pair):
    ref, mov, A = pair
    start = A.copy()
    start[:2, 2] += (2.5, -2.0)  # the model a coarse matcher would give
    res = CFOGMatcher().refine(ref, mov, start)
    e = errors(res, A)
    assert len(res) >= 30, res.notes
    assert rmse(e) < 0.35 and e.max() < 1.5


def test_refine_rejects_a_singular_model(pair):
    ref, mov, _ = pair
    with pytest.raises(ValueError, match="invertible 3x3"):
        CFOGMatcher().refine(ref, mov, np.zeros((3, 3)))


def test_refined_matcher_turns_coarse_matches_into_subpixel_ones(pair):
    ref, mov, A = pair
    coarse = CoarseMatcher(A)
    m = RefinedMatcher(coarse)
    assert isinstance(m, ImageMatcher) and m.name == "coarse+cfog"
    before = errors(coarse.match(ref, mov), A)
    res = m.match(ref, mov)
    after = errors(res, A)
    assert rmse(before) > 2.0 and rmse(after) < 0.35, res.notes
    assert res.notes[0] == "coarse: grid" and any("cfog refine" in n for n in res.notes)
    [batched] = m.match_batch([(ref, mov)])
    np.testing.assert_array_equal(batched.mov_xy, res.mov_xy)


def test_without_a_model_the_base_matches_are_kept_with_the_reason(pair):
    ref, mov, A = pair
    few = CoarseMatcher(A, n=4)
    res = RefinedMatcher(few).match(ref, mov)
    assert len(res) == 4 and "no model to refine around" in res.notes[-1]
    assert base_homography(few.match(ref, mov), RefineConfig()) is None


def test_a_wrong_model_falls_back_to_the_base_matches(pair):
    ref, mov, A = pair
    wrong = CoarseMatcher(translation(120.0, 90.0) @ A, noise_px=0.0)  # consistent, but far from the truth
    res = RefinedMatcher(wrong).match(ref, mov)
    # Nothing consistent lies within the search radius of a model 150 px off: the base result comes back.
    np.testing.assert_array_equal(res.mov_xy, wrong.match(ref, mov).mov_xy)
    assert "kept the 64 coarse matches" in res.notes[-1]


def test_get_matcher_builds_the_chained_matcher():
    from geomreg.matching.api import MATCHER_NAMES, get_matcher

    assert "regnetmamba2+cfog" in MATCHER_NAMES
    m = get_matcher("regnetmamba2+cfog", device="cpu")
    assert isinstance(m, RefinedMatcher) and m.name == "regnetmamba2+cfog" and m.base.name == "regnetmamba2"
