"""Validation on fixed, seeded warped instances of the validation pairs (never the held-out set)."""

from __future__ import annotations

import hashlib
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import torch

from geomreg.evaluation.metrics import SUCCESS_THRESHOLDS_PX, score_matches
from geomreg.matching.model import RegNetMamba2
from geomreg.train.pairs import CachedPair, Instance, WarpRange, make_instance

# The user's case and the benchmark's protocol: moderate residual warps of co-located scenes.
VALIDATION_WARPS = WarpRange(rotation_deg=10.0, scale=0.10, translation=0.08, perspective=1e-4)


@dataclass(frozen=True)
class ValidationResult:
    score: float  # mean success rate over the 3 / 5 / 10 px thresholds (what selects checkpoints)
    metrics: dict  # flat: overall and per-modality success@k, ncm, n


def build_validation_set(pairs: list[CachedPair], size: int, per_modality: int, seed: int = 1234) -> list[Instance]:
    rng = np.random.default_rng(seed)
    by_mod: dict[str, list[CachedPair]] = defaultdict(list)
    for p in pairs:
        by_mod[p.record.modality].append(p)
    out = []
    for mod in sorted(by_mod):
        for p in sorted(by_mod[mod], key=lambda q: q.record.pair_id)[:per_modality]:
            out.append(make_instance(p, size, rng, VALIDATION_WARPS))
    return out


def validation_fingerprint(instances: list[Instance]) -> str:
    """A digest of the validation instances: scores are comparable only between runs with the same one.

    A checkpoint resumed on another copy of the data (e.g. the packed copy a GPU leg trains on) meets other
    instances, and its best score from there must not stop a better checkpoint being kept here.
    """
    h = hashlib.sha1()
    for i in instances:
        h.update(i.modality.encode())
        h.update(np.round(i.H_ab, 6).astype(np.float64).tobytes())
        h.update((np.clip(i.img_a, 0, 1) * 255).astype(np.uint8).tobytes())
        h.update((np.clip(i.img_b, 0, 1) * 255).astype(np.uint8).tobytes())
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class CropValidation:
    """Training's default validation set: seeded crops (same interface as WholeImageValidation)."""

    instances: tuple[Instance, ...]

    @property
    def modalities(self) -> set[str]:
        return {i.modality for i in self.instances}

    def fingerprint(self) -> str:
        return validation_fingerprint(list(self.instances))

    def run(self, model: RegNetMamba2, device: torch.device) -> ValidationResult:
        return validate(model, list(self.instances), device)


@torch.no_grad()
def validate(model: RegNetMamba2, instances: list[Instance], device: torch.device, batch_size: int = 4) -> ValidationResult:
    was_training = model.training
    model.eval()
    rows = []
    for k in range(0, len(instances), batch_size):
        chunk = instances[k : k + batch_size]
        a = torch.from_numpy(np.stack([i.img_a for i in chunk]))[:, None].to(device)
        b = torch.from_numpy(np.stack([i.img_b for i in chunk]))[:, None].to(device)
        va = torch.from_numpy(np.stack([i.valid_a for i in chunk]))[:, None].to(device)
        vb = torch.from_numpy(np.stack([i.valid_b for i in chunk]))[:, None].to(device)
        out = model(a, b, va, vb)
        m = out.matches
        for j, inst in enumerate(chunk):
            sel = (m.batch == j).cpu().numpy()
            s = score_matches(
                m.xy_a.cpu().numpy()[sel], m.xy_b.cpu().numpy()[sel], inst.H_ab, inst.img_a.shape[1], inst.img_a.shape[0], valid=inst.valid_a
            )
            rows.append((inst.modality, s))
    model.train(was_training)
    return summarize(rows)


def summarize(rows) -> ValidationResult:
    metrics: dict = {}
    groups = defaultdict(list)
    for mod, s in rows:
        groups[mod].append(s)
        groups["all"].append(s)
    for mod, scores in groups.items():
        metrics[f"{mod}/n"] = len(scores)
        for t in SUCCESS_THRESHOLDS_PX:
            metrics[f"{mod}/success@{int(t)}"] = float(np.mean([s.success(t) for s in scores]))
        metrics[f"{mod}/ncm"] = float(np.mean([s.ncm for s in scores]))
        metrics[f"{mod}/matches"] = float(np.mean([s.n_matches for s in scores]))
    score = float(np.mean([metrics[f"all/success@{int(t)}"] for t in SUCCESS_THRESHOLDS_PX])) if rows else 0.0
    return ValidationResult(score, metrics)
