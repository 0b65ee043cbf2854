"""Ground truth for the coarse and fine stages, derived from the exact homography of each instance."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from geomreg.matching.coarse import CoarseMatches
from geomreg.matching.fine import anchor_fine_xy
from geomreg.matching.model import STRIDE_COARSE, fine_to_pixel, pixel_to_fine


@dataclass(frozen=True)
class CoarseTargets:
    batch: torch.Tensor  # [K] positives (mutually consistent cell pairs)
    idx_a: torch.Tensor
    idx_b: torch.Tensor


def warp_points(H: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """H [B, 3, 3], xy [B, L, 2] -> [B, L, 2]."""
    p = torch.cat([xy, torch.ones_like(xy[..., :1])], dim=-1) @ H.transpose(1, 2)
    return p[..., :2] / p[..., 2:3].clamp_min(1e-8)


def anchors(hw8: tuple[int, int], device) -> torch.Tensor:
    """Pixel (x, y) of every coarse cell's anchor, [L8, 2] (the point the fine stage refines)."""
    idx = torch.arange(hw8[0] * hw8[1], device=device)
    return fine_to_pixel(anchor_fine_xy(idx, hw8[1]).float())


# Pixel coordinate of cell 0's anchor (the fine pixel the fine window is centred on); cell j's is 8 j further.
_FIRST_ANCHOR_PX = float(fine_to_pixel(anchor_fine_xy(torch.zeros(1, dtype=torch.long), 1).float())[0, 0])


def cell_of(xy: torch.Tensor, hw8: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """The cell whose anchor is nearest to each pixel coordinate, and whether it lies on the grid.

    Why nearest anchor rather than the 8 pixels a cell covers: the fine stage searches a window centred on
    the anchor (8j + 4.5, one pixel off the cell's centre 8j + 3.5). Assigned by coverage, a correct coarse
    match left the truth anywhere in [-5, 3) px of the anchor, and a quarter of each axis fell outside the
    +-4 px window; assigned by nearest anchor it lies in [-4, 4) px, all within reach.
    """
    c = torch.floor((xy - _FIRST_ANCHOR_PX) / STRIDE_COARSE + 0.5).long()
    inside = (c[..., 0] >= 0) & (c[..., 0] < hw8[1]) & (c[..., 1] >= 0) & (c[..., 1] < hw8[0])
    return c[..., 1].clamp(0, hw8[0] - 1) * hw8[1] + c[..., 0].clamp(0, hw8[1] - 1), inside


def _valid_at(valid: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """valid [B, 1, H, W] bool sampled (nearest) at xy [B, L, 2] -> [B, L] (False outside)."""
    B, _, H, W = valid.shape
    x, y = xy[..., 0].round().long(), xy[..., 1].round().long()
    inside = (x >= 0) & (x < W) & (y >= 0) & (y < H)
    b = torch.arange(B, device=valid.device)[:, None].expand_as(x)
    return inside & valid[b, 0, y.clamp(0, H - 1), x.clamp(0, W - 1)]


def coarse_targets(H_ab: torch.Tensor, valid_a: torch.Tensor, valid_b: torch.Tensor, hw8: tuple[int, int]) -> CoarseTargets:
    """A cell i matches B cell j when A's anchor lands in j and j's anchor lands back in i (one-to-one)."""
    B = H_ab.shape[0]
    pa = anchors(hw8, H_ab.device)[None].expand(B, -1, -1)
    pb = warp_points(H_ab, pa)
    j, inside_b = cell_of(pb, hw8)
    back = warp_points(torch.linalg.inv(H_ab), anchors(hw8, H_ab.device)[None].expand(B, -1, -1))
    i_back, inside_a = cell_of(back, hw8)
    i = torch.arange(pa.shape[1], device=H_ab.device)[None].expand(B, -1)
    mutual = torch.gather(i_back, 1, j) == i
    ok = inside_b & mutual & torch.gather(inside_a, 1, j) & _valid_at(valid_a, pa) & _valid_at(valid_b, pb)
    b_idx, a_idx = torch.nonzero(ok, as_tuple=True)
    return CoarseTargets(b_idx, a_idx, j[b_idx, a_idx])


def true_positions_in_b(H_ab: torch.Tensor, batch: torch.Tensor, idx_a: torch.Tensor, w8: int) -> torch.Tensor:
    """Pixel (x, y) in B of the anchors of A's cells idx_a (of instances batch) [M, 2]: what the fine stage finds."""
    pa = fine_to_pixel(anchor_fine_xy(idx_a, w8).float())
    return warp_points(H_ab[batch], pa[:, None])[:, 0]


def offsets_from(centre_b: torch.Tensor, true_b: torch.Tensor) -> torch.Tensor:
    """True pixel positions [M, 2] relative to B's fine window centres [M, 2], in 1/2-resolution pixels."""
    return pixel_to_fine(true_b) - centre_b.float()


def fine_offsets(H_ab: torch.Tensor, matches: CoarseMatches, hw8: tuple[int, int]) -> torch.Tensor:
    """True position of A's anchor in B, relative to B's window centre (the matched cell's anchor). [M, 2]."""
    true_b = true_positions_in_b(H_ab, matches.batch, matches.idx_a, hw8[1])
    return offsets_from(anchor_fine_xy(matches.idx_b, hw8[1]), true_b)
