"""Coarse matching at 1/8: similarity -> dual-softmax probabilities -> threshold, mutual NN, border removal."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from geomreg.matching.config import CoarseConfig

_MASKED = -1e4  # finite, so fully masked rows give a uniform (then zeroed) softmax instead of NaN


@dataclass(frozen=True)
class CoarseMatches:
    batch: torch.Tensor  # [M] long, the pair each match belongs to
    idx_a: torch.Tensor  # [M] long, cell index in image A's 1/8 grid (row-major)
    idx_b: torch.Tensor  # [M] long, cell index in image B's 1/8 grid
    confidence: torch.Tensor  # [M] matching probability

    def __len__(self) -> int:
        return int(self.batch.numel())


@dataclass(frozen=True)
class CoarseResult:
    prob: torch.Tensor  # [B, La, Lb] dual-softmax matching probabilities
    matches: CoarseMatches


def dual_softmax(sim: torch.Tensor, mask_a: torch.Tensor, mask_b: torch.Tensor) -> torch.Tensor:
    """sim [B, La, Lb], masks [B, La] / [B, Lb] bool -> P = softmax_rows * softmax_cols, zero where masked."""
    pair_mask = mask_a[:, :, None] & mask_b[:, None, :]
    sim = sim.masked_fill(~pair_mask, _MASKED)
    prob = F.softmax(sim, dim=1) * F.softmax(sim, dim=2)
    return prob * pair_mask


def erode_cells(mask: torch.Tensor, hw: tuple[int, int], border: int) -> torch.Tensor:
    """Drop cells within `border` cells of the grid edge or of an invalid cell. mask [B, L] bool."""
    if border <= 0:
        return mask
    grid = mask.view(-1, 1, *hw).float()
    k = 2 * border + 1
    eroded = -F.max_pool2d(-F.pad(grid, (border,) * 4, value=0.0), k, stride=1)
    return eroded.view(mask.shape) > 0.5


def select_matches(
    prob: torch.Tensor,
    mask_a: torch.Tensor,
    mask_b: torch.Tensor,
    hw_a: tuple[int, int],
    hw_b: tuple[int, int],
    cfg: CoarseConfig,
) -> CoarseMatches:
    """Matches are cells whose probability passes the threshold and is the maximum of its row and column.

    Works on the row and column maxima only (O(La + Lb) after two reductions), never on full boolean matrices.
    """
    row_max, row_arg = prob.max(dim=2)  # [B, La]
    col_arg = prob.argmax(dim=1)  # [B, Lb]
    ia_all = torch.arange(prob.shape[1], device=prob.device)[None]
    mutual = torch.gather(col_arg, 1, row_arg) == ia_all
    keep = (row_max > cfg.threshold) & mutual & erode_cells(mask_a, hw_a, cfg.border_cells)
    keep &= torch.gather(erode_cells(mask_b, hw_b, cfg.border_cells), 1, row_arg)
    b, ia = torch.nonzero(keep, as_tuple=True)
    ib = row_arg[b, ia]
    conf = row_max[b, ia]
    if conf.numel() > cfg.max_matches:
        top = torch.topk(conf, cfg.max_matches).indices
        b, ia, ib, conf = b[top], ia[top], ib[top], conf[top]
    return CoarseMatches(b, ia, ib, conf)


class CoarseMatching(nn.Module):
    def __init__(self, cfg: CoarseConfig, dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.proj = nn.Linear(dim, dim)
        # Learned similarity scale (an inverse temperature) instead of a hand-fixed one.
        self.log_scale = nn.Parameter(torch.tensor(cfg.init_log_scale))

    def probabilities(self, fa: torch.Tensor, fb: torch.Tensor, mask_a: torch.Tensor, mask_b: torch.Tensor) -> torch.Tensor:
        # fa [B, La, C], fb [B, Lb, C] -> [B, La, Lb]
        fa = F.normalize(self.proj(fa).float(), dim=-1)
        fb = F.normalize(self.proj(fb).float(), dim=-1)
        sim = torch.einsum("bmc,bnc->bmn", fa, fb) * self.log_scale.exp().clamp(max=100.0)
        return dual_softmax(sim, mask_a, mask_b)

    def forward(self, fa, fb, mask_a, mask_b, hw_a, hw_b) -> CoarseResult:
        prob = self.probabilities(fa, fb, mask_a, mask_b)
        with torch.no_grad():
            matches = select_matches(prob, mask_a, mask_b, hw_a, hw_b, self.cfg)
        return CoarseResult(prob, matches)
