"""Tests for geomreg.nn.norm: the fused RMS normalisation against its definition."""

import torch
import torch.nn.functional as F

from geomreg.nn.norm import GatedRMSNorm, RMSNorm


def _definition(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def test_rms_norm_values_and_gradients_equal_the_definition() -> None:
    torch.manual_seed(0)
    norm = RMSNorm(24)
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
    x = torch.randn(2, 100, 24, requires_grad=True)
    got = norm(x)
    want = _definition(x, norm.weight, norm.eps)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
    (g_got,) = torch.autograd.grad(got.square().sum(), x)
    (g_want,) = torch.autograd.grad(want.square().sum(), x)
    torch.testing.assert_close(g_got, g_want, rtol=1e-5, atol=1e-5)


def test_gated_rms_norm_gates_before_normalising() -> None:
    torch.manual_seed(1)
    norm = GatedRMSNorm(8)
    x, z = torch.randn(3, 8), torch.randn(3, 8)
    torch.testing.assert_close(norm(x, z), _definition(x * F.silu(z), norm.weight, norm.eps), rtol=1e-6, atol=1e-6)
