"""Per-tie-point polish: CFOGMatcher.localise and PolishedMatcher."""

from __future__ import annotations

import numpy as np
import pytest

from geomreg.matching.cfog import CFOGMatcher
from geomreg.matching.polish import PolishConfig, PolishedMatcher
from geomreg.matching.types import ImageMatcher, MatchResult
from tests.matching.test_cfog import apply, errors, rotated_pair, structured_texture, warp_pair

ANGLE, SHIFT = np.deg2rad(2.0), (4.37, -2.81)  # sub-pixel parts away from 0 and 0.5: a cell-centre bias would show


@pytest.fixture(scope="module")
def pair():
    return rotated_pair(ANGLE, SHIFT, texture_seed=7, modality_seed=2)


def affine_fit_error(r: MatchResult, A: np.ndarray) -> float:
    """RMSE (px) over a grid of the image of the least-squares affine through the tie points, against the truth."""
    X = np.c_[r.ref_xy, np.ones(len(r))]
    fit = np.linalg.lstsq(X, r.mov_xy, rcond=None)[0]  # [3, 2]
    g = np.stack(np.meshgrid(np.arange(0, 320, 10.0), np.arange(0, 320, 10.0)), -1).reshape(-1, 2)
    return float(np.sqrt(np.mean(np.sum((np.c_[g, np.ones(len(g))] @ fit - apply(A, g)) ** 2, axis=1))))


class BiasedGridMatcher:
    """Stands in for the network: true correspondences on its 8 px grid, every one off by the same sub-pixel bias
    plus half-pixel noise, which is how its fine stage errs (docs/precision.md)."""

    name = "grid"

    def __init__(self, A: np.ndarray, bias=(0.3, -0.25), noise_px: float = 0.5, step: int = 8) -> None:
        self.A, self.bias, self.noise, self.step = A, np.asarray(bias), noise_px, step

    def match(self, ref, mov) -> MatchResult:
        rng = np.random.default_rng(0)
        g = np.arange(4.5, ref.shape[0] - 4, self.step)  # the network's anchors sit at 8 c + 4.5
        ref_xy = np.stack(np.meshgrid(g, g), -1).reshape(-1, 2)
        mov_xy = apply(self.A, ref_xy) + self.bias + rng.uniform(-self.noise, self.noise, ref_xy.shape)
        return MatchResult(ref_xy, mov_xy, np.full(len(ref_xy), 0.5), ("grid: biased",))

    def match_batch(self, pairs):
        return [self.match(r, m) for r, m in pairs]


def test_localise_returns_subpixel_matches_at_the_given_points(pair):
    ref, mov, A = pair
    pts = np.array([[100.2, 120.4], [200.0, 80.0], [160.6, 210.5], [5.0, 5.0]])  # the last: no template fits there
    start = A.copy()
    start[:2, 2] += (1.0, -1.0)  # the model a network gives is a little off
    loc = CFOGMatcher().localise(ref, mov, start, pts)
    assert 3 not in loc.index
    assert set(loc.index.tolist()) <= {0, 1, 2} and len(loc) >= 2
    np.testing.assert_array_equal(loc.ref_xy, np.floor(pts[loc.index] + 0.5))  # rounded to the template's pixel
    e = np.linalg.norm(loc.mov_xy - apply(A, loc.ref_xy), axis=1)
    assert e.max() < 0.5, e  # single 51 px templates under 4-look speckle: measured 0.13-0.33 px
    np.testing.assert_allclose(loc.offset, loc.mov_xy - apply(start, loc.ref_xy))


def test_polish_removes_the_bias_of_the_base_points(pair):
    ref, mov, A = pair
    base = BiasedGridMatcher(A)
    m = PolishedMatcher(base)
    assert isinstance(m, ImageMatcher) and m.name == "grid+polish"
    before, res = base.match(ref, mov), m.match(ref, mov)
    after = errors(res, A)
    bias_before = np.median(before.mov_xy - apply(A, before.ref_xy), axis=0)
    bias_after = np.median(res.mov_xy - apply(A, res.ref_xy), axis=0)
    assert np.linalg.norm(bias_before) > 0.35
    print(f"median error {np.median(errors(before, A)):.3f} -> {np.median(after):.3f} px; "
          f"affine fit {affine_fit_error(before, A):.3f} -> {affine_fit_error(res, A):.3f} px")
    # Measured under this strong 4-look speckle (pytest -s tests/matching/test_polish.py): bias 0.03 px, median
    # tie-point error 0.52 -> 0.24 px, least-squares affine 0.39 -> 0.05 px RMSE over the image.
    assert np.linalg.norm(bias_after) < 0.1 and np.median(after) < 0.3, res.notes
    assert affine_fit_error(res, A) < 0.12 < affine_fit_error(before, A)
    assert len(res) >= PolishConfig().min_polished and "polished" in res.notes[-1]
    [batched] = m.match_batch([(ref, mov)])
    np.testing.assert_array_equal(batched.mov_xy, res.mov_xy)


def test_points_that_disagree_with_the_model_are_not_polished(pair):
    ref, mov, A = pair
    # A base whose every point is 2.5 px off the truth in x: CFOG finds the truth, which is further from the
    # base's model than agree_px, so nothing is polished and the base's own points come back.
    base = BiasedGridMatcher(A, bias=(2.5, 0.0), noise_px=0.0)
    res = PolishedMatcher(base, PolishConfig(agree_px=1.5)).match(ref, mov)
    np.testing.assert_array_equal(res.mov_xy, base.match(ref, mov).mov_xy)
    assert "0 of" in res.notes[-1] and "own positions kept" in res.notes[-1]


def test_featureless_images_keep_the_base_points():
    rng = np.random.default_rng(0)
    flat_a, flat_b = (np.full((200, 200), 0.5, np.float32) + rng.normal(0, 1e-3, (200, 200)).astype(np.float32) for _ in range(2))
    base = BiasedGridMatcher(np.eye(3), bias=(0.0, 0.0), noise_px=0.0)
    res = PolishedMatcher(base).match(flat_a, flat_b)
    assert len(res) == len(base.match(flat_a, flat_b))
    assert "own positions kept" in res.notes[-1] or "no model" in res.notes[-1]


def test_too_few_base_points_give_no_model():
    img = structured_texture(200, 200, seed=1)
    base = BiasedGridMatcher(np.eye(3), step=150)  # two points a side: 4 matches, fewer than a model needs
    res = PolishedMatcher(base).match(img, img)
    assert len(res) == 4 and "no model to polish around" in res.notes[-1]


def test_auto_is_the_polished_network():
    from geomreg.matching.api import AUTO_WITH_WEIGHTS, MATCHER_NAMES, get_matcher

    assert "regnetmamba2+polish" in MATCHER_NAMES and AUTO_WITH_WEIGHTS == "regnetmamba2+polish"
    m = get_matcher("regnetmamba2+polish", device="cpu")
    assert isinstance(m, PolishedMatcher) and m.name == "regnetmamba2+polish" and m.base.name == "regnetmamba2"


@pytest.fixture(scope="module")
def network():
    from geomreg.matching.api import get_matcher

    return get_matcher("regnetmamba2", device="cpu")


def test_polished_network_is_subpixel_on_an_exact_shift(network):
    """The packaged network on the bundled Landsat-8 crop and its exactly shifted, SAR-like copy: its own tie
    points are good to about half a pixel; polished, to about a tenth."""
    import rasterio

    from geomreg.geo.sample import sample_pair
    from geomreg.train.simulate import sar_like

    with rasterio.open(sample_pair().reference) as ds:
        canvas = ds.read(2, window=((100, 396), (100, 396))).astype(np.float32)
    canvas = np.clip((canvas - np.percentile(canvas, 1)) / np.ptp(np.percentile(canvas, [1, 99])), 0, 1)
    A = np.array([[1.0, 0.0, 3.37], [0.0, 1.0, -2.62], [0.0, 0.0, 1.0]])
    ref, mov = warp_pair(canvas, A, 20, (256, 256), (256, 256))
    mov = sar_like(mov, np.random.default_rng(3))
    base = network.match(ref, mov)
    res = PolishedMatcher(network).match(ref, mov)
    e_net = np.median(np.linalg.norm(base.mov_xy - apply(A, base.ref_xy), axis=1))
    e_pol = np.median(np.linalg.norm(res.mov_xy - apply(A, res.ref_xy), axis=1))
    print(f"median tie-point error: network {e_net:.3f} px, polished {e_pol:.3f} px ({len(res)} points)")
    # Measured (pytest -s tests/matching/test_polish.py): network 1.23 px, polished 0.14 px; margin 2x.
    assert e_pol < 0.3 and e_pol < 0.5 * e_net, (e_net, e_pol, res.notes)
