"""Checkpoints: saved atomically, loaded only with ``weights_only=True`` and ``strict=True``.

A shipped weights file is a plain state_dict (fp16 allowed) plus a JSON card holding the model config and
the file's SHA-256; ``load_packaged`` refuses a file whose checksum does not match.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch

from geomreg.matching.config import RegNetMamba2Config
from geomreg.matching.model import RegNetMamba2

# GEOMREG_WEIGHTS_DIR names another folder for the packaged weights (read once, at import). It reaches the
# processes geomreg starts (Dask workers, the CLI run by the QGIS plugin), so tests can hide the shipped weights.
WEIGHTS_DIR_ENV = "GEOMREG_WEIGHTS_DIR"
PACKAGED_DIR = Path(os.environ.get(WEIGHTS_DIR_ENV) or Path(__file__).resolve().parent.parent / "weights")
PACKAGED_WEIGHTS = PACKAGED_DIR / "regnetmamba2.pt"
PACKAGED_CARD = PACKAGED_DIR / "regnetmamba2.json"


# "auto" matcher choices use the packaged RegNetMamba-2 only once its own validation (recorded in the card
# at export) shows it registers most pairs of *every* validated modality: success@5 px >= 0.5 overall and in
# each modality. A model that is good on average but fails optical-SAR must not be picked silently for it.
USABLE_VALIDATION_KEY = "all/success@5"
USABLE_VALIDATION_MIN = 0.5


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupt, or does not fit the model; the message names the file."""


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_torch_save(obj, path: str | Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_checkpoint(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(f"{path}: not a readable checkpoint ({type(exc).__name__}: {str(exc).splitlines()[0][:200]})") from None
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(obj).__name__}")
    return obj


def build_model(state_dict: dict, config: RegNetMamba2Config, source: Path) -> RegNetMamba2:
    """A model with exactly these weights (strict); any mismatch raises, never a partially loaded model."""
    model = RegNetMamba2(config)
    try:
        model.load_state_dict({k: v.float() for k, v in state_dict.items()}, strict=True)
    except (RuntimeError, AttributeError) as exc:
        raise CheckpointError(f"{source}: weights do not fit the RegNetMamba-2 model: {str(exc).splitlines()[0][:300]}") from None
    return model.eval()


def load_checkpoint(path: str | Path) -> RegNetMamba2:
    """Training checkpoint ({"model", "config", ...}) or a bare state_dict with a sibling .json card."""
    path = Path(path)
    return model_from_checkpoint(read_checkpoint(path), path)


def is_training_checkpoint(obj: dict) -> bool:
    return "model" in obj and "config" in obj


def model_from_checkpoint(obj: dict, path: Path) -> RegNetMamba2:
    """The model of an already read checkpoint (see load_checkpoint)."""
    if is_training_checkpoint(obj):
        return build_model(obj["model"], RegNetMamba2Config.from_dict(obj["config"]), path)
    card = path.with_suffix(".json")
    config = RegNetMamba2Config.from_dict(json.loads(card.read_text())["config"]) if card.is_file() else RegNetMamba2Config()
    return build_model(obj, config, path)


def load_packaged() -> RegNetMamba2:
    if not PACKAGED_WEIGHTS.is_file() or not PACKAGED_CARD.is_file():
        raise CheckpointError(
            "no trained RegNetMamba-2 weights are packaged with this installation "
            f"(expected {PACKAGED_WEIGHTS}); use Matcher.from_checkpoint(path) or the 'cfog' matcher"
        )
    card = json.loads(PACKAGED_CARD.read_text())
    digest = sha256_of(PACKAGED_WEIGHTS)
    if digest != card.get("sha256"):
        raise CheckpointError(f"{PACKAGED_WEIGHTS}: checksum mismatch (file {digest[:12]}…, card {str(card.get('sha256'))[:12]}…): corrupt or replaced")
    return build_model(read_checkpoint(PACKAGED_WEIGHTS), RegNetMamba2Config.from_dict(card["config"]), PACKAGED_WEIGHTS)


def packaged_card() -> dict | None:
    try:
        return json.loads(PACKAGED_CARD.read_text()) if PACKAGED_WEIGHTS.is_file() and PACKAGED_CARD.is_file() else None
    except (OSError, ValueError):
        return None


def packaged_is_validated() -> tuple[bool, str]:
    """Whether the packaged weights are good enough to be chosen automatically, and why (not)."""
    card = packaged_card()
    if card is None:
        return False, "no trained RegNetMamba-2 weights are packaged"
    validation = card.get("validation", {})
    score = validation.get(USABLE_VALIDATION_KEY)
    metric = USABLE_VALIDATION_KEY.split("/", 1)[1]
    per_modality = {k.split("/", 1)[0]: v for k, v in validation.items() if k.endswith("/" + metric)}
    weakest = min(per_modality.items(), key=lambda kv: kv[1], default=None)
    if score is None or weakest[1] < USABLE_VALIDATION_MIN:
        shown = f"{USABLE_VALIDATION_KEY} = {score}" if score is None else f"{USABLE_VALIDATION_KEY} = {score:.2f}, weakest {weakest[0]}/{metric} = {weakest[1]:.2f}"
        return False, (
            f"the packaged RegNetMamba-2 weights are still in training (validation {shown}; automatic use needs "
            f">= {USABLE_VALIDATION_MIN} overall and in every modality; see docs/MODEL_CARD.md)"
        )
    return True, f"packaged RegNetMamba-2 weights (validation {USABLE_VALIDATION_KEY} = {score:.2f}, every modality >= {USABLE_VALIDATION_MIN})"


def export_packaged(model: RegNetMamba2, card: dict, out_dir: Path = PACKAGED_DIR) -> Path:
    """Write the fp16 state_dict and its card (with checksum) for shipping."""
    weights = out_dir / PACKAGED_WEIGHTS.name
    atomic_torch_save({k: v.detach().half() if v.is_floating_point() else v for k, v in model.state_dict().items()}, weights)
    card = dict(card, sha256=sha256_of(weights), config=model.cfg.to_dict())
    tmp = out_dir / (PACKAGED_CARD.name + ".tmp")
    tmp.write_text(json.dumps(card, indent=2))
    os.replace(tmp, out_dir / PACKAGED_CARD.name)
    return weights
