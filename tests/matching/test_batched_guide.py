"""The batched torch guide (geomreg/matching/batched_guide.py) against the per-tile cv2 / L-BFGS path."""

import cv2
import numpy as np
import pytest
import torch

from geomreg.matching import batched_guide as bg
from geomreg.matching.api import Matcher, MatcherConfig
from geomreg.matching.consensus import consensus_homography, positions_near
from geomreg.matching.guided import GuideConfig, fit_guide, guided_matches, uses_torch_backend
from geomreg.matching.model import RegNetMamba2, pixel_to_fine

from tests.matching.test_guided import _forced, _texture

GRID = np.stack(np.meshgrid(np.linspace(0, 511, 6), np.linspace(0, 511, 6)), -1).reshape(-1, 2)


def _h_true(k: int) -> np.ndarray:
    return np.array([[1.01, 0.02, 3.0 + k], [-0.015, 0.99, -2.0], [1e-5, -2e-5, 1.0]])


def _proj(H: np.ndarray, xy: np.ndarray) -> np.ndarray:
    return cv2.perspectiveTransform(np.asarray(xy, np.float64)[None], np.asarray(H, np.float64))[0]


def _grid_err(H: np.ndarray, G: np.ndarray) -> float:
    return float(np.abs(_proj(H, GRID) - _proj(G, GRID)).max())


def _tiles(counts: list[int], outliers: float, seed: int = 0):
    """Matches of len(counts) tiles padded to [T, K, 2]: an exact homography per tile, 0.3 px noise, wild outliers."""
    rng = np.random.default_rng(seed)
    K = max(counts)
    src, dst = np.zeros((len(counts), K, 2)), np.zeros((len(counts), K, 2))
    for t, n in enumerate(counts):
        a = rng.uniform(0, 512, (n, 2))
        b = _proj(_h_true(t), a) + rng.normal(0, 0.3, (n, 2))
        wild = rng.random(n) < outliers
        b[wild] = rng.uniform(0, 512, (int(wild.sum()), 2))
        src[t, :n], dst[t, :n] = a, b
    mask = torch.arange(K)[None] < torch.tensor(counts)[:, None]
    return torch.from_numpy(src), torch.from_numpy(dst), mask


def test_pad_by_tile_round_trips_unsorted_matches():
    batch = torch.tensor([2, 0, 2, 1, 0, 2])
    tile, slot, mask = bg.pad_by_tile(batch, 4)
    assert mask.tolist() == [[True, True, False], [True, False, False], [True, True, True], [False, False, False]]
    values = torch.arange(6.0)[:, None]
    padded = bg.scatter_pad(values, tile, slot, mask)
    assert padded[2, :, 0].tolist() == [0.0, 2.0, 5.0]  # each tile's matches in their order
    torch.testing.assert_close(padded[tile, slot], values)


def test_batched_fit_and_cv2_magsac_both_recover_the_homography():
    counts = [300, 120, 40, 5]
    src, dst, mask = _tiles(counts, outliers=0.4)
    H, ok = bg.fit_homographies(src, dst, mask, 3.0, 8, generator=torch.Generator().manual_seed(0))
    assert ok.tolist() == [True, True, True, False]  # 5 matches: too few for min_inliers = 8
    cfg = GuideConfig()
    for t, n in enumerate(counts[:3]):
        Hc = fit_guide(src[t, :n].numpy(), dst[t, :n].numpy(), cfg)
        assert Hc is not None
        assert _grid_err(H[t].numpy(), _h_true(t)) < 1.5
        assert _grid_err(Hc, _h_true(t)) < 1.5
        assert _grid_err(H[t].numpy(), Hc) < 1.0  # the two guides agree with each other
    assert fit_guide(src[3, :5].numpy(), dst[3, :5].numpy(), cfg) is None


def test_batched_fit_is_seeded_and_batch_invariant():
    src, dst, mask = _tiles([200, 90], outliers=0.3, seed=1)
    H1, _ = bg.fit_homographies(src, dst, mask, 3.0, 8, generator=torch.Generator().manual_seed(0))
    H2, _ = bg.fit_homographies(src, dst, mask, 3.0, 8, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(H1, H2, rtol=0, atol=0)
    alone, ok = bg.fit_homographies(src[:1], dst[:1], mask[:1], 3.0, 8, generator=torch.Generator().manual_seed(5))
    assert ok.item() and _grid_err(alone[0].numpy(), H1[0].numpy()) < 0.5  # another draw, the same model


def test_no_homography_from_disagreeing_matches():
    src, dst, mask = _tiles([60], outliers=1.0, seed=2)
    H, ok = bg.fit_homographies(src, dst, mask, 3.0, 30, generator=torch.Generator().manual_seed(0))
    assert not ok.item()
    torch.testing.assert_close(H[0], torch.eye(3, dtype=torch.float64))


def _heatmaps(counts: list[int], seed: int = 0, w: int = 7):
    """Per tile: a guide 1.5 px off the truth, windows on the guide's cells, Gaussian heatmaps on the truth
    (30 % flat random ones)."""
    rng = np.random.default_rng(seed)
    r = w // 2
    K = max(counts)
    T = len(counts)
    starts, xy_a, centre, heat = [], np.zeros((T, K, 2)), np.zeros((T, K, 2)), np.full((T, K, w, w), 1.0 / w**2)
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    for t, n in enumerate(counts):
        H0 = _h_true(t).copy()
        H0[0, 2] += 1.5
        H0[1, 2] -= 1.0
        a = rng.uniform(16, 496, (n, 2))
        truth = pixel_to_fine(torch.from_numpy(_proj(_h_true(t), a))).numpy()
        cen = np.round(pixel_to_fine(torch.from_numpy(_proj(H0, a))).numpy())
        off = truth - cen
        hm = np.exp(-((xx[None] - off[:, 0, None, None]) ** 2 + (yy[None] - off[:, 1, None, None]) ** 2) / (2 * 1.2**2))
        flat = rng.random(n) < 0.3
        hm[flat] = rng.random((int(flat.sum()), w, w))
        heat[t, :n] = hm / hm.sum((1, 2), keepdims=True)
        xy_a[t, :n], centre[t, :n] = a, cen
        starts.append(H0)
    mask = torch.arange(K)[None] < torch.tensor(counts)[:, None]
    return np.array(starts), torch.from_numpy(xy_a).float(), torch.from_numpy(centre), torch.from_numpy(heat).float(), mask


def _cost(H: np.ndarray, xy_a, centre, heat, n: int) -> float:
    a = xy_a[:n].double()
    a1 = torch.cat([a, torch.ones(n, 1, dtype=torch.float64)], 1)
    return float(bg._consensus_cost(torch.zeros(8, dtype=torch.float64), torch.from_numpy(H), torch.eye(3, dtype=torch.float64),
                                    a1, centre[:n].double(), heat[:n].double(), torch.ones(n, dtype=torch.float64), 0.01))


def test_batched_consensus_reaches_the_per_pair_consensus():
    counts = [200, 90, 6]
    H0, xy_a, centre, heat, mask = _heatmaps(counts)
    Hb = bg.consensus_homographies(torch.from_numpy(H0), torch.ones(3, dtype=torch.bool), xy_a, centre, heat, mask).numpy()
    for t, n in enumerate(counts):
        Hp = consensus_homography(H0[t], xy_a[t, :n], centre[t, :n], heat[t, :n])
        if n < 8:  # too few matches: both keep the guide
            np.testing.assert_allclose(Hb[t], H0[t])
            np.testing.assert_allclose(Hp, H0[t])
            continue
        # The same objective, a different optimiser (damped Newton against L-BFGS). The objective is flat near
        # its optimum (bilinear heatmaps, 30 % flat ones), so both stop at nearby points, at costs no worse than
        # the truth's; both move the guide toward the truth.
        cost_b, cost_p = (_cost(H, xy_a[t], centre[t], heat[t], n) for H in (Hb[t], Hp))
        assert cost_b <= _cost(_h_true(t), xy_a[t], centre[t], heat[t], n) + 1e-6
        assert abs(cost_b - cost_p) < 0.015
        assert _grid_err(Hb[t], _h_true(t)) < _grid_err(H0[t], _h_true(t))
        assert _grid_err(Hb[t], Hp) < 1.5


def test_batched_consensus_equals_one_tile_at_a_time():
    counts = [200, 90, 120]
    H0, xy_a, centre, heat, mask = _heatmaps(counts, seed=3)
    ok = torch.ones(3, dtype=torch.bool)
    together = bg.consensus_homographies(torch.from_numpy(H0), ok, xy_a, centre, heat, mask)
    for t, n in enumerate(counts):
        alone = bg.consensus_homographies(torch.from_numpy(H0[t : t + 1]), ok[:1], xy_a[t : t + 1, :n], centre[t : t + 1, :n],
                                          heat[t : t + 1, :n], mask[t : t + 1, :n])
        torch.testing.assert_close(alone[0], together[t], rtol=1e-9, atol=1e-9)


def test_batched_positions_near_equal_per_pair():
    counts = [150, 80]
    H0, xy_a, centre, heat, mask = _heatmaps(counts, seed=4)
    tile, slot = torch.nonzero(mask, as_tuple=True)
    xy_b, keep = bg.positions_near_batched(torch.from_numpy(H0), tile, xy_a[tile, slot], centre[tile, slot], heat[tile, slot], 1.0)
    for t, n in enumerate(counts):
        want_xy, want_keep = positions_near(H0[t], xy_a[t, :n], centre[t, :n], heat[t, :n], 1.0)
        sel = tile == t
        torch.testing.assert_close(keep[sel], want_keep)
        torch.testing.assert_close(xy_b[sel], want_xy, rtol=0, atol=1e-5)


def test_backend_choice():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert not uses_torch_backend(GuideConfig(), cpu)  # the CPU default is unchanged
    assert uses_torch_backend(GuideConfig(), cuda)
    assert uses_torch_backend(GuideConfig(backend="torch"), cpu)
    assert not uses_torch_backend(GuideConfig(backend="cv2"), cuda)
    with pytest.raises(ValueError, match="backend"):
        GuideConfig(backend="gpu")


def test_torch_guided_matches_keep_unguided_pairs_and_follow_the_guide():
    # The scenario of test_guided.py's guided-pass test, through the torch backend.
    torch.manual_seed(0)
    model = RegNetMamba2().eval()
    a = torch.from_numpy(_texture(96, 1))[None, None]
    imgs = torch.cat([a, a])
    valid = torch.ones_like(imgs, dtype=torch.bool)
    cells_a = [13, 14, 15, 25, 26, 27, 37, 38, 39, 50]
    fine_on = _forced(cells_a + cells_a[:3], [c + 1 for c in cells_a] + cells_a[:3], [0] * len(cells_a) + [1] * 3)
    cfg = GuideConfig(threshold_px=50.0, min_inliers=8, backend="torch")
    with torch.no_grad():
        out = model(imgs, imgs, valid, valid, fine_on=fine_on)
        res = guided_matches(model, out, valid, cfg)
    first = out.matches
    torch.testing.assert_close(res.xy_b[res.batch == 1], first.xy_b[first.batch == 1])
    guided = res.batch == 0
    assert guided.sum() == len(cells_a)
    # Random weights: the heatmaps mean nothing, so only the window bound holds (as in test_guided.py): within
    # +-2 fine px (4 px) of the guide's prediction plus the rounding to a fine cell.
    H = fit_guide(first.xy_a[first.batch == 0].double().numpy(), first.xy_b[first.batch == 0].double().numpy(), GuideConfig(threshold_px=50.0))
    predicted = _proj(H, res.xy_a[guided].double().numpy())
    assert np.abs(res.xy_b[guided].double().numpy() - predicted).max() <= 4 + 1 + 1e-4


def test_torch_backend_registers_a_shifted_pair_like_cv2():
    img = (255 * _texture(256, 2)).astype(np.uint8)
    shift = (3.3, -2.6)
    mov = cv2.warpAffine(img, np.float32([[1, 0, shift[0]], [0, 1, shift[1]]]), (256, 256), flags=cv2.INTER_CUBIC)
    errors = {}
    for backend in ("cv2", "torch"):
        r = Matcher.from_pretrained(device="cpu", config=MatcherConfig(guide=GuideConfig(backend=backend))).match(img, mov)
        inner = np.all((r.ref_xy > 16) & (r.ref_xy < 240), axis=1)
        errors[backend] = np.median(np.linalg.norm(r.mov_xy[inner] - r.ref_xy[inner] - shift, axis=1))
    assert errors["torch"] < 1.0
    assert errors["torch"] <= errors["cv2"] + 0.1
