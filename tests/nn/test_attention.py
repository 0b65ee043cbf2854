"""Tests for geomreg.nn.attention: attend() equals nn.MultiheadAttention's own forward, values and gradients."""

import pytest
import torch
from torch import nn

from geomreg.nn.attention import attend


@pytest.mark.parametrize(("lq", "lk"), [(49, 49), (1, 49), (49, 7)])
def test_attend_equals_the_module(lq: int, lk: int) -> None:
    torch.manual_seed(0)
    attn = nn.MultiheadAttention(32, 4, batch_first=True).eval()
    q, k, v = torch.randn(6, lq, 32), torch.randn(6, lk, 32), torch.randn(6, lk, 32)
    with torch.no_grad():
        torch.testing.assert_close(attend(attn, q, k, v), attn(q, k, v, need_weights=False)[0], rtol=1e-5, atol=1e-6)


def test_attend_gradients_equal_the_module() -> None:
    torch.manual_seed(1)
    attn = nn.MultiheadAttention(16, 2, batch_first=True).train()
    x = torch.randn(3, 9, 16, requires_grad=True)
    grads = []
    for f in (lambda: attend(attn, x, x, x), lambda: attn(x, x, x, need_weights=False)[0]):
        attn.zero_grad()
        x.grad = None
        f().square().sum().backward()
        grads.append([x.grad.clone(), attn.in_proj_weight.grad.clone(), attn.out_proj.weight.grad.clone()])
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_attend_refuses_what_it_does_not_compute() -> None:
    with pytest.raises(ValueError, match="batch-first"):
        attend(nn.MultiheadAttention(8, 2), *(torch.zeros(1, 2, 8),) * 3)
    with pytest.raises(ValueError, match="batch-first"):
        attend(nn.MultiheadAttention(8, 2, batch_first=True, kdim=4, vdim=4), torch.zeros(1, 2, 8), torch.zeros(1, 2, 4), torch.zeros(1, 2, 4))
