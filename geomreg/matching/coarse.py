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
    prob: torch.Tensor | None  # [B, La, Lb] dual-softmax matching probabilities (None in inference: never built)
    matches: CoarseMatches


def _any_masked(mask_a: torch.Tensor, mask_b: torch.Tensor) -> bool:
    return not (bool(mask_a.all()) and bool(mask_b.all()))


def dual_softmax(sim: torch.Tensor, mask_a: torch.Tensor, mask_b: torch.Tensor) -> torch.Tensor:
    """sim [B, La, Lb], masks [B, La] / [B, Lb] bool -> P = softmax_rows * softmax_cols, zero where masked."""
    # Masks broadcast along rows and columns: a full [La, Lb] boolean pair mask costs as much as the
    # softmaxes themselves at 4096 x 4096 cells, and most pairs have no masked cell at all.
    masked = _any_masked(mask_a, mask_b)
    if masked:
        sim = sim.masked_fill(~mask_a[:, :, None], _MASKED).masked_fill(~mask_b[:, None, :], _MASKED)
    prob = F.softmax(sim, dim=1) * F.softmax(sim, dim=2)
    if masked:
        prob = prob.masked_fill(~mask_a[:, :, None], 0.0).masked_fill(~mask_b[:, None, :], 0.0)
    return prob


def dual_softmax_maxima(
    E: torch.Tensor, mask_a: torch.Tensor, mask_b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Row maxima/argmax of the dual-softmax matrix and each column's mutual candidate, without building it.

    E [B, La, Lb] = exp(sim - scale), where sim = scale * cosine similarity <= scale (``shifted_exp_similarity``;
    overwritten here). With row sums r and column sums c, the dual softmax is P_ij = E_ij^2 / (r_i c_j): one
    exponential instead of two softmaxes, and the maxima follow from E scaled by c^-1/2 (rows) or r^-1/2
    (columns), since squaring is monotonic on E >= 0. Exact in exact arithmetic; needs scale <= 40 so that
    exp(-2 scale) stays a normal float32 (callers fall back to the full matrix beyond that).

    The mutual test needs a column's best row only where some row's best is that column, so instead of an
    argmax down the columns (a strided reduction, ~10x slower than a max on CPU: 79 against 7 ms at 4096 x
    4096) the column maxima are compared with each row's best cell. col_arg[b] is the row whose best is b
    and which is b's maximum (the lowest such row on an exact tie), -1 where there is none.
    Returns row_max [B, La], row_arg [B, La], col_arg [B, Lb].
    """
    if _any_masked(mask_a, mask_b):
        E.mul_(mask_a[:, :, None]).mul_(mask_b[:, None, :])
    r = E.sum(dim=2).clamp_min(1e-30)  # [B, La]
    c = E.sum(dim=1).clamp_min(1e-30)  # [B, Lb]
    g_max, row_arg = _row_maxima(E, c.rsqrt()[:, None, :])
    column_scores = E.mul_(r.rsqrt()[:, :, None])  # [B, La, Lb], ordered like P down every column
    is_column_max = column_scores.gather(2, row_arg[..., None])[..., 0] == column_scores.amax(dim=1).gather(1, row_arg)  # [B, La]
    La = E.shape[1]
    rows = torch.arange(La, device=E.device).expand_as(row_arg)
    col_arg = torch.full_like(c, La, dtype=torch.long).scatter_reduce_(1, row_arg, torch.where(is_column_max, rows, La), reduce="amin")
    return g_max.square() / r, row_arg, col_arg.masked_fill_(col_arg == La, -1)


# Rows of E scaled at a time by _row_maxima: 1024 rows of a 1024 x 1024 px pair's 16,384 cells are 64 MB.
_ROW_CHUNK = 1024


def _row_maxima(E: torch.Tensor, col_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(E * col_scale).max(dim=2) -> values, indices [B, La], a block of rows at a time: the product as one
    tensor would be a second full-size matrix (1 GB for a 1024 x 1024 px pair), the coarse stage's largest."""
    B, La, _ = E.shape
    g_max = E.new_empty(B, La)
    row_arg = torch.empty(B, La, dtype=torch.long, device=E.device)
    for s in range(0, La, _ROW_CHUNK):
        rows = slice(s, s + _ROW_CHUNK)
        g_max[:, rows], row_arg[:, rows] = (E[:, rows] * col_scale).max(dim=2)
    return g_max, row_arg


# Above this similarity scale exp(-2 * scale) leaves float32's normal range: use the full matrix.
_MAX_SCALE_FOR_MAXIMA = 40.0


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
    return matches_from_maxima(row_max, row_arg, prob.argmax(dim=1), mask_a, mask_b, hw_a, hw_b, cfg)


def matches_from_maxima(
    row_max: torch.Tensor,  # [B, La] best probability of each A cell
    row_arg: torch.Tensor,  # [B, La] its B cell
    col_arg: torch.Tensor,  # [B, Lb] best A cell of each B cell
    mask_a: torch.Tensor,
    mask_b: torch.Tensor,
    hw_a: tuple[int, int],
    hw_b: tuple[int, int],
    cfg: CoarseConfig,
) -> CoarseMatches:
    """Threshold, mutual nearest neighbour, border erosion and the per-pair cap, from row/column maxima."""
    ia_all = torch.arange(row_max.shape[1], device=row_max.device)[None]
    mutual = torch.gather(col_arg, 1, row_arg) == ia_all
    keep = (row_max > cfg.threshold) & mutual & erode_cells(mask_a, hw_a, cfg.border_cells)
    keep &= torch.gather(erode_cells(mask_b, hw_b, cfg.border_cells), 1, row_arg)
    b, ia = torch.nonzero(keep, as_tuple=True)
    ib = row_arg[b, ia]
    conf = row_max[b, ia]
    top = _best_per_pair(b, conf, cfg.max_matches)
    return CoarseMatches(b[top], ia[top], ib[top], conf[top])


def _best_per_pair(batch: torch.Tensor, conf: torch.Tensor, k: int) -> torch.Tensor:
    """Indices of each pair's matches, at most its ``k`` most confident ones (those in descending confidence).

    Why per pair: a cap shared by the batch let the pairs with the most confident matches crowd out the others,
    so a tile's tie points depended on which tiles it was batched with (the geospatial layer batches tiles).
    A pair under the cap keeps its matches in their original order, as when it is matched alone.
    """
    kept = []
    for b in torch.unique(batch):  # B is small (the matcher's batch)
        idx = torch.nonzero(batch == b).squeeze(1)
        kept.append(idx[torch.topk(conf[idx], k).indices] if idx.numel() > k else idx)
    return torch.cat(kept) if kept else batch.new_zeros(0)


class CoarseMatching(nn.Module):
    def __init__(self, cfg: CoarseConfig, dim: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.proj = nn.Linear(dim, cfg.dim)
        # Learned similarity scale (an inverse temperature) instead of a hand-fixed one.
        self.log_scale = nn.Parameter(torch.tensor(cfg.init_log_scale))

    def scale(self) -> torch.Tensor:
        return self.log_scale.exp().clamp(max=100.0)

    def descriptors(self, f: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.proj(f).float(), dim=-1)  # [B, L, C] -> unit matching descriptors [B, L, dim]

    def similarity(self, fa: torch.Tensor, fb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # fa [B, La, C], fb [B, Lb, C] -> scaled cosine similarity [B, La, Lb] and the scale
        scale = self.scale()
        return torch.einsum("bmc,bnc->bmn", self.descriptors(fa), self.descriptors(fb)) * scale, scale

    def shifted_exp_similarity(self, fa: torch.Tensor, fb: torch.Tensor) -> tuple[torch.Tensor, float]:
        """exp(similarity - scale) [B, La, Lb] and the scale: the inference path's only full-size matrix.

        One product and an in-place exponential: the scale and the shift are folded into the features as an extra
        channel, [scale * fa, -scale] . [fb, 1] = scale * cos - scale. At 512 px the matrix has 16.7 M entries
        and every extra pass over it costs tens of ms.
        """
        fa, fb, scale = self.descriptors(fa), self.descriptors(fb), float(self.scale())
        fa = torch.cat([fa * scale, fa.new_full((*fa.shape[:-1], 1), -scale)], dim=-1)  # [B, La, C + 1]
        fb = torch.cat([fb, fb.new_ones((*fb.shape[:-1], 1))], dim=-1)  # [B, Lb, C + 1]
        return torch.bmm(fa, fb.transpose(1, 2)).exp_(), scale

    def probabilities(self, fa: torch.Tensor, fb: torch.Tensor, mask_a: torch.Tensor, mask_b: torch.Tensor) -> torch.Tensor:
        return dual_softmax(self.similarity(fa, fb)[0], mask_a, mask_b)  # [B, La, Lb]

    def forward(self, fa, fb, mask_a, mask_b, hw_a, hw_b) -> CoarseResult:
        if not torch.is_grad_enabled() and float(self.scale()) <= _MAX_SCALE_FOR_MAXIMA:
            # Inference: only the row/column maxima are needed (the matrix is 16.7 M entries at 512 px).
            maxima = dual_softmax_maxima(self.shifted_exp_similarity(fa, fb)[0], mask_a, mask_b)
            return CoarseResult(None, matches_from_maxima(*maxima, mask_a, mask_b, hw_a, hw_b, self.cfg))
        prob = dual_softmax(self.similarity(fa, fb)[0], mask_a, mask_b)
        with torch.no_grad():
            matches = select_matches(prob, mask_a, mask_b, hw_a, hw_b, self.cfg)
        return CoarseResult(prob, matches)
