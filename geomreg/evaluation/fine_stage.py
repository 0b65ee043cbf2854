"""How much the fine stage improves on its coarse anchors, measured per match against exact ground truth.

For every correct coarse match (the true position lies within the fine window of B's anchor) the error of
the refined position is compared with the error of the anchor itself. A fine stage that has learnt nothing
leaves the two equal (about 3 px: the anchor quantisation of an 8 px cell); a working one brings the refined
error well under a pixel. Each pair is measured twice: as the real pair (ground truth as good as the
dataset's: a few px for SRIF) and as a self pair (one image against a warped, modality-simulated copy of
itself: exact), so a weak result can be told apart from noisy ground truth.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from geomreg.matching.model import STRIDE_FINE, RegNetMamba2
from geomreg.train.pairs import CachedPair, Instance, WarpRange, make_instance, make_self_instance
from geomreg.train.targets import fine_offsets

# A coarse match counts as correct when its anchor lies this close to the truth (the window reaches +-4 px).
CORRECT_ANCHOR_PX = 6.0


@dataclass(frozen=True)
class FineStageStats:
    modality: str
    kind: str  # "real" or "self"
    matches: int  # coarse matches
    correct: int  # of which the anchor lies within CORRECT_ANCHOR_PX of the truth
    anchor_median_px: float  # error of the anchor (no fine stage), over correct matches
    fine_median_px: float  # error after the fine stage, over correct matches
    fine_within_1px: float  # fraction of correct matches refined to within 1 px
    std_median: float  # the fine stage's own uncertainty (1/2-resolution px)
    # Least-squares gain g of truth ~ g x predicted offset (both from B's anchor): 1 for an unbiased fine stage,
    # above 1 when its positions stop short of the truth (pulled toward the window centre).
    gain: float = float("nan")


def _errors(model: RegNetMamba2, inst: Instance) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(anchor error, refined error, fine std) of every coarse match of one instance, in pixels, and the true
    and predicted offsets from B's anchor [M, 2].

    The truth relative to B's anchor is the fine stage's own training target (`fine_offsets`, 1/2-resolution px).
    """
    t = lambda x: torch.from_numpy(x)[None, None]  # noqa: E731
    with torch.no_grad():
        out = model(t(inst.img_a), t(inst.img_b), t(inst.valid_a), t(inst.valid_b))
        truth = fine_offsets(torch.from_numpy(inst.H_ab).float()[None], out.fine_matches, out.hw8)  # [M, 2]
    anchor_err = STRIDE_FINE * truth.norm(dim=-1)
    fine_err = STRIDE_FINE * (truth - out.fine.offset).norm(dim=-1)
    return anchor_err.numpy(), fine_err.numpy(), out.fine.std.numpy(), truth.numpy(), out.fine.offset.numpy()


def fine_stage_stats(model: RegNetMamba2, pairs: list[CachedPair], size: int = 256, seed: int = 0) -> list[FineStageStats]:
    """Per modality and kind (real, self): how far the fine stage moves correct coarse matches toward the truth."""
    rng = np.random.default_rng(seed)
    model = model.eval()
    acc: dict[tuple[str, str], dict[str, list]] = defaultdict(lambda: defaultdict(list))
    for pair in pairs:
        for kind in ("real", "self"):
            if kind == "real":
                inst = make_instance(pair, size, rng, WarpRange(), scale_span=4.0)
            else:
                inst = make_self_instance(pair, size, rng, WarpRange(), scale_span=4.0)
            anchor, fine, std, truth, pred = _errors(model, inst)
            ok = anchor < CORRECT_ANCHOR_PX
            a = acc[(pair.record.modality, kind)]
            a["anchor"] += list(anchor[ok])
            a["fine"] += list(fine[ok])
            a["std"] += list(std[ok])
            a["truth"] += list(truth[ok])
            a["pred"] += list(pred[ok])
            a["n"].append(len(anchor))
    out = []
    for (modality, kind), a in sorted(acc.items()):
        fine, anchor = np.array(a["fine"]), np.array(a["anchor"])
        med = lambda v: float(np.median(v)) if len(v) else float("nan")  # noqa: E731
        out.append(
            FineStageStats(modality, kind, int(sum(a["n"])), len(fine), med(anchor), med(fine),
                           float(np.mean(fine < 1.0)) if len(fine) else float("nan"), med(a["std"]),
                           _gain(np.array(a["truth"]), np.array(a["pred"])))
        )
    return out


def _gain(truth: np.ndarray, pred: np.ndarray) -> float:
    denom = float((pred * pred).sum()) if len(pred) else 0.0
    return float((pred * truth).sum()) / denom if denom > 0 else float("nan")


def overall(stats: list[FineStageStats], kind: str) -> dict[str, float]:
    """Match-weighted means over modalities of one kind (medians are averaged with their match counts)."""
    rows = [s for s in stats if s.kind == kind and s.correct]
    w = np.array([s.correct for s in rows], dtype=np.float64)
    if not len(rows):
        return {}
    avg = lambda f: float(np.average([f(s) for s in rows], weights=w))  # noqa: E731
    return {"anchor_median_px": avg(lambda s: s.anchor_median_px), "fine_median_px": avg(lambda s: s.fine_median_px),
            "fine_within_1px": avg(lambda s: s.fine_within_1px), "gain": avg(lambda s: s.gain), "correct": int(w.sum())}


def as_rows(stats: list[FineStageStats]) -> list[dict]:
    return [dataclasses.asdict(s) for s in stats]
