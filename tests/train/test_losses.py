import torch

from geomreg.matching.fine import FineResult
from geomreg.train.losses import fine_losses, match_distillation_loss


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


def test_match_distillation_is_zero_for_the_teachers_own_similarity_and_ignores_masked_cells():
    torch.manual_seed(0)
    teacher = torch.randn(2, 6, 5) * 5
    mask_a = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])
    mask_b = torch.tensor([[True] * 5, [False] + [True] * 4])
    assert match_distillation_loss(teacher, teacher, mask_a, mask_b).abs().item() < 1e-6
    student = (teacher + torch.randn(2, 6, 5)).requires_grad_(True)
    loss = match_distillation_loss(student, teacher, mask_a, mask_b)
    assert loss.item() > 0.01
    loss.backward()
    assert torch.isfinite(student.grad).all()
    assert student.grad[1, 4:].abs().sum() == 0 and student.grad[1, :, 0].abs().sum() == 0  # masked cells get no gradient
    # what a masked cell holds changes nothing
    moved = student.detach().clone()
    moved[1, 5, :] = 100.0
    moved[1, :, 0] = -100.0
    torch.testing.assert_close(match_distillation_loss(moved, teacher, mask_a, mask_b), loss.detach())


def test_match_distillation_prefers_the_teachers_matches():
    teacher = torch.eye(4) * 10  # cell i matches cell i, confidently
    mask = torch.ones(1, 4, dtype=torch.bool)
    same_choice = torch.eye(4) * 3  # right matches, less sure
    wrong_choice = torch.eye(4).flip(0) * 10  # confident, wrong matches
    near = match_distillation_loss(same_choice[None], teacher[None], mask, mask)
    far = match_distillation_loss(wrong_choice[None], teacher[None], mask, mask)
    assert 0 < near < far
