import torch

from geomreg.matching.fine import FineResult
from geomreg.train.losses import fine_losses


def _fine(offsets: torch.Tensor) -> FineResult:
    m = offsets.shape[0]
    heat = torch.full((m, 5, 5), 1.0 / 25)
    return FineResult(offsets, torch.ones(m), heat)


def test_fine_losses_zero_at_the_target_and_grow_away_from_it():
    t = torch.tensor([[0.5, -1.0], [1.0, 0.0]])
    l2_exact, _ = fine_losses(_fine(t.clone()), t, 2)
    l2_off, _ = fine_losses(_fine(t + 1.0), t, 2)
    assert l2_exact.item() == 0.0 and l2_off.item() > 0.0


def test_match_weights_decide_which_targets_count():
    t = torch.zeros(2, 2)
    pred = torch.tensor([[1.0, 0.0], [0.0, 0.0]])  # the first match is wrong, the second right
    l2_all, _ = fine_losses(_fine(pred), t, 2)
    l2_first_ignored, _ = fine_losses(_fine(pred), t, 2, torch.tensor([0.0, 1.0]))
    l2_first_only, _ = fine_losses(_fine(pred), t, 2, torch.tensor([1.0, 0.0]))
    assert l2_first_ignored.item() == 0.0
    assert l2_first_only.item() > l2_all.item() > 0.0  # weighted mean: the wrong match alone counts fully
    l2_none, ce_none = fine_losses(_fine(pred), t, 2, torch.zeros(2))
    assert l2_none.item() == 0.0 and ce_none.item() == 0.0
