"""Training configuration (frozen; saved in every checkpoint)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass(frozen=True)
class TrainConfig:
    crop_size: int = 192
    batch_size: int = 4  # at crop_size; see crop_sizes
    # When set, every batch draws its crop side from these, and the batch shrinks (or grows) so that each
    # step sees about as many pixels as batch_size crops of crop_size: the cost per step stays flat while
    # the network learns coarse grids of several sizes (validation and users run larger grids than 128 px).
    crop_sizes: tuple = ()
    scale_span: float = 2.0  # crop scales from "whole image" up to this factor of it (capped at native)
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_steps: int = 200
    max_steps: int = 1_000_000
    max_minutes: float = 0.0  # stop after this long (0: no limit)
    # With max_minutes: the learning rate falls linearly in wall time to this fraction of lr by the end,
    # so a time-boxed leg (a lent GPU) ends annealed instead of mid-plateau (1.0: constant).
    lr_anneal_to: float = 1.0
    curriculum_steps: int = 3000  # warps grow from 30 % to 100 % of their range over these steps
    simulate_prob: float = 0.5
    # Self pairs: one image of a pair against a warped copy of itself pushed to a simulated modality. Their
    # correspondence is exact, unlike most real pairs' (the SRIF ground truth is good to a few px, which is
    # as wide as the fine window): they are what teaches the fine stage to localise.
    self_pair_prob: float = 0.0
    # Weight of the fine losses on real-pair instances relative to self pairs (1.0: no distinction). Pairs whose
    # ground truth the audit re-estimated (gt_fixes) count as trusted, like self pairs.
    real_fine_weight: float = 1.0
    swap_prob: float = 0.5
    # CSV of audited ground truth (scripts/audit_ground_truth.py): corrected matrices replace the dataset's,
    # unverified pairs are left out of training and validation. "" uses the dataset's ground truth as is.
    gt_fixes: str = ""
    # optical-SAR is what users judge us by: sample it more often
    modality_weights: dict = field(default_factory=lambda: {"opt-sar": 3.0, "vis-ir": 1.5, "rgb-nir": 1.5})
    fine_weight: float = 1.0
    fine_ce_weight: float = 0.5
    fine_gt_per_pair: int = 32
    # Guided fine training: the fine stage also runs on ground-truth cells with B's window centred near the
    # true position, not on the matched cell's anchor (uniformly within +- guided_fine_jitter_px per axis), the
    # way guided matching (geomreg.matching.guided) centres it at a model's prediction. The true offset then
    # lies anywhere in the window, out to its border, where anchor-centred windows put it within half a
    # coarse cell of the centre. 0 disables it.
    # Top-level stages of RegNetMamba2 to train (e.g. ["msf", "fine"]); the others are frozen. Training only the
    # fine features and head keeps the coarse matches exactly those of the starting weights, so a change in
    # the validation score is the fine stage's alone, and a step costs half (frozen stages build no autograd
    # graph: 0.39 s against 0.8 s on 2 cores). Empty: train everything.
    trainable: tuple = ()
    guided_fine_weight: float = 0.0
    guided_fine_jitter_px: float = 5.0
    fine_pred_per_pair: int = 16
    # Teacher checkpoint for feature distillation ("" for none): a slimmer design warm-started from trained
    # weights (--init-weights with --model-config) is taught to reproduce the teacher's matching features.
    distill_from: str = ""
    distill_weight: float = 1.0
    # Also match the teacher's coarse matching distributions (losses.match_distillation_loss), weighted inside
    # the distillation term; 0 distils features only.
    distill_match_weight: float = 0.0
    grad_clip: float = 1.0
    val_fraction: float = 0.1
    val_pairs_per_modality: int = 8
    val_size: int = 256
    val_every_steps: int = 500
    # "crops": seeded val_size crops (fast, rough); "whole": the accuracy benchmark's protocol on whole
    # validation images through the Matcher at val_threshold (what ships is judged by; ~1 s per instance).
    val_protocol: str = "crops"
    val_threshold: float = 0.05
    ckpt_every_minutes: float = 5.0
    # Also keep every validated checkpoint as step_<N>.pt: crop validation ranks checkpoints only roughly,
    # so the shortlist is re-scored on whole images before one ships (scripts/export_weights.py).
    keep_validated: bool = False
    log_every_steps: int = 10
    seed: int = 0
    threads: int = 0  # 0: all cores

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict, *, strict: bool = False) -> "TrainConfig":
        """strict: refuse fields TrainConfig does not have (a user's --config, where a misspelt field would
        otherwise be ignored without a word); not strict: drop them (checkpoints of older versions)."""
        if not isinstance(d, dict):
            raise ValueError(f"expected an object of TrainConfig fields, got {type(d).__name__}")
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if strict and unknown:
            raise ValueError(f"unknown training setting(s) {', '.join(unknown)}; TrainConfig has {', '.join(sorted(names))}")
        kw = {k: v for k, v in d.items() if k in names}
        if "crop_sizes" in kw:
            kw["crop_sizes"] = tuple(int(x) for x in kw["crop_sizes"])
        if "trainable" in kw:
            kw["trainable"] = tuple(str(x) for x in kw["trainable"])
        return cls(**kw)

    def batch_for(self, size: int) -> int:
        """Batch size for a crop side, keeping pixels per step near batch_size x crop_size^2."""
        return max(1, round(self.batch_size * (self.crop_size / size) ** 2))
