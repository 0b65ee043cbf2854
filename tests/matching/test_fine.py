import torch

from geomreg.matching.config import FineConfig
from geomreg.matching.fine import FineMatching, anchor_fine_xy, gather_windows


def test_expectation_and_variance_of_a_synthetic_peak():
    fm = FineMatching(FineConfig(window=7), c_fine=8, c_coarse=8)
    offsets = fm.offsets  # [49, 2]
    target = torch.tensor([1.3, -0.6])
    # a sharp Gaussian heatmap centred on the target: the expectation recovers it to sub-pixel
    logits = -((offsets - target) ** 2).sum(-1) / (2 * 0.5**2)
    heat = torch.softmax(logits, 0)
    mean = heat @ offsets
    var = (heat[:, None] * (offsets - mean) ** 2).sum()
    assert torch.allclose(mean, target, atol=0.05)
    assert 0.2 < var.sqrt() < 1.0


def test_gather_windows_reads_the_right_pixels():
    fmap = torch.arange(2 * 1 * 16 * 16, dtype=torch.float32).view(2, 1, 16, 16)
    centres = torch.tensor([[5, 7], [0, 0]])
    win = gather_windows(fmap, torch.tensor([1, 0]), centres, 3)  # [2, 9, 1]
    assert win[0, 4, 0] == fmap[1, 0, 7, 5]  # centre (x=5, y=7)
    assert win[0, 0, 0] == fmap[1, 0, 6, 4]
    assert win[1, 0, 0] == 0  # outside the map: zero padding
    assert win[1, 4, 0] == fmap[0, 0, 0, 0]


def test_fine_module_output_shapes_and_bounds():
    torch.manual_seed(0)
    fm = FineMatching(FineConfig(window=5, dim=16, heads=2), c_fine=8, c_coarse=12)
    fine = torch.randn(1, 8, 32, 32)
    coarse = torch.randn(1, 64, 12)
    idx = torch.tensor([9, 18, 27])
    r = fm(fine, fine, coarse, coarse, torch.zeros(3, dtype=torch.long), idx, idx, 8)
    assert r.offset.shape == (3, 2) and r.std.shape == (3,) and r.heatmap.shape == (3, 5, 5)
    assert torch.all(r.offset.abs() <= 2)
    assert torch.allclose(r.heatmap.sum((1, 2)), torch.ones(3))


def test_anchor_positions():
    xy = anchor_fine_xy(torch.tensor([0, 1, 8, 9]), 8)
    assert xy.tolist() == [[2, 2], [6, 2], [2, 6], [6, 6]]
