"""Siamese encoder: structure channels -> CNN stem -> SSD stages at 1/2, 1/4 and 1/8."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange
from torch import nn

from geomreg.matching.config import EncoderConfig
from geomreg.matching.structure import N_STRUCTURE_CHANNELS, structure_channels
from geomreg.nn.blocks import SelfBlock
from geomreg.nn.mamba2 import MixerConfig


def mixer_config(cfg: EncoderConfig, scale: int) -> MixerConfig:
    return MixerConfig(
        d_model=cfg.dims[scale],
        expand=cfg.expands[scale],
        headdim=cfg.headdims[scale],
        d_state=cfg.d_states[scale],
        chunk_size=cfg.chunk_sizes[scale],
        structure_scaling=cfg.structure_scaling,
        ssd_backend=cfg.ssd_backend,
    )


def conv_gn(c_in: int, c_out: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.GroupNorm(min(8, c_out // 4), c_out), nn.GELU())


@dataclass(frozen=True)
class Pyramid:
    """Token maps of one batch at three scales (raster order) and their grid sizes."""

    f2: torch.Tensor  # [B, H2*W2, C0]
    f4: torch.Tensor  # [B, H4*W4, C1]
    f8: torch.Tensor  # [B, H8*W8, C2]
    hw2: tuple[int, int]
    hw4: tuple[int, int]
    hw8: tuple[int, int]


class SSDStage(nn.Module):
    def __init__(self, cfg: MixerConfig, depth: int, mlp_ratio: int) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(SelfBlock(cfg, mlp_ratio) for _ in range(depth))

    def forward(self, fmap: torch.Tensor) -> torch.Tensor:  # [B, C, H, W] -> [B, H*W, C]
        hw = (fmap.shape[2], fmap.shape[3])
        x = rearrange(fmap, "b c h w -> b (h w) c")
        for blk in self.blocks:
            x = blk(x, hw)
        return x


class SiameseEncoder(nn.Module):
    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        d0, d1, d2 = cfg.dims
        self.stem = nn.Sequential(conv_gn(N_STRUCTURE_CHANNELS, d0, 2), conv_gn(d0, d0))
        self.stage2 = SSDStage(mixer_config(cfg, 0), cfg.self_blocks[0], mlp_ratio=0)  # 1/2: no MLP, most tokens
        self.down4, self.stage4 = conv_gn(d0, d1, 2), SSDStage(mixer_config(cfg, 1), cfg.self_blocks[1], mlp_ratio=2)
        self.down8, self.stage8 = conv_gn(d1, d2, 2), SSDStage(mixer_config(cfg, 2), cfg.self_blocks[2], mlp_ratio=2)

    @staticmethod
    def _grid(tokens: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        return rearrange(tokens, "b (h w) c -> b c h w", h=hw[0])

    def forward(self, img: torch.Tensor, valid: torch.Tensor) -> Pyramid:
        # img, valid [B, 1, H, W] with H, W multiples of 8
        x = self.stem(structure_channels(img, valid))  # [B, C0, H/2, W/2]
        hw2 = (x.shape[2], x.shape[3])
        f2 = self.stage2(x)  # [B, L2, C0]
        x = self.down4(self._grid(f2, hw2))
        hw4 = (x.shape[2], x.shape[3])
        f4 = self.stage4(x)  # [B, L4, C1]
        x = self.down8(self._grid(f4, hw4))
        hw8 = (x.shape[2], x.shape[3])
        f8 = self.stage8(x)  # [B, L8, C2]
        return Pyramid(f2, f4, f8, hw2, hw4, hw8)
