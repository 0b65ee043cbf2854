import pytest
import torch

from geomreg.matching.config import RegNetMamba2Config
from geomreg.matching.model import Correspondences, RegNetMamba2, RegNetOutput


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return RegNetMamba2()


def test_parameter_count_in_budget(model):
    n = sum(p.numel() for p in model.parameters())
    # Sized for CPU training and inference (see EncoderConfig): the speed target, 1.5 s per 512 px pair on
    # two cores, bounds it from above long before the 6 M of the paper's range.
    assert 3e5 <= n <= 6e6


@pytest.mark.parametrize("size", [256, 512])
def test_forward_backward_shapes(model, size):
    model.train()
    a, b = torch.rand(1, 1, size, size), torch.rand(1, 1, size, size)
    out = model(a, b)
    assert isinstance(out, RegNetOutput) and isinstance(out.matches, Correspondences)
    L = (size // 8) ** 2
    assert out.coarse.prob.shape == (1, L, L)
    assert out.hw8 == (size // 8, size // 8)
    m = len(out.fine_matches)
    assert out.matches.xy_a.shape == (m, 2) and out.matches.xy_b.shape == (m, 2)
    loss = out.coarse.prob.sum() + out.fine.offset.sum()
    loss.backward()
    grads = [p.grad for p in model.encoder.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    model.zero_grad()


def test_fine_stage_refines_requested_matches(model):
    from geomreg.matching.coarse import CoarseMatches

    model.eval()
    a = torch.rand(2, 1, 128, 128)
    req = CoarseMatches(torch.tensor([0, 1]), torch.tensor([20, 40]), torch.tensor([21, 41]), torch.tensor([1.0, 1.0]))
    with torch.no_grad():
        out = model(a, a.flip(-1), fine_on=lambda pred: req)
    assert len(out.fine_matches) == 2
    # anchors of cells 20 and 40 on a 16-wide grid: (4, 1) and (8, 2) -> pixels 8*col + 4.5
    assert out.matches.xy_a.tolist() == [[36.5, 12.5], [68.5, 20.5]]


def test_rejects_mismatched_sizes(model):
    with pytest.raises(ValueError, match="divisible by 8"):
        model(torch.rand(1, 1, 64, 64), torch.rand(1, 1, 64, 72))


def test_config_round_trip():
    cfg = RegNetMamba2Config()
    assert RegNetMamba2Config.from_dict(cfg.to_dict()) == cfg


def test_set_coarse_threshold_changes_what_the_model_runs_at():
    m = RegNetMamba2()
    assert m.set_coarse_threshold(0.03) is m
    assert m.cfg.coarse.threshold == 0.03 and m.coarse.cfg.threshold == 0.03
