"""Run matchers on evaluation instances of a dataset directory and score every instance."""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import numpy as np
from tqdm import tqdm

from geomreg.data.manifest import PairRecord, load_pair, split_pairs
from geomreg.evaluation.instances import Instance, Mode, WarpConfig, aligned_overlap, check_overlap, make_instances
from geomreg.evaluation.metrics import score_matches
from geomreg.matching.types import ImageMatcher

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InstanceRecord:
    """Score of one method on one instance (one row of the per-instance CSV)."""

    method: str
    modality: str
    pair_id: str
    instance: int
    mode: str
    width: int
    height: int
    n_matches: int
    ncm: int
    cmr: float
    grid_rmse: float  # px in the moving image; inf when no homography could be fitted
    seconds: float  # wall time of matcher.match alone
    error: str = ""  # exception raised by the matcher on this instance, if any
    seed: int = 0  # the instance's warp seed (Instance.seed); instance numbers restart with each seed


@dataclass(frozen=True)
class EvalConfig:
    mode: Mode = "warped"
    instances_per_pair: int = 1
    seed: int = 0
    warp: WarpConfig = WarpConfig()
    ransac_threshold_px: float = 3.0
    ncm_threshold_px: float = 3.0
    warmup: bool = True  # one untimed call per method first, so lazy initialisation is not timed


def select_pairs(
    records: Sequence[PairRecord],
    *,
    split: str = "val",
    modalities: Sequence[str] | None = None,
    max_pairs: int | None = None,
) -> list[PairRecord]:
    """Pairs of a split (val = the validation split training uses), optionally capped per modality.

    The cap takes pairs in sha1(pair_id) order: deterministic, independent of the seed, and it mixes
    the sources inside a modality (alphabetical order would take one source first).
    """
    if split == "val":
        chosen = split_pairs(list(records))[1]
    elif split == "train":
        chosen = split_pairs(list(records))[0]
    elif split == "all":
        chosen = list(records)
    else:
        raise ValueError(f"unknown split {split!r}; expected all, val or train")
    if modalities:
        wanted = set(modalities)
        chosen = [r for r in chosen if r.modality in wanted]
    if max_pairs is not None:
        by_mod: dict[str, list[PairRecord]] = {}
        for r in sorted(chosen, key=lambda r: hashlib.sha1(r.pair_id.encode()).hexdigest()):
            if len(by_mod.setdefault(r.modality, [])) < max_pairs:
                by_mod[r.modality].append(r)
        keep = {r.pair_id for rs in by_mod.values() for r in rs}
        chosen = [r for r in chosen if r.pair_id in keep]
    return sorted(chosen, key=lambda r: (r.modality, r.pair_id))


def pair_instances(rec: PairRecord, cfg: EvalConfig) -> list[Instance]:
    """Instances of one pair; DatasetError (naming the pair) on missing/unreadable files or a bad matrix."""
    ref, mov, H = load_pair(rec)
    return make_instances(
        ref, mov, H, pair_id=rec.pair_id, modality=rec.modality, mode=cfg.mode, count=cfg.instances_per_pair, seed=cfg.seed, cfg=cfg.warp
    )


def validate_pairs(records: Sequence[PairRecord], progress: bool = True) -> None:
    """Read every selected pair once before any method runs, so a broken dataset fails fast and whole."""
    for rec in tqdm(records, desc="checking pairs", unit="pair", disable=not progress, leave=False):
        ref, mov, H = load_pair(rec)
        check_overlap(aligned_overlap(ref, mov, H), rec.pair_id)


def iter_instances(records: Sequence[PairRecord], cfg: EvalConfig) -> Iterator[Instance]:
    for rec in records:
        yield from pair_instances(rec, cfg)


def score_instance(name: str, matcher: ImageMatcher, inst: Instance, cfg: EvalConfig) -> InstanceRecord:
    error = ""
    t0 = time.perf_counter()
    try:
        res = matcher.match(inst.ref, inst.mov)
        ref_xy, mov_xy = np.asarray(res.ref_xy, np.float64), np.asarray(res.mov_xy, np.float64)
    except Exception as exc:  # one failing instance is a failed registration, not a failed benchmark
        log.warning("%s failed on %s #%d: %s: %s", name, inst.pair_id, inst.index, type(exc).__name__, exc)
        error = f"{type(exc).__name__}: {exc}"
        ref_xy = mov_xy = np.zeros((0, 2))
    seconds = time.perf_counter() - t0
    s = score_matches(
        ref_xy,
        mov_xy,
        inst.H_ref_to_mov,
        inst.width,
        inst.height,
        ncm_threshold_px=cfg.ncm_threshold_px,
        ransac_threshold_px=cfg.ransac_threshold_px,
        valid=inst.valid,
        seconds=seconds,
    )
    return InstanceRecord(
        name, inst.modality, inst.pair_id, inst.index, cfg.mode, inst.width, inst.height, s.n_matches, s.ncm, s.cmr, s.grid_rmse, s.seconds, error, inst.seed
    )


def evaluate(
    records: Sequence[PairRecord],
    methods: dict[str, ImageMatcher],
    cfg: EvalConfig = EvalConfig(),
    *,
    progress: bool = True,
) -> list[InstanceRecord]:
    """Every method on every instance of every pair; instances are generated once and shared by the methods."""
    total = len(records) * (cfg.instances_per_pair if cfg.mode == "warped" else 1)
    return evaluate_instances(iter_instances(records, cfg), methods, cfg, total=total, progress=progress)


def evaluate_instances(
    instances: Iterable[Instance],
    methods: dict[str, ImageMatcher],
    cfg: EvalConfig = EvalConfig(),
    *,
    total: int | None = None,
    progress: bool = True,
) -> list[InstanceRecord]:
    out: list[InstanceRecord] = []
    warmed: set[str] = set()
    bar = tqdm(total=total, desc=f"{cfg.mode} instances", unit="inst", disable=not progress)
    try:
        for inst in instances:
            for name, matcher in methods.items():
                if cfg.warmup and name not in warmed:
                    warmed.add(name)
                    try:
                        matcher.match(inst.ref, inst.mov)
                    except Exception:
                        pass  # the timed call below records the error
                out.append(score_instance(name, matcher, inst, cfg))
            bar.update(1)
    finally:
        bar.close()
    return out
