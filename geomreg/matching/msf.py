"""MSF: progressive upward fusion 1/8 -> 1/4 -> 1/2, giving fine features that know the coarse context."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from geomreg.matching.encoder import Pyramid, conv_gn


class UpFuse(nn.Module):
    """Upsample the coarser map, add it to the finer one, refine with a 3x3 conv."""

    def __init__(self, c_coarse: int, c_fine: int) -> None:
        super().__init__()
        self.lateral = nn.Conv2d(c_coarse, c_fine, 1)
        self.refine = nn.Sequential(conv_gn(c_fine, c_fine), nn.Conv2d(c_fine, c_fine, 3, padding=1))

    def forward(self, coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:  # [B, C, h, w], [B, C', 2h, 2w]
        up = F.interpolate(self.lateral(coarse), size=fine.shape[-2:], mode="bilinear", align_corners=False)
        return fine + self.refine(fine + up)


class MultiScaleFusion(nn.Module):
    def __init__(self, dims: tuple[int, int, int]) -> None:
        super().__init__()
        self.fuse4 = UpFuse(dims[2], dims[1])
        self.fuse2 = UpFuse(dims[1], dims[0])

    def forward(self, p: Pyramid) -> torch.Tensor:
        grid = lambda t, hw: rearrange(t, "b (h w) c -> b c h w", h=hw[0])  # noqa: E731
        f4 = self.fuse4(grid(p.f8, p.hw8), grid(p.f4, p.hw4))
        return self.fuse2(f4, grid(p.f2, p.hw2))  # [B, C0, H/2, W/2]
