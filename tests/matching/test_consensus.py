import numpy as np
import torch
import torch.nn.functional as F

from geomreg.matching.consensus import HeatmapCost, consensus_homography, positions_near
from geomreg.matching.model import pixel_to_fine
from geomreg.matching.fine import window_offsets

WINDOW = 7


def _heatmaps(xy_a: np.ndarray, H_true: np.ndarray, H_guide: np.ndarray, sigma: float, rng: np.random.Generator):
    """Windows centred where the guide puts each anchor (nearest fine cell), heatmaps peaked where H_true does."""
    def project(H):
        p = np.c_[xy_a, np.ones(len(xy_a))] @ H.T
        return p[:, :2] / p[:, 2:]

    centre = np.round((project(H_guide) - 0.5) / 2)  # fine cells
    truth = (project(H_true) - 0.5) / 2 - centre  # fine cells from the centre, within the window here
    offsets = window_offsets(WINDOW).numpy()  # [49, 2]
    d2 = ((offsets[None] - truth[:, None]) ** 2).sum(-1)
    heat = np.exp(-d2 / (2 * sigma**2)) + 0.02 * rng.random(d2.shape)
    heat /= heat.sum(1, keepdims=True)
    return torch.from_numpy(centre).long(), torch.from_numpy(heat.reshape(-1, WINDOW, WINDOW)).float()


def _grid_error(H1: np.ndarray, H2: np.ndarray, size: int = 256) -> float:
    g = np.stack(np.meshgrid(np.arange(0, size, 16.0), np.arange(0, size, 16.0)), -1).reshape(-1, 2)
    p1, p2 = (np.c_[g, np.ones(len(g))] @ H.T for H in (H1, H2))
    return float(np.sqrt(np.mean(np.sum((p1[:, :2] / p1[:, 2:] - p2[:, :2] / p2[:, 2:]) ** 2, 1))))


def _case(seed: int = 0):
    rng = np.random.default_rng(seed)
    H_true = np.array([[1.03, 0.05, 4.0], [-0.04, 0.98, -3.0], [1e-5, -2e-5, 1.0]])
    # a guide that misses by a few px: shifted and slightly rotated about the image
    H_guide = np.array([[1.0, 0.0, 3.0], [0.0, 1.0, -2.5], [0.0, 0.0, 1.0]]) @ H_true
    xy_a = rng.uniform(16, 240, size=(300, 2))
    return rng, H_true, H_guide, xy_a


def test_broad_heatmaps_together_recover_the_homography_a_guide_missed():
    rng, H_true, H_guide, xy_a = _case()
    centre, heat = _heatmaps(xy_a, H_true, H_guide, sigma=1.5, rng=rng)  # each one as broad as the network's
    assert _grid_error(H_guide, H_true) > 3.5
    H = consensus_homography(H_guide, torch.from_numpy(xy_a).float(), centre, heat)
    assert _grid_error(H, H_true) < 0.5


def test_consensus_shrugs_off_a_third_of_wrong_heatmaps():
    rng, H_true, H_guide, xy_a = _case(1)
    centre, heat = _heatmaps(xy_a, H_true, H_guide, sigma=1.5, rng=rng)
    wrong = np.flatnonzero(rng.random(len(xy_a)) < 0.33)
    peaks = rng.integers(0, WINDOW * WINDOW, size=len(wrong))  # each confidently somewhere else
    spike = torch.full((len(wrong), WINDOW * WINDOW), 0.3 / (WINDOW * WINDOW - 1))
    spike[torch.arange(len(wrong)), torch.from_numpy(peaks)] = 0.7
    heat[torch.from_numpy(wrong)] = spike.view(-1, WINDOW, WINDOW)
    H = consensus_homography(H_guide, torch.from_numpy(xy_a).float(), centre, heat)
    assert _grid_error(H, H_true) < 1.0


def test_too_few_matches_keep_the_guide():
    rng, H_true, H_guide, xy_a = _case(2)
    centre, heat = _heatmaps(xy_a[:5], H_true, H_guide, sigma=1.5, rng=rng)
    H = consensus_homography(H_guide, torch.from_numpy(xy_a[:5]).float(), centre, heat)
    np.testing.assert_array_equal(H, H_guide)


def test_positions_are_read_from_the_heatmap_at_the_consensus_to_sub_cell_precision():
    offsets = window_offsets(WINDOW)
    truth = torch.tensor([0.4, -0.3])  # fine cells from the window centre, between cells
    broad = torch.exp(-((offsets - truth) ** 2).sum(-1) / (2 * 1.5**2))  # as broad as the network's heatmaps
    rival = torch.exp(-((offsets - torch.tensor([-3.0, -3.0])) ** 2).sum(-1) / 0.5)  # a sharper peak far away
    heat = (broad + 2 * rival).view(1, WINDOW, WINDOW).repeat(3, 1, 1)
    heat = heat / heat.sum(dim=(1, 2), keepdim=True)
    centre = torch.tensor([[10, 20]] * 3)
    centre_px = centre.double() * 2 + 0.5
    # H = identity; anchors put the predictions near the truth, at the window's edge cell, and outside it
    xy_a = centre_px + torch.tensor([[0.5, -0.5], [6.0, 0.0], [40.0, 0.0]], dtype=torch.float64)
    xy_b, keep = positions_near(np.eye(3), xy_a, centre, heat, radius=1.0)
    assert keep.tolist() == [True, False, False]  # an edge cell has no outer neighbour; the third left the window
    torch.testing.assert_close(xy_b[0], centre_px[0] + 2 * truth.double(), atol=1e-3, rtol=0)  # not the rival's peak


def test_no_matches_read_nothing():
    xy_b, keep = positions_near(np.eye(3), torch.zeros(0, 2), torch.zeros(0, 2, dtype=torch.long), torch.zeros(0, WINDOW, WINDOW), 1.0)
    assert xy_b.shape == (0, 2) and keep.shape == (0,)


def _autograd_cost(cost: HeatmapCost, xy_a: torch.Tensor, centre: torch.Tensor, heat: torch.Tensor, d: np.ndarray):
    """The same cost through F.grid_sample and autograd: the definition the written-out gradient must match."""
    delta = torch.tensor(d, dtype=torch.float64, requires_grad=True)
    Hd = torch.from_numpy(cost.H0) @ (torch.eye(3, dtype=torch.float64) + torch.cat([delta, delta.new_zeros(1)]).view(3, 3)) @ torch.from_numpy(cost.T)
    q = torch.cat([xy_a.double(), torch.ones(len(xy_a), 1, dtype=torch.float64)], 1) @ Hd.T
    u = pixel_to_fine(q[:, :2] / q[:, 2:3]) - centre.double()
    r = heat.shape[-1] // 2
    p = F.grid_sample(heat.double()[:, None], (u / r).view(-1, 1, 1, 2), mode="bilinear", padding_mode="zeros", align_corners=True).view(-1)
    loss = -torch.log(p + 0.01).mean()
    loss.backward()
    return float(loss.detach()), delta.grad.numpy()


def test_written_out_gradient_equals_autograd_through_grid_sample():
    rng, H_true, H_guide, xy_a = _case(3)
    centre, heat = _heatmaps(xy_a, H_true, H_guide, sigma=1.5, rng=rng)
    xy = torch.from_numpy(xy_a)
    cost = HeatmapCost(H_guide, xy, centre, heat, 0.01)
    # at the guide, a few px off, and far enough that many anchors leave their windows (zero heat, zero gradient)
    for d in (np.zeros(8), rng.normal(0, 0.01, 8), rng.normal(0, 0.2, 8)):
        loss, grad = cost.value_and_grad(d)
        want_loss, want_grad = _autograd_cost(cost, xy, centre, heat, d)
        assert abs(loss - want_loss) < 1e-12
        np.testing.assert_allclose(grad, want_grad, rtol=1e-9, atol=1e-12)
    assert np.allclose(cost.homography(np.zeros(8)), H_guide)
