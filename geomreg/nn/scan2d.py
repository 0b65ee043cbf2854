"""Four-direction scanning of 2-D token grids.

Images have no causal order. A one-way raster scan would let a pixel see only the rows above it, which
biases matching features toward one side. We scan in four directions (rows forward/backward, columns
forward/backward) and give each direction its own quarter of the SSD heads and its own B/C group, so
every output token sums context from all four half-planes while the cost stays that of a single scan:
all four directions run in one ``ssd_scan_grouped`` call, one group (and its heads) per direction.
"""

from __future__ import annotations

import torch
from einops import rearrange

N_DIRECTIONS = 4


def _forward_order(t: torch.Tensor, d: int, hw: tuple[int, int]) -> torch.Tensor:
    """Tokens [B, L, ...] in raster order -> direction d's order (flips and a transpose; no gathers,
    whose backward on CPU is a slow scatter-add)."""
    if d >= 2:
        t = rearrange(t, "b (h w) ... -> b (w h) ...", h=hw[0])
    return t.flip(1) if d % 2 else t


def _inverse_order(t: torch.Tensor, d: int, hw: tuple[int, int]) -> torch.Tensor:
    t = t.flip(1) if d % 2 else t
    if d >= 2:
        t = rearrange(t, "b (w h) ... -> b (h w) ...", h=hw[0])
    return t


def to_direction_groups(t: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Raster tokens [B, L, 4, ...] -> direction-major [B, 4, L, ...], slot d in direction d's order.

    The layout ``ssd_scan_grouped`` works in: one copy here instead of one here and more in the scan."""
    return torch.stack([_forward_order(t[:, :, d], d, hw) for d in range(N_DIRECTIONS)], dim=1)


def from_direction_groups(t: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
    """Undo ``to_direction_groups``: [B, 4, L, ...] -> raster tokens [B, L, 4, ...]."""
    return torch.stack([_inverse_order(t[:, d], d, hw) for d in range(N_DIRECTIONS)], dim=2)


def heads_by_direction(t: torch.Tensor) -> torch.Tensor:
    """[B, L, H, ...] -> [B, L, 4, H/4, ...] (head h scans in direction h // (H/4))."""
    return rearrange(t, "b l (d h) ... -> b l d h ...", d=N_DIRECTIONS)


def merge_direction_heads(t: torch.Tensor) -> torch.Tensor:
    return rearrange(t, "b l d h ... -> b l (d h) ...")
