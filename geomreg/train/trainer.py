"""The training loop: resumable, seeded, logged to CSV, checkpointed atomically, validated periodically."""

from __future__ import annotations

import csv
import logging
import platform
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from geomreg.data.manifest import read_dataset, split_pairs
from geomreg.matching.coarse import CoarseMatches
from geomreg.matching.config import RegNetMamba2Config
from geomreg.matching.model import RegNetMamba2, RegNetOutput, cell_mask
from geomreg.matching.weights import PACKAGED_WEIGHTS, atomic_torch_save, load_checkpoint, packaged_card, read_checkpoint
from geomreg.nn.cpu_allocator import keep_freed_memory
from geomreg.train.config import TrainConfig
from geomreg.train.losses import LossParts, coarse_focal_loss, distillation_loss, fine_losses, match_distillation_loss
from geomreg.train.pairs import CachedPair, Instance, WarpRange, cache_pair, make_instance, make_self_instance
from geomreg.train.targets import CoarseTargets, coarse_targets, fine_offsets, offsets_from, true_positions_in_b
from geomreg.train.validation import CropValidation, ValidationResult, build_validation_set
from geomreg.train.warm_start import merge_config, warm_start_from
from geomreg.train.whole_validation import WholeImageValidation, build_whole_validation

log = logging.getLogger(__name__)


@dataclass
class TrainState:
    model: RegNetMamba2
    optimizer: torch.optim.Optimizer
    step: int
    best_score: float
    history: list  # where and how long each leg of training ran
    val_fingerprint: str = ""  # the validation set best_score was measured on (validation_fingerprint)


def load_pairs(records, desc: str) -> list[CachedPair]:
    return [cache_pair(r) for r in tqdm(records, desc=desc, unit="pair", leave=False)]


def sample_batch(pairs: list[CachedPair], weights: np.ndarray, cfg: TrainConfig, step: int, rng: np.random.Generator) -> list[Instance]:
    f = 0.3 + 0.7 * min(1.0, step / max(cfg.curriculum_steps, 1))
    warp = WarpRange().scaled(f)
    size = int(rng.choice(cfg.crop_sizes)) if cfg.crop_sizes else cfg.crop_size
    idx = rng.choice(len(pairs), size=cfg.batch_for(size), p=weights)
    return [
        make_self_instance(pairs[i], size, rng, warp, scale_span=cfg.scale_span)
        if cfg.self_pair_prob and rng.random() < cfg.self_pair_prob
        else make_instance(
            pairs[i], size, rng, warp, simulate_prob=cfg.simulate_prob, swap=rng.random() < cfg.swap_prob, scale_span=cfg.scale_span
        )
        for i in idx
    ]


def to_tensors(batch: list[Instance], device, real_fine_weight: float = 1.0) -> tuple[torch.Tensor, ...]:
    """Images, masks and homographies as tensors, and each instance's weight in the fine losses [B]."""
    a = torch.from_numpy(np.stack([i.img_a for i in batch]))[:, None]
    b = torch.from_numpy(np.stack([i.img_b for i in batch]))[:, None]
    va = torch.from_numpy(np.stack([i.valid_a for i in batch]))[:, None]
    vb = torch.from_numpy(np.stack([i.valid_b for i in batch]))[:, None]
    H = torch.from_numpy(np.stack([i.H_ab for i in batch])).float()
    fine_w = torch.tensor([1.0 if i.exact or i.audited else real_fine_weight for i in batch])
    return tuple(t.to(device) for t in (a, b, va, vb, H, fine_w))


def _subsample(m: CoarseMatches, per_pair: int, gen: torch.Generator) -> CoarseMatches:
    if m.batch.numel() == 0:
        return m
    r = torch.rand(m.batch.numel(), generator=gen).to(m.batch.device)
    keep = torch.zeros_like(m.batch, dtype=torch.bool)
    for b in m.batch.unique():
        sel = torch.nonzero(m.batch == b).squeeze(1)
        keep[sel[torch.argsort(r[sel])[:per_pair]]] = True
    return CoarseMatches(m.batch[keep], m.idx_a[keep], m.idx_b[keep], m.confidence[keep])


def _ground_truth_matches(gt: CoarseTargets) -> CoarseMatches:
    return CoarseMatches(gt.batch, gt.idx_a, gt.idx_b, torch.ones_like(gt.batch, dtype=torch.float32))


def fine_selection(gt: CoarseTargets, cfg: TrainConfig, gen: torch.Generator):
    """Fine stage trains on ground-truth cells and on the network's own predictions (what it sees at test time)."""

    def select(pred: CoarseMatches) -> CoarseMatches:
        g = _subsample(_ground_truth_matches(gt), cfg.fine_gt_per_pair, gen)
        p = _subsample(pred, cfg.fine_pred_per_pair, gen)
        return CoarseMatches(*(torch.cat([x, y]) for x, y in zip((g.batch, g.idx_a, g.idx_b, g.confidence), (p.batch, p.idx_a, p.idx_b, p.confidence))))

    return select


def guided_fine_losses(
    model: RegNetMamba2, out: RegNetOutput, gt: CoarseTargets, H: torch.Tensor, fine_w: torch.Tensor, cfg: TrainConfig, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Fine losses (L2, cross-entropy) on ground-truth cells of A, B's windows centred at a jittered true position.

    Guided matching centres each window where a homography fitted to the first pass puts A's anchor, a few px
    from the truth in any direction; anchor-centred training never shows the fine stage a true position more
    than half a coarse cell from its window's centre. The features are the forward's: only the fine stage reruns.
    """
    g = _subsample(_ground_truth_matches(gt), cfg.fine_gt_per_pair, gen)
    w8 = out.hw8[1]
    true_b = true_positions_in_b(H, g.batch, g.idx_a, w8)  # [K, 2] px
    jitter = (torch.rand(true_b.shape, generator=gen) * 2 - 1).to(true_b) * cfg.guided_fine_jitter_px
    fine, centre = model.fine_around(out.features, w8, g.batch, g.idx_a, true_b + jitter)
    return fine_losses(fine, offsets_from(centre, true_b), model.cfg.fine.window // 2, fine_w[g.batch])


def training_step(
    state: TrainState, batch, cfg: TrainConfig, gen: torch.Generator, teacher: RegNetMamba2 | None = None
) -> tuple[LossParts, int]:
    a, b, va, vb, H, fine_w = batch
    hw8 = (a.shape[2] // 8, a.shape[3] // 8)
    gt = coarse_targets(H, va, vb, hw8)
    out = state.model(a, b, va, vb, fine_on=fine_selection(gt, cfg, gen))
    valid_pairs = cell_mask(va)[:, :, None] & cell_mask(vb)[:, None, :]
    coarse = coarse_focal_loss(out.coarse.prob, gt, valid_pairs)
    target = fine_offsets(H, out.fine_matches, hw8)
    fine_l2, fine_ce = fine_losses(out.fine, target, state.model.cfg.fine.window // 2, fine_w[out.fine_matches.batch])
    total = coarse + cfg.fine_weight * fine_l2 + cfg.fine_ce_weight * fine_ce
    guided = None
    if cfg.guided_fine_weight:
        guided, guided_ce = guided_fine_losses(state.model, out, gt, H, fine_w, cfg, gen)
        total = total + cfg.guided_fine_weight * (guided + cfg.fine_ce_weight * guided_ce)
    distill = distill_match = None
    if teacher is not None:
        with torch.no_grad():  # the teacher's features (and similarity) only: no matching stages
            taught = teacher.matching_features(a, b, va, vb)[2]
            taught_sim = teacher.coarse.similarity(taught.coarse_a, taught.coarse_b)[0] if cfg.distill_match_weight else None
        distill = distillation_loss(out.features, taught)
        if taught_sim is not None:
            sim = state.model.coarse.similarity(out.features.coarse_a, out.features.coarse_b)[0]
            distill_match = match_distillation_loss(sim, taught_sim, cell_mask(va), cell_mask(vb))
            distill = distill + cfg.distill_match_weight * distill_match
        total = total + cfg.distill_weight * distill
    return LossParts(total, coarse, fine_l2, fine_ce, distill, distill_match, guided), int(gt.batch.numel())


def load_teacher(path: str, device) -> RegNetMamba2:
    teacher = load_checkpoint(path).to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    log.info("distilling from %s (%.2f M parameters)", path, sum(p.numel() for p in teacher.parameters()) / 1e6)
    return teacher


def save(state: TrainState, path: Path, cfg: TrainConfig, extra: dict | None = None) -> None:
    atomic_torch_save(
        {
            "model": state.model.state_dict(),
            "optimizer": state.optimizer.state_dict(),
            "step": state.step,
            "best_score": state.best_score,
            "config": state.model.cfg.to_dict(),
            "train_config": cfg.to_dict(),
            "history": state.history,
            "val_fingerprint": state.val_fingerprint,
            **(extra or {}),
        },
        path,
    )


def restore(path: Path, device) -> tuple[TrainState, TrainConfig]:
    ck = read_checkpoint(path)
    for key in ("model", "optimizer", "step", "config", "train_config"):
        if key not in ck:
            raise ValueError(f"{path}: not a training checkpoint (missing '{key}')")
    model = RegNetMamba2(RegNetMamba2Config.from_dict(ck["config"])).to(device)
    model.load_state_dict(ck["model"], strict=True)
    cfg = TrainConfig.from_dict(ck["train_config"])
    opt = make_optimizer(model, cfg)
    opt.load_state_dict(ck["optimizer"])
    state = TrainState(model, opt, int(ck["step"]), float(ck.get("best_score", -1.0)), list(ck.get("history", [])), str(ck.get("val_fingerprint", "")))
    return state, cfg


def freeze_all_but(model: RegNetMamba2, stages: tuple[str, ...]) -> None:
    """Train only these top-level stages (all when empty); frozen ones build no autograd graph, so steps are cheaper."""
    names = {name for name, _ in model.named_children()}
    unknown = sorted(set(stages) - names)
    if unknown:
        raise ValueError(f"trainable: unknown stage(s) {unknown}; RegNetMamba2 has {sorted(names)}")
    for name, child in model.named_children():
        child.requires_grad_(not stages or name in stages)
    if stages:
        log.info("training only %s; %s frozen", ", ".join(stages), ", ".join(sorted(names - set(stages))))


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def _lr(cfg: TrainConfig, step: int, elapsed_minutes: float = 0.0) -> float:
    warm = min(1.0, (step + 1) / max(cfg.warmup_steps, 1))
    if not cfg.max_minutes or cfg.lr_anneal_to == 1.0:
        return cfg.lr * warm
    done = min(1.0, elapsed_minutes / cfg.max_minutes)
    return cfg.lr * warm * (1.0 - (1.0 - cfg.lr_anneal_to) * done)


def _with_overrides(cfg: TrainConfig, overrides: dict | None) -> TrainConfig:
    """cfg with these fields replaced; ValueError naming an unknown field."""
    if not overrides:
        return cfg
    return TrainConfig.from_dict({**cfg.to_dict(), **overrides}, strict=True)


class CsvLog:
    def __init__(self, path: Path, columns: list[str]) -> None:
        self.path, self.columns = path, columns
        if path.exists():  # a resumed run keeps the file's columns, so rows never shift under its header
            with path.open(newline="") as fh:
                self.columns = next(csv.reader(fh), columns)
        else:
            with path.open("w", newline="") as fh:
                csv.writer(fh).writerow(columns)

    def write(self, row: dict) -> None:
        with self.path.open("a", newline="") as fh:
            csv.writer(fh).writerow([row.get(c, "") for c in self.columns])


def train(
    data_dir: str | Path,
    out_dir: str | Path,
    cfg: TrainConfig | None = None,
    *,
    resume: str | Path | None = None,
    init_weights: str | Path | None = None,
    model_config: RegNetMamba2Config | None = None,
    model_overrides: dict | None = None,
    overrides: dict | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> ValidationResult | None:
    """Train (or continue) RegNetMamba-2 on a dataset directory; returns the last validation, if any.

    cfg None: the resumed checkpoint's own config, else TrainConfig(). ``overrides`` (TrainConfig fields, e.g.
    the CLI's --max-minutes) apply on top of whichever config that is, so a resumed checkpoint is read once.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device)
    keep_freed_memory()  # the host side allocates per step on any device; on CPU it is most of the time saved
    if resume is not None and model_overrides:
        raise ValueError("a resumed run keeps its design: change it with --init-weights and --model-config")
    restored = restore(Path(resume), dev) if resume is not None else None
    cfg = _with_overrides(cfg or (restored[1] if restored else TrainConfig()), overrides)
    if restored is not None:
        state = restored[0]
        for g in state.optimizer.param_groups:
            g["lr"] = cfg.lr
        log.info("resumed %s at step %d (best validation score %.3f)", resume, state.step, state.best_score)
    elif init_weights is not None:
        state = _state_from_weights(Path(init_weights), cfg, model_overrides, dev)
    else:
        torch.manual_seed(cfg.seed)
        model_config = model_config or RegNetMamba2Config()
        if model_overrides:
            model_config = merge_config(model_config, model_overrides)
        model = RegNetMamba2(model_config).to(dev)
        state = TrainState(model, make_optimizer(model, cfg), 0, -1.0, [])
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    freeze_all_but(state.model, cfg.trainable)

    records = read_dataset(data_dir, cfg.gt_fixes or None)
    if cfg.gt_fixes:
        log.info("ground truth audited by %s: %d pairs kept", cfg.gt_fixes, len(records))
    train_recs, val_recs = split_pairs(records, cfg.val_fraction)
    (out / "split.txt").write_text("".join(f"val\t{r.pair_id}\n" for r in val_recs) + "".join(f"train\t{r.pair_id}\n" for r in train_recs))
    log.info("%d training pairs, %d validation pairs (split by sha1 of pair_id)", len(train_recs), len(val_recs))
    train_pairs = load_pairs(train_recs, "loading training pairs")
    val_set = _validation_set(val_recs, cfg)
    _adopt_validation_set(state, val_set.fingerprint())
    w = np.array([cfg.modality_weights.get(p.record.modality, 1.0) for p in train_pairs], dtype=np.float64)
    w /= w.sum()

    rng = np.random.default_rng(cfg.seed + state.step)  # resumed runs continue with a fresh, reproducible stream
    gen = torch.Generator().manual_seed(cfg.seed + state.step)
    teacher = load_teacher(cfg.distill_from, dev) if cfg.distill_from else None
    columns = ["step", "time", "loss", "coarse", "fine", "fine_ce", "lr", "positives", "sec_per_step"]
    distill_columns = (["distill"] + (["distill_match"] if cfg.distill_match_weight else [])) if teacher is not None else []
    guided_columns = ["guided_fine"] if cfg.guided_fine_weight else []
    steps_log = CsvLog(out / "train_log.csv", columns + distill_columns + guided_columns)
    val_log = CsvLog(out / "val_log.csv", ["step", "time", "score", *sorted(_metric_keys(val_set))])
    leg = {"device": str(dev), "host": platform.node(), "cpu_threads": torch.get_num_threads(), "start_step": state.step, "steps": 0}
    state.history.append(leg)

    t_start = last_ckpt = time.time()
    start_step = state.step
    # SIGTERM / SIGINT end the run after the current step, with a checkpoint (a kill mid-step loses one step).
    stop_requested = []
    in_main = threading.current_thread() is threading.main_thread()  # handlers can only be set there
    previous = {s: signal.signal(s, lambda *_: stop_requested.append(True)) for s in (signal.SIGTERM, signal.SIGINT)} if in_main else {}
    bar = tqdm(total=cfg.max_steps, initial=state.step, disable=not progress, desc="train", unit="step")
    result = None
    state.model.train()
    try:
        while state.step < cfg.max_steps:
            if stop_requested or (cfg.max_minutes and (time.time() - t_start) / 60 >= cfg.max_minutes):
                break
            t0 = time.time()
            lr = _lr(cfg, state.step, (t0 - t_start) / 60)
            for g in state.optimizer.param_groups:
                g["lr"] = lr
            batch = to_tensors(sample_batch(train_pairs, w, cfg, state.step, rng), dev, cfg.real_fine_weight)
            losses, n_pos = training_step(state, batch, cfg, gen, teacher)
            state.optimizer.zero_grad(set_to_none=True)
            if losses.total.requires_grad:  # with frozen stages, a batch with nothing to refine gives the rest nothing to learn
                losses.total.backward()
                torch.nn.utils.clip_grad_norm_(state.model.parameters(), cfg.grad_clip)
                state.optimizer.step()
            state.step += 1
            leg["steps"] = state.step - start_step
            bar.update(1)
            bar.set_postfix(loss=f"{losses.total.item():.3f}", coarse=f"{losses.coarse.item():.3f}", fine=f"{losses.fine.item():.3f}")
            if state.step % cfg.log_every_steps == 0:
                steps_log.write(
                    dict(step=state.step, time=round(time.time() - t_start, 1), loss=f"{losses.total.item():.5f}", coarse=f"{losses.coarse.item():.5f}",
                         fine=f"{losses.fine.item():.5f}", fine_ce=f"{losses.fine_ce.item():.5f}", lr=f"{lr:.2e}",
                         positives=n_pos, sec_per_step=f"{time.time() - t0:.3f}",
                         distill="" if losses.distill is None else f"{losses.distill.item():.5f}",
                         distill_match="" if losses.distill_match is None else f"{losses.distill_match.item():.5f}",
                         guided_fine="" if losses.guided_fine is None else f"{losses.guided_fine.item():.5f}")
                )
            if state.step % cfg.val_every_steps == 0:
                result = _validate_and_keep_best(state, val_set, dev, out, cfg, val_log, t_start)
            if (time.time() - last_ckpt) / 60 >= cfg.ckpt_every_minutes:
                save(state, out / "last.pt", cfg)
                last_ckpt = time.time()
    finally:
        bar.close()
        save(state, out / "last.pt", cfg)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if stop_requested:
        log.info("stopped by a signal at step %d; resume with --resume %s", state.step, out / "last.pt")
        return None
    if state.step % cfg.val_every_steps != 0:
        result = _validate_and_keep_best(state, val_set, dev, out, cfg, val_log, t_start)
    return result


def _state_from_weights(path: Path, cfg: TrainConfig, model_overrides: dict | None, dev) -> TrainState:
    """Continue from weights only (e.g. the packaged ones), with a fresh optimiser; optionally slimmed or grown."""
    model = load_checkpoint(path).train()
    card = packaged_card() if path.resolve() == PACKAGED_WEIGHTS.resolve() else None
    if card is not None:
        step, history = int(card.get("steps", 0)), list(card.get("training_legs", []))
    else:  # a training checkpoint carries its own step count and legs (a bare state_dict has neither)
        ck = read_checkpoint(path)
        step, history = int(ck.get("step", 0)), list(ck.get("history", []))
    if model_overrides:
        model, record = warm_start_from(model, merge_config(model.cfg, model_overrides))
        history.append({record.pop("kind"): model_overrides, **record, "at_step": step})
    model = model.to(dev).train()
    log.info("initialised from %s (step %d, fresh optimiser)", path, step)
    return TrainState(model, make_optimizer(model, cfg), step, -1.0, history)


def _adopt_validation_set(state: TrainState, fingerprint: str) -> None:
    # Checkpoints from before fingerprints existed keep their best score (same data, same instances).
    if state.val_fingerprint and state.val_fingerprint != fingerprint and state.best_score >= 0:
        log.warning("validation set differs from the one this checkpoint's best score (%.3f) was measured on: "
                    "best.pt will be chosen afresh on this one", state.best_score)
        state.best_score = -1.0
    state.val_fingerprint = fingerprint


def _validation_set(val_recs, cfg: TrainConfig) -> CropValidation | WholeImageValidation:
    if cfg.val_protocol == "whole":
        return build_whole_validation(val_recs, cfg.val_pairs_per_modality, cfg.val_threshold)
    if cfg.val_protocol != "crops":
        raise ValueError(f"val_protocol must be 'crops' or 'whole', not {cfg.val_protocol!r}")
    return CropValidation(tuple(build_validation_set(load_pairs(val_recs, "loading validation pairs"), cfg.val_size, cfg.val_pairs_per_modality)))


def _metric_keys(val_set: CropValidation | WholeImageValidation) -> set[str]:
    mods = val_set.modalities | {"all"}
    return {f"{m}/{k}" for m in mods for k in ("n", "success@3", "success@5", "success@10", "ncm", "matches")}


def _validate_and_keep_best(state, val_set, dev, out: Path, cfg, val_log: CsvLog, t_start: float) -> ValidationResult:
    res = val_set.run(state.model, dev)
    val_log.write({"step": state.step, "time": round(time.time() - t_start, 1), "score": f"{res.score:.4f}", **res.metrics})
    log.info("step %d validation score %.3f (opt-sar success@5 %.2f)", state.step, res.score, res.metrics.get("opt-sar/success@5", float("nan")))
    if res.score > state.best_score:
        state.best_score = res.score
        save(state, out / "best.pt", cfg, {"validation": res.metrics})
    if cfg.keep_validated:
        save(state, out / f"step_{state.step:06d}.pt", cfg, {"validation": res.metrics})
    return res
