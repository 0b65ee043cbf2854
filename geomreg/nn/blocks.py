"""Residual pre-norm blocks around the Mamba-2 mixers: self blocks and the two-way cross block (CMI)."""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from geomreg.nn.mamba2 import CrossMamba2Mixer2D, Mamba2Mixer2D, MixerConfig, structure_cue
from geomreg.nn.norm import RMSNorm


class MLP(nn.Module):
    def __init__(self, dim: int, ratio: int = 2) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim * ratio), nn.GELU(), nn.Linear(dim * ratio, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _cue(tokens: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    return structure_cue(rearrange(tokens, "b (h w) c -> b c h w", h=hw[0]).detach())


class SelfBlock(nn.Module):
    """x <- x + Mamba2(norm x); x <- x + MLP(norm x)."""

    def __init__(self, cfg: MixerConfig, mlp_ratio: int = 2) -> None:
        super().__init__()
        self.norm1, self.mixer = RMSNorm(cfg.d_model), Mamba2Mixer2D(cfg)
        self.norm2, self.mlp = (RMSNorm(cfg.d_model), MLP(cfg.d_model, mlp_ratio)) if mlp_ratio else (None, None)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:  # [b, L, C]
        x = x + self.mixer(self.norm1(x), hw, _cue(x, hw))
        if self.mlp is not None:
            x = x + self.mlp(self.norm2(x))
        return x


class CrossBlock(nn.Module):
    """Two-way cross-modality interaction with shared weights: A reads B, B reads A (one batched call)."""

    def __init__(self, cfg: MixerConfig, mlp_ratio: int = 2) -> None:
        super().__init__()
        self.norm_t, self.norm_s = RMSNorm(cfg.d_model), RMSNorm(cfg.d_model)
        self.mixer = CrossMamba2Mixer2D(cfg)
        self.norm2, self.mlp = (RMSNorm(cfg.d_model), MLP(cfg.d_model, mlp_ratio)) if mlp_ratio else (None, None)

    def forward(self, a: torch.Tensor, b: torch.Tensor, hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        target = torch.cat([a, b], dim=0)  # [2b, L, C]
        source = torch.cat([b, a], dim=0)
        x = target + self.mixer(self.norm_t(target), self.norm_s(source), hw, _cue(source, hw))
        if self.mlp is not None:
            x = x + self.mlp(self.norm2(x))
        return x.chunk(2, dim=0)
