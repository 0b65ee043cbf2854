"""Four-direction token orders of the 2-D scan."""

from __future__ import annotations

import torch

from geomreg.nn.scan2d import N_DIRECTIONS, from_direction_groups, to_direction_groups


def _grid_ids(h: int, w: int) -> torch.Tensor:
    """Raster token ids [1, h*w, 4] (the same id in every direction slot)."""
    ids = torch.arange(h * w, dtype=torch.float64)
    return ids[None, :, None].expand(1, h * w, N_DIRECTIONS).contiguous()


def test_each_direction_reads_its_own_order() -> None:
    h, w = 3, 5
    grid = torch.arange(h * w).view(h, w)
    seq = to_direction_groups(_grid_ids(h, w), (h, w))[0]  # [4, L]
    assert seq.shape == (N_DIRECTIONS, h * w)
    expected = (grid.flatten(), grid.flatten().flip(0), grid.t().flatten(), grid.t().flatten().flip(0))
    for d in range(N_DIRECTIONS):
        assert torch.equal(seq[d].long(), expected[d]), f"direction {d}"


def test_round_trip_is_identity_with_trailing_dims() -> None:
    t = torch.randn(2, 4 * 6, N_DIRECTIONS, 3, 2)
    grouped = to_direction_groups(t, (4, 6))
    assert grouped.shape == (2, N_DIRECTIONS, 4 * 6, 3, 2)
    assert torch.equal(from_direction_groups(grouped, (4, 6)), t)
