"""Losses of the LoFTR family.

Coarse: focal loss on the dual-softmax matching probabilities P. Positives are the ground-truth cell
pairs (p -> 1, weighted by (1 - p)^gamma so easy positives fade out); negatives are every other valid
entry (p -> 0, weighted by p^gamma so only confident mistakes count).

Fine: the soft-argmax expectation mu of each window against the true sub-pixel position t, as
||mu - t||^2 / r^2 weighted by the inverse of the predicted standard deviation (detached, normalised to
mean 1), so confident windows are held to their claim. A cross-entropy on the heatmap against the
bilinear split of t over the four nearest window cells is added: at the start the expectation of a
near-uniform heatmap barely moves, and this term gives the window correlation a direct signal.
Both fine terms are means weighted by how far each match's target can be trusted: exact on self pairs,
only a few px on most real pairs (as wide as the fine window), where training on them teaches the fine
stage to hedge toward the window centre (measured: its loss sat at the predict-zero level from step 1k).

Distillation (a slimmer design warm-started from a trained one, geomreg.train.warm_start): the student is
also asked to reproduce the teacher's features where the two matching stages read them (1/8 CMI features,
1/2 fused features). The matching heads are copies of the teacher's, so matching features means matching
decisions, and every token of the pair gives a target, not only the few ground-truth cells.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from geomreg.matching.fine import FineResult
from geomreg.matching.model import MatchingFeatures
from geomreg.train.targets import CoarseTargets


@dataclass(frozen=True)
class LossParts:
    total: torch.Tensor
    coarse: torch.Tensor
    fine: torch.Tensor
    fine_ce: torch.Tensor
    distill: torch.Tensor | None = None  # with a teacher (TrainConfig.distill_from), both terms below weighted
    distill_match: torch.Tensor | None = None  # its match term (TrainConfig.distill_match_weight > 0)
    guided_fine: torch.Tensor | None = None  # L2 of the jittered-window fine pass (TrainConfig.guided_fine_weight > 0)


def coarse_focal_loss(prob: torch.Tensor, targets: CoarseTargets, valid_pairs: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0) -> torch.Tensor:
    """prob [B, La, Lb]; valid_pairs [B, La, Lb] bool (both cells valid)."""
    p = prob.clamp(1e-6, 1 - 1e-6)
    pos = torch.zeros_like(valid_pairs)
    pos[targets.batch, targets.idx_a, targets.idx_b] = True
    neg = valid_pairs & ~pos
    loss_pos = -alpha * (1 - p[pos]) ** gamma * torch.log(p[pos])
    loss_neg = -(1 - alpha) * p[neg] ** gamma * torch.log(1 - p[neg])
    pos_term = loss_pos.mean() if loss_pos.numel() else prob.sum() * 0
    neg_term = loss_neg.mean() if loss_neg.numel() else prob.sum() * 0
    return pos_term + neg_term


def fine_losses(fine: FineResult, target: torch.Tensor, radius: int, match_weight: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """target [M, 2] (1/2-resolution px from the window centre). Only targets inside the window count.

    match_weight [M] (optional): how much each match's target is trusted (exact self pairs 1, real pairs whose
    ground truth is good to a few px less); both losses are weighted means over it.
    """
    inside = (target.abs() <= radius).all(dim=-1)
    if match_weight is not None:
        inside = inside & (match_weight > 0)
    if not inside.any():
        z = fine.offset.sum() * 0
        return z, z
    mu, std, t = fine.offset[inside], fine.std[inside], target[inside]
    trust = torch.ones_like(std) if match_weight is None else match_weight[inside].to(std.dtype)
    trust = trust / trust.mean()
    w = 1.0 / std.detach().clamp_min(1e-3)
    w = w / w.mean()
    l2 = (trust * w * ((mu - t) ** 2).sum(-1)).mean() / radius**2

    heat = fine.heatmap[inside].flatten(1).clamp_min(1e-8)  # [K, w*w]
    side = fine.heatmap.shape[-1]
    g = t + radius  # window coordinates
    x0, y0 = g[:, 0].floor(), g[:, 1].floor()
    fx, fy = g[:, 0] - x0, g[:, 1] - y0
    soft = torch.zeros_like(heat)
    for dx, dy, wgt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        xi, yi = (x0 + dx).long().clamp(0, side - 1), (y0 + dy).long().clamp(0, side - 1)
        soft.scatter_add_(1, (yi * side + xi)[:, None], wgt[:, None])
    ce = (trust * -(soft * torch.log(heat)).sum(-1)).mean()
    return l2, ce


def _relative_mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Mean squared difference over the teacher's mean square: 1.0 for a student that outputs zeros."""
    return ((student - teacher) ** 2).mean() / (teacher**2).mean().clamp_min(1e-8)


def distillation_loss(student: MatchingFeatures, teacher: MatchingFeatures) -> torch.Tensor:
    """Feature distillation: relative MSE at 1/8 (coarse) plus at 1/2 (fine), both images."""
    coarse = _relative_mse(torch.cat([student.coarse_a, student.coarse_b]), torch.cat([teacher.coarse_a, teacher.coarse_b]))
    fine = _relative_mse(torch.cat([student.fine_a, student.fine_b]), torch.cat([teacher.fine_a, teacher.fine_b]))
    return coarse + fine


# Finite, not -inf: a masked cell then has probability exactly 0 under both models and adds 0 * (x - x) = 0
# to the divergence instead of NaN.
_MASKED_LOGIT = -1e9


def match_distillation_loss(student_sim: torch.Tensor, teacher_sim: torch.Tensor, mask_a: torch.Tensor, mask_b: torch.Tensor) -> torch.Tensor:
    """KL(teacher || student) of the row and of the column softmaxes of the coarse similarity [B, La, Lb].

    These are the two factors the dual softmax multiplies, so the student learns which cells the teacher
    would match and how sure it is, not just features near the teacher's (feature MSE weighs every
    direction alike, including those the matching descriptor ignores). masks [B, La] / [B, Lb] bool.
    """
    pair = mask_a[:, :, None] & mask_b[:, None, :]
    s, t = student_sim.float().masked_fill(~pair, _MASKED_LOGIT), teacher_sim.float().masked_fill(~pair, _MASKED_LOGIT)
    terms = []
    for dim, rows in ((2, mask_a), (1, mask_b)):
        log_t, log_s = F.log_softmax(t, dim=dim), F.log_softmax(s, dim=dim)
        kl = (log_t.exp() * (log_t - log_s)).sum(dim)  # [B, La] rows or [B, Lb] columns
        terms.append(kl[rows].mean() if bool(rows.any()) else kl.sum() * 0.0)
    return (terms[0] + terms[1]) / 2
