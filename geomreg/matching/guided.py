"""Guided matching: the fine stage run a second time, its windows centred where the first pass's geometry
puts each matched cell.

Why: most of the network's wrong tie points are near misses, not wild ones. A coarse match that lands on a
neighbouring 8 px cell leaves the truth at the edge of, or outside, the fine window around that cell, and
the fine stage cannot reach it: on the validation split the matches between 3 and 8 px off outnumbered the
ones within 3 px on many pairs, and a homography fitted to only the correct ones registered nearly every pair
that failed. A robust model of the first pass (MAGSAC, generous threshold) is right far more often than
its individual matches are, so its prediction is a better window centre than the coarse cell: the fine stage
then localises every matched cell of A from there, within a window of +-3 fine px (+-6 px; the shipped
weights run the fine stage at 7 x 7, RegNetMamba2.set_fine_window). The positions still come from the
network's own correlation, not from the model, so local departures from a homography (relief, lens) within
the window are kept.

Consensus (geomreg/matching/consensus.py): a guide that misses by 3-5 px centres every window off the truth
by as much, and the fine stage, pulled toward its window centres, then agrees with the miss; a least-squares
fit to only the matches within 6 px of the truth still failed on 9 % of the validation instances. So the guide
is replaced by the homography under which the guided pass's heatmaps, taken together, are most likely, and
each match's position is read from its heatmap within one fine cell (+-2 px) of that consensus. The guide
itself is first refined the same way on the first pass's heatmaps. Local
departures from the homography larger than that are given up for tie points that agree; set
consensus_radius=0 to take them from a further fine pass around the consensus instead (windows of +-6 px).
The measurements behind these choices are in docs/benchmarks.md ("Defaults and why").

When no model can be fitted (too few matches, too few agreeing), the first pass is returned unchanged.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import cv2
import numpy as np
import torch

from geomreg.matching.consensus import consensus_homography, positions_near
from geomreg.matching.fine import anchor_fine_xy
from geomreg.matching.model import Correspondences, FineAt, RegNetMamba2, RegNetOutput

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GuideConfig:
    # A homography within this many px of a match counts it as agreeing. 3 px rather than 5: a wider band lets a
    # model tilted by wrong matches count them as agreeing, and the guided pass then follows it.
    threshold_px: float = 3.0
    min_inliers: int = 8
    max_iters: int = 10_000
    # Heatmap-consensus refinements of the guide (geomreg/matching/consensus.py), each followed by one more fine
    # pass unless consensus_radius says to read the last one's positions near the consensus (0: the MAGSAC guide).
    consensus_rounds: int = 1
    consensus_floor: float = 0.01  # geomreg.matching.consensus.consensus_homography's floor
    # > 0: the last round's positions are read from its heatmaps within this many fine cells (1: +-2 px) of the
    # consensus (geomreg.matching.consensus.positions_near) instead of from one more fine pass around it.
    consensus_radius: float = 1.0
    # With consensus_rounds > 0: also refine each MAGSAC guide by the consensus of the first pass's own heatmaps
    # (windows on the coarse matches' cells) before the guided pass, a round that costs no fine pass.
    consensus_first: bool = True
    # These defaults (consensus on the first pass too, one round read near it) scored best at no extra fine pass
    # (docs/benchmarks.md, "Defaults and why").
    # Where the fits run: "cv2" (OpenCV MAGSAC and L-BFGS, one tile at a time on the host), "torch" (every tile
    # of a batch at once on the model's device, geomreg/matching/batched_guide.py), "auto" (torch on CUDA, cv2
    # elsewhere: the CPU default stays the path the accuracy figures were measured with).
    backend: str = "auto"
    hypotheses: int = 1024  # torch backend: 4-point hypotheses per tile (a fixed budget; MAGSAC stops adaptively)

    def __post_init__(self) -> None:
        if self.backend not in ("auto", "cv2", "torch"):
            raise ValueError(f"GuideConfig.backend must be 'auto', 'cv2' or 'torch', got {self.backend!r}")


def uses_torch_backend(cfg: GuideConfig, device: torch.device) -> bool:
    """Whether guided matching runs batched in torch (geomreg/matching/batched_guide.py) on ``device``."""
    return cfg.backend == "torch" or (cfg.backend == "auto" and device.type == "cuda")


def supported_homography(
    src: np.ndarray, dst: np.ndarray, threshold_px: float, min_inliers: int, *,
    max_iters: int = 2000, confidence: float = 0.995, seed: int | None = None,
) -> np.ndarray | None:
    """Robust src -> dst homography [3, 3] (MAGSAC) that at least ``min_inliers`` matches agree on, or None.

    The iteration defaults are OpenCV's; ``seed`` fixes its sampling (None: whatever state it is in).
    """
    if len(src) < max(min_inliers, 4):
        return None
    if seed is not None:
        cv2.setRNGSeed(seed)
    H, inliers = cv2.findHomography(
        np.asarray(src, np.float64), np.asarray(dst, np.float64), cv2.USAC_MAGSAC, threshold_px, maxIters=max_iters, confidence=confidence
    )
    if H is None or inliers is None or int(inliers.sum()) < min_inliers or not np.all(np.isfinite(H)):
        return None
    return H


def fit_guide(xy_a: np.ndarray, xy_b: np.ndarray, cfg: GuideConfig) -> np.ndarray | None:
    """Robust A -> B homography [3, 3] of one pair's first-pass matches, or None when none is supported.
    Seeded: the same matches give the same guide, run after run."""
    return supported_homography(xy_a, xy_b, cfg.threshold_px, cfg.min_inliers, max_iters=cfg.max_iters, confidence=0.999, seed=0)


def guided_matches(model: RegNetMamba2, out: RegNetOutput, valid_b: torch.Tensor, cfg: GuideConfig) -> Correspondences:
    """The first pass (out.matches) refined again around each pair's guide; pairs without one keep theirs.

    valid_b [B, 1, H, W] bool: a guided window whose centre falls outside B's valid pixels is dropped.
    """
    if uses_torch_backend(cfg, valid_b.device):
        from geomreg.matching.batched_guide import guided_matches_batched

        return guided_matches_batched(model, out, valid_b, cfg)
    first = out.matches
    guides: dict[int, np.ndarray] = {}
    for b in range(valid_b.shape[0]):
        sel = first.batch == b
        H = fit_guide(first.xy_a[sel].double().cpu().numpy(), first.xy_b[sel].double().cpu().numpy(), cfg)
        if H is None:
            log.debug("guided matching: no model for pair %d of the batch (%d matches); first pass kept", b, int(sel.sum()))
        elif cfg.consensus_first and cfg.consensus_rounds > 0:
            centre = anchor_fine_xy(out.fine_matches.idx_b[sel], out.hw8[1])
            guides[b] = consensus_homography(H, first.xy_a[sel], centre, out.fine.heatmap[sel], floor=cfg.consensus_floor)
        else:
            guides[b] = H
    if not guides:
        return first
    at = _fine_around_guides(model, out, valid_b, guides)
    read_near = cfg.consensus_rounds > 0 and cfg.consensus_radius > 0
    for k in range(cfg.consensus_rounds):
        for b, H in guides.items():
            sel = at.matches.batch == b
            guides[b] = consensus_homography(H, at.matches.xy_a[sel], at.centre[sel], at.fine.heatmap[sel], floor=cfg.consensus_floor)
        if not (read_near and k == cfg.consensus_rounds - 1):
            at = _fine_around_guides(model, out, valid_b, guides)
    refined = _read_near(at, guides, cfg.consensus_radius) if read_near else at.matches
    unguided = ~_in(first.batch, list(guides))  # pairs with no guide keep their first pass
    return refined.cat(first.subset(unguided))


def _read_near(at: FineAt, guides: dict[int, np.ndarray], radius: float) -> Correspondences:
    """The guided pass's matches with B's positions read near each pair's consensus (positions_near)."""
    m = at.matches
    xy_b, keep = m.xy_b.clone(), torch.ones_like(m.batch, dtype=torch.bool)
    for b, H in guides.items():
        sel = torch.nonzero(m.batch == b).squeeze(1)
        xy_b[sel], keep[sel] = positions_near(H, m.xy_a[sel], at.centre[sel], at.fine.heatmap[sel], radius)
    return replace(m, xy_b=xy_b).subset(keep)


def _in(batch: torch.Tensor, pairs: list[int]) -> torch.Tensor:
    return torch.isin(batch, torch.tensor(pairs, dtype=batch.dtype, device=batch.device))


def _fine_around_guides(model: RegNetMamba2, out: RegNetOutput, valid_b: torch.Tensor, guides: dict[int, np.ndarray]) -> FineAt:
    """The fine stage on every first-pass match of the guided pairs, B's window centred at its guide's
    prediction; matches whose prediction leaves B's valid pixels are dropped."""
    first = out.matches
    predicted = first.xy_b.clone()  # [M, 2]
    for b, H in guides.items():
        sel = torch.nonzero(first.batch == b).squeeze(1)
        xy_a = first.xy_a[sel].double().cpu().numpy()
        predicted[sel] = torch.from_numpy(cv2.perspectiveTransform(xy_a[None], H)[0]).to(predicted)
    h, w = valid_b.shape[-2:]
    px = torch.round(predicted).long()
    inside = (px[:, 0] >= 0) & (px[:, 1] >= 0) & (px[:, 0] < w) & (px[:, 1] < h)
    on_valid = torch.zeros_like(inside)
    on_valid[inside] = valid_b[first.batch[inside], 0, px[inside, 1], px[inside, 0]]
    return model.fine_at(out, predicted, keep=_in(first.batch, list(guides)) & on_valid)
