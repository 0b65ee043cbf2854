import cv2
import numpy as np
import torch

from geomreg.matching.api import Matcher, MatcherConfig
from geomreg.matching.coarse import CoarseMatches
from geomreg.matching.guided import GuideConfig, fit_guide, guided_matches
from geomreg.matching.model import RegNetMamba2

H_TRUE = np.array([[1.02, 0.03, 4.0], [-0.02, 0.99, -3.0], [1e-5, 0.0, 1.0]])


def _correspondences(n_in: int, n_out: int, noise_px: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    xy_a = rng.uniform(0, 256, (n_in + n_out, 2))
    xy_b = cv2.perspectiveTransform(xy_a[None], H_TRUE)[0] + rng.normal(0, noise_px, (n_in + n_out, 2))
    xy_b[n_in:] = rng.uniform(0, 256, (n_out, 2))  # wild matches
    return xy_a, xy_b


def test_guide_is_the_model_of_the_agreeing_majority():
    xy_a, xy_b = _correspondences(120, 180, noise_px=1.0)  # 40 % inliers
    H = fit_guide(xy_a, xy_b, GuideConfig())
    assert H is not None
    grid = np.mgrid[0:256:32, 0:256:32].reshape(2, -1).T.astype(np.float64)
    err = np.linalg.norm(cv2.perspectiveTransform(grid[None], H)[0] - cv2.perspectiveTransform(grid[None], H_TRUE)[0], axis=1)
    assert err.max() < 1.0


def test_no_guide_from_too_few_or_disagreeing_matches():
    assert fit_guide(*_correspondences(5, 0, 0.5), GuideConfig()) is None
    assert fit_guide(*_correspondences(0, 40, 0.5), GuideConfig(min_inliers=30)) is None


def _texture(size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), 2)
    return (img - img.min()) / np.ptp(img)


def _forced(cells_a: list[int], cells_b: list[int], batch: list[int]):
    """fine_on hook: refine these coarse matches (random weights match nothing by themselves)."""
    chosen = CoarseMatches(torch.tensor(batch), torch.tensor(cells_a), torch.tensor(cells_b), torch.ones(len(batch)))
    return lambda predicted: chosen


def test_fine_at_the_coarse_anchors_reproduces_the_first_pass():
    torch.manual_seed(0)
    model = RegNetMamba2().eval()
    img = torch.from_numpy(_texture(64, 0))[None, None]
    cells = [9, 10, 18, 27, 36, 45]
    with torch.no_grad():
        out = model(img, torch.roll(img, (2, 3), (2, 3)), fine_on=_forced(cells, cells, [0] * len(cells)))
        anchors = out.matches.xy_b - out.fine.offset * 2  # B's window centres: the first pass less its fine offsets
        again = model.fine_at(out, anchors).matches
    torch.testing.assert_close(again.xy_b, out.matches.xy_b)
    torch.testing.assert_close(again.xy_a, out.matches.xy_a)
    torch.testing.assert_close(again.confidence, out.matches.confidence)


def test_guided_matches_stay_near_the_guide_and_keep_unguided_pairs():
    torch.manual_seed(0)
    model = RegNetMamba2().eval()
    a = torch.from_numpy(_texture(96, 1))[None, None]
    imgs = torch.cat([a, a])
    valid = torch.ones_like(imgs, dtype=torch.bool)
    cells_a = [13, 14, 15, 25, 26, 27, 37, 38, 39, 50]  # 12 x 12 coarse grid
    # pair 0: every match one cell to the right (a consistent 8 px shift, so its guide is exact);
    # pair 1: too few matches for a guide (min_inliers below), so its first pass must come back unchanged
    fine_on = _forced(cells_a + cells_a[:3], [c + 1 for c in cells_a] + cells_a[:3], [0] * len(cells_a) + [1] * 3)
    with torch.no_grad():
        out = model(imgs, imgs, valid, valid, fine_on=fine_on)
        res = guided_matches(model, out, valid, GuideConfig(threshold_px=50.0, min_inliers=8))
    first = out.matches
    unguided = res.batch == 1
    torch.testing.assert_close(res.xy_b[unguided], first.xy_b[first.batch == 1])
    guided = res.batch == 0
    assert guided.sum() == len(cells_a)
    H = fit_guide(first.xy_a[first.batch == 0].double().numpy(), first.xy_b[first.batch == 0].double().numpy(), GuideConfig(threshold_px=50.0))
    predicted = cv2.perspectiveTransform(res.xy_a[guided].double().numpy()[None], H)[0]
    # within the 5 x 5 window (+-2 fine px = +-4 px) of the guide's prediction, plus the rounding to a fine cell
    assert np.abs(res.xy_b[guided].double().numpy() - predicted).max() <= 4 + 1 + 1e-4


def test_guided_matcher_registers_a_shifted_pair_with_the_packaged_weights():
    img = (255 * _texture(256, 2)).astype(np.uint8)
    shift = (3.3, -2.6)  # a sub-cell shift: the coarse cells miss the truth by the same amount everywhere
    mov = cv2.warpAffine(img, np.float32([[1, 0, shift[0]], [0, 1, shift[1]]]), (256, 256), flags=cv2.INTER_CUBIC)
    errors = {}
    for name, config in (("plain", MatcherConfig(guide=None)), ("guided", MatcherConfig())):
        r = Matcher.from_pretrained(device="cpu", config=config).match(img, mov)
        inner = np.all((r.ref_xy > 16) & (r.ref_xy < 240), axis=1)
        errors[name] = np.median(np.linalg.norm(r.mov_xy[inner] - r.ref_xy[inner] - shift, axis=1))
    assert errors["guided"] < 1.0
    assert errors["guided"] <= errors["plain"] + 0.1
