"""CMI: cross-modality interaction at every scale, self SSD interleaved with two-way cross-form SSD."""

from __future__ import annotations

import torch
from torch import nn

from geomreg.matching.config import EncoderConfig
from geomreg.matching.encoder import Pyramid, mixer_config
from geomreg.nn.blocks import CrossBlock, SelfBlock


class CMILayer(nn.Module):
    """One (self, cross) pair: each image first mixes its own tokens, then reads the other image."""

    def __init__(self, cfg, mlp_ratio: int, with_self: bool = True) -> None:
        super().__init__()
        self.self_block = SelfBlock(cfg, mlp_ratio) if with_self else None
        self.cross_block = CrossBlock(cfg, mlp_ratio)

    def forward(self, a: torch.Tensor, b: torch.Tensor, hw: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.self_block is not None:
            ab = self.self_block(torch.cat([a, b], dim=0), hw)  # shared weights, one batched call
            a, b = ab.chunk(2, dim=0)
        return self.cross_block(a, b, hw)


class ScaleCMI(nn.Module):
    def __init__(self, cfg, n_layers: int, mlp_ratio: int, with_self: bool) -> None:
        super().__init__()
        self.layers = nn.ModuleList(CMILayer(cfg, mlp_ratio, with_self) for _ in range(n_layers))

    def forward(self, a, b, hw):
        for layer in self.layers:
            a, b = layer(a, b, hw)
        return a, b


class CrossModalityInteraction(nn.Module):
    """Applies CMI at 1/2, 1/4 and 1/8 to the pyramids of the two images."""

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.scales = nn.ModuleList(
            ScaleCMI(mixer_config(cfg, s), cfg.cmi_layers[s], 0 if s == 0 else 2, cfg.cmi_self[s]) for s in range(3)
        )

    def forward(self, pa: Pyramid, pb: Pyramid) -> tuple[Pyramid, Pyramid]:
        out_a, out_b = [], []
        for s, (ta, tb, hw) in enumerate(((pa.f2, pb.f2, pa.hw2), (pa.f4, pb.f4, pa.hw4), (pa.f8, pb.f8, pa.hw8))):
            a, b = self.scales[s](ta, tb, hw)
            out_a.append(a)
            out_b.append(b)
        return (
            Pyramid(*out_a, pa.hw2, pa.hw4, pa.hw8),
            Pyramid(*out_b, pb.hw2, pb.hw4, pb.hw8),
        )
