import numpy as np
import torch

from geomreg.matching.config import FineConfig
from geomreg.matching.fine import FineMatching, MixedWindows, anchor_fine_xy, gather_windows, local_expectation


class _GivenScores(torch.nn.Module):
    """Stands in for the window mixer so that the similarity FineMatching computes, query . wb / sqrt(C), is exactly
    the given score per window cell: query = sqrt(C) e0, wb[:, k] = score[k] e0."""

    def __init__(self, scores: torch.Tensor) -> None:  # [M, w*w]
        super().__init__()
        self.scores = scores

    def forward(self, wa, wb, anchor):
        m, k, c = wb.shape
        query = torch.zeros(m, c)
        query[:, 0] = c**0.5
        given = torch.zeros(m, k, c)
        given[..., 0] = self.scores
        return query, given, MixedWindows(wa, wa)


def _fine_on_scores(scores: torch.Tensor, training: bool, local_radius: int = 1):
    """FineMatching (5 x 5 window) on three matches whose window scores are given: [3, 25] -> FineResult."""
    fm = FineMatching(FineConfig(window=5, dim=16, heads=2, local_radius=local_radius), c_fine=8, c_coarse=12)
    fm.mixer = _GivenScores(scores)
    fm.train(training)
    fine, coarse = torch.zeros(1, 8, 32, 32), torch.zeros(1, 64, 12)
    idx = torch.tensor([9, 18, 27])
    with torch.no_grad():
        return fm(fine, fine, coarse, coarse, torch.zeros(3, dtype=torch.long), idx, idx, 8)


def _cell(x: int, y: int) -> int:
    return (y + 2) * 5 + (x + 2)  # row-major 5 x 5 window, offsets -2..2


# Cases worked out by hand (offsets in 1/2-resolution px; std = sqrt of the summed x and y variances):
#   0: scores 0 at (0, 0) and (1, 0), -inf elsewhere: weights 1/2, 1/2 -> mean (0.5, 0), var 0.25 + 0 -> std 0.5
#   1: scores ln 3 at (1, 1) and 0 at (-1, -1): weights 3/4, 1/4 -> mean (0.5, 0.5),
#      var 2 x (3/4 x 0.5^2 + 1/4 x 1.5^2) = 1.5 -> std sqrt(1.5)
#   2: equal scores everywhere: mean (0, 0), var 2 x (4 + 1 + 0 + 1 + 4) / 5 = 4 -> std 2
_SCORES = torch.full((3, 25), -1e4)
_SCORES[0, _cell(0, 0)] = _SCORES[0, _cell(1, 0)] = 0.0
_SCORES[1, _cell(1, 1)], _SCORES[1, _cell(-1, -1)] = float(np.log(3.0)), 0.0
_SCORES[2] = 0.0


def test_training_expectation_and_std_match_hand_computed_cases():
    r = _fine_on_scores(_SCORES, training=True)
    assert torch.allclose(r.offset, torch.tensor([[0.5, 0.0], [0.5, 0.5], [0.0, 0.0]]), atol=1e-5)
    assert torch.allclose(r.std, torch.tensor([0.5, 1.5**0.5, 2.0]), atol=1e-5)
    heat = r.heatmap.reshape(3, 25)
    assert torch.allclose(heat[1, [_cell(1, 1), _cell(-1, -1)]], torch.tensor([0.75, 0.25]), atol=1e-6)


def test_inference_keeps_the_peak_neighbourhood_only():
    # Weights 0.6 at (0, 0), 0.2 at (1, 0), 0.2 at (-2, -2) (scores ln 3, 0, 0). Whole window: (-0.2, -0.4);
    # within 1 px of the peak: (0.2 x 1) / 0.8 = (0.25, 0). The std stays the whole window's.
    scores = torch.full((3, 25), -1e4)
    scores[:, _cell(0, 0)], scores[:, _cell(1, 0)], scores[:, _cell(-2, -2)] = float(np.log(3.0)), 0.0, 0.0
    local = _fine_on_scores(scores, training=False)
    assert torch.allclose(local.offset, torch.tensor([[0.25, 0.0]] * 3), atol=1e-5)
    whole = _fine_on_scores(scores, training=False, local_radius=0)
    assert torch.allclose(whole.offset, torch.tensor([[-0.2, -0.4]] * 3), atol=1e-5)
    # var x: 0.6 x 0.2^2 + 0.2 x 1.2^2 + 0.2 x 1.8^2 = 0.96; var y: 0.8 x 0.4^2 + 0.2 x 1.6^2 = 0.64
    assert torch.allclose(local.std, torch.full((3,), 1.6**0.5), atol=1e-5)


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


def _broad_peak(offsets: torch.Tensor, target: torch.Tensor, floor: float) -> torch.Tensor:
    """A peak at the target over a flat floor of probability across the window (as broad heatmaps have)."""
    logits = -((offsets - target) ** 2).sum(-1) / (2 * 0.4**2)
    heat = torch.softmax(logits, 0) + floor
    return heat / heat.sum()


def test_local_expectation_is_not_pulled_toward_the_centre():
    offsets = FineMatching(FineConfig(window=5), c_fine=8, c_coarse=8).offsets
    target = torch.tensor([1.6, -1.2])
    heat = _broad_peak(offsets, target, floor=0.03)[None]  # [1, 25]
    full = heat @ offsets
    local = local_expectation(heat, offsets, radius=1)
    assert (full[0] - target).norm() > 0.4  # the floor drags the whole-window expectation toward 0
    assert (local[0] - target).norm() < 0.15
    assert (full[0].abs() < target.abs()).all()  # under-reaching, component by component


def test_local_expectation_at_the_window_edge_uses_the_cells_inside():
    offsets = FineMatching(FineConfig(window=5), c_fine=8, c_coarse=8).offsets
    heat = torch.zeros(1, 25)
    heat[0, 24] = 0.7  # corner (2, 2)
    heat[0, 23] = 0.3  # its neighbour (1, 2)
    assert torch.allclose(local_expectation(heat, offsets, 1), torch.tensor([[1.7, 2.0]]))


def test_training_uses_the_whole_window_and_inference_the_local_estimate():
    torch.manual_seed(0)
    fm = FineMatching(FineConfig(window=5, dim=16, heads=2, local_radius=1), c_fine=8, c_coarse=12)
    fine, coarse = torch.randn(1, 8, 32, 32), torch.randn(1, 64, 12)
    idx, batch = torch.tensor([9, 18, 27]), torch.zeros(3, dtype=torch.long)
    train = fm.train()(fine, fine, coarse, coarse, batch, idx, idx, 8)
    infer = fm.eval()(fine, fine, coarse, coarse, batch, idx, idx, 8)
    flat = infer.heatmap.reshape(3, -1)
    assert torch.allclose(train.offset, flat @ fm.offsets, atol=1e-5)
    assert torch.allclose(infer.offset, local_expectation(flat, fm.offsets, 1), atol=1e-5)
    whole = FineMatching(FineConfig(window=5, dim=16, heads=2, local_radius=0), c_fine=8, c_coarse=12)
    whole.load_state_dict(fm.state_dict())
    assert torch.allclose(whole.eval()(fine, fine, coarse, coarse, batch, idx, idx, 8).offset, train.offset, atol=1e-5)


def test_set_window_changes_the_window_not_the_weights():
    torch.manual_seed(0)
    fm = FineMatching(FineConfig(window=5, dim=16, heads=2), c_fine=8, c_coarse=12)
    before = {k: v.clone() for k, v in fm.state_dict().items()}
    fm.set_window(7)
    assert fm.cfg.window == 7 and fm.offsets.shape == (49, 2) and fm.offsets.abs().max() == 3
    assert all(torch.equal(before[k], v) for k, v in fm.state_dict().items())
    fine, coarse = torch.randn(1, 8, 32, 32), torch.randn(1, 64, 12)
    idx = torch.tensor([9, 18, 27])
    r = fm.eval()(fine, fine, coarse, coarse, torch.zeros(3, dtype=torch.long), idx, idx, 8)
    assert r.heatmap.shape == (3, 7, 7)
    for bad in (4, 1):
        try:
            fm.set_window(bad)
        except ValueError as exc:
            assert "odd" in str(exc)
        else:
            raise AssertionError(f"window {bad} accepted")


def test_a_wider_window_keeps_a_peak_at_the_5x5_border_unbiased():
    # A match half a coarse cell from its anchor sits on the 5 x 5 window's border: the local estimate
    # there is cut off and pulled inwards; in a 7 x 7 window the peak has neighbours on both sides.
    target = torch.tensor([1.9, -0.4])
    errors = {}
    for w in (5, 7):
        offsets = FineMatching(FineConfig(window=w), c_fine=8, c_coarse=8).offsets
        logits = -((offsets - target) ** 2).sum(-1) / (2 * 0.6**2)
        heat = torch.softmax(logits, 0)[None]
        errors[w] = (local_expectation(heat, offsets, radius=1)[0] - target).norm().item()
    assert errors[5] > 0.12 and errors[7] < 0.05
