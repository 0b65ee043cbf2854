import numpy as np
import torch

from geomreg.matching.coarse import CoarseMatches
from geomreg.train.pairs import random_homography, WarpRange
from geomreg.train.targets import anchors, coarse_targets, fine_offsets, offsets_from, warp_points


def test_identity_gives_diagonal_targets_and_zero_fine_offsets():
    hw8 = (6, 6)
    H = torch.eye(3)[None]
    valid = torch.ones(1, 1, 48, 48, dtype=torch.bool)
    gt = coarse_targets(H, valid, valid, hw8)
    assert torch.equal(gt.idx_a, gt.idx_b) and len(gt.idx_a) == 36
    m = CoarseMatches(gt.batch, gt.idx_a, gt.idx_b, torch.ones(36))
    assert torch.allclose(fine_offsets(H, m, hw8), torch.zeros(36, 2))


def test_translation_targets_are_exact():
    hw8 = (8, 8)
    H = torch.tensor([[[1.0, 0, 11.0], [0, 1.0, -3.0], [0, 0, 1.0]]])
    valid = torch.ones(1, 1, 64, 64, dtype=torch.bool)
    gt = coarse_targets(H, valid, valid, hw8)
    pa = anchors(hw8, "cpu")[gt.idx_a]
    pb_true = pa + torch.tensor([11.0, -3.0])
    m = CoarseMatches(gt.batch, gt.idx_a, gt.idx_b, torch.ones(len(gt.idx_a)))
    centre_b = anchors(hw8, "cpu")[gt.idx_b]
    assert torch.allclose(centre_b + 2 * fine_offsets(H, m, hw8), pb_true)
    # the target cell contains the warped anchor
    assert ((pb_true - centre_b).abs() <= 4.5).all()


def test_invalid_regions_have_no_targets():
    hw8 = (4, 4)
    valid_b = torch.ones(1, 1, 32, 32, dtype=torch.bool)
    valid_b[..., :16] = False
    gt = coarse_targets(torch.eye(3)[None], torch.ones_like(valid_b), valid_b, hw8)
    assert ((gt.idx_b % 4) >= 2).all()


def test_random_homography_is_centred_and_bounded():
    rng = np.random.default_rng(0)
    for _ in range(20):
        H = random_homography(256, rng, WarpRange())
        c = warp_points(torch.tensor(H, dtype=torch.float32)[None], torch.tensor([[[127.5, 127.5]]]))[0, 0]
        assert (c - 127.5).abs().max() <= 0.1 * 256 + 1


def test_points_go_to_the_cell_with_the_nearest_anchor():
    from geomreg.train.targets import anchors, cell_of

    hw8 = (6, 7)
    xy = torch.rand(1, 500, 2) * torch.tensor([7 * 8 - 2.0, 6 * 8 - 2.0]) + 1.0
    idx, inside = cell_of(xy, hw8)
    d = xy[0] - anchors(hw8, "cpu")[idx[0]]
    ok = inside[0]
    assert ok.float().mean() > 0.9
    # nearest anchor on each axis (anchors are 8 px apart): always within the fine window's +-4 px reach
    assert (d[ok] >= -4.0).all() and (d[ok] < 4.0).all()


def test_offsets_from_any_window_centre_recover_the_true_position():
    from geomreg.matching.model import fine_to_pixel

    true_b = torch.tensor([[10.3, 20.9], [33.0, 4.5], [0.5, 0.5]])
    centre = torch.tensor([[4, 9], [17, 2], [0, 0]])  # fine (x, y) cells, not coarse anchors
    off = offsets_from(centre, true_b)
    torch.testing.assert_close(fine_to_pixel(centre.float()) + 2 * off, true_b)
    assert torch.equal(off[2], torch.zeros(2))  # fine cell 0 covers pixels 0 and 1: its centre is 0.5
