"""Warm-starting a slimmer or a deeper design from trained weights.

Slimming: dropping blocks from a trained network (e.g. the self SSD blocks at the token-heavy 1/2 and 1/4
scales, which cost most of the time per pair) and fine-tuning the rest recovers its accuracy in a fraction of
the steps a fresh training needs: every block the slim design keeps has the same parameter names, so its
weights carry over one to one. The slim design must be a sub-network by name: a parameter it has that the
source lacks (or with another shape) would start from random values, and that is refused.

Growing: when training has levelled off, capacity is what a longer run cannot add. A deeper design (more
self blocks or CMI layers) keeps every trained weight and adds whole residual blocks whose residual outputs
(the mixer's out_proj, the MLP's last layer) start at zero, so the grown network computes exactly what the
source computed and training starts from its accuracy, not from a perturbed copy of it. Only whole new
blocks may appear: a new parameter inside a trained block would change what the block computes.
"""

from __future__ import annotations

import logging

import torch

from geomreg.matching.config import RegNetMamba2Config
from geomreg.matching.model import RegNetMamba2
from geomreg.nn.blocks import CrossBlock, SelfBlock

log = logging.getLogger(__name__)


def merge_config(base: RegNetMamba2Config, overrides: dict) -> RegNetMamba2Config:
    """``base`` with the fields named in ``overrides`` replaced (nested like ``RegNetMamba2Config.to_dict``).

    {"encoder": {"self_blocks": [0, 0, 1]}} changes only that field; unknown sections or fields are errors.
    """
    merged = base.to_dict()
    for section, fields in overrides.items():
        if section not in merged or not isinstance(fields, dict):
            raise ValueError(f"model config: unknown section {section!r} (expected one of {sorted(merged)} with a mapping)")
        unknown = set(fields) - set(merged[section])
        if unknown:
            raise ValueError(f"model config: unknown {section} field(s) {sorted(unknown)}")
        merged[section].update(fields)
    return RegNetMamba2Config.from_dict(merged)


def slim_from(source: RegNetMamba2, config: RegNetMamba2Config) -> tuple[RegNetMamba2, list[str]]:
    """A model of ``config`` whose every parameter and buffer is copied from ``source`` by name.

    Returns the model and the source entries it dropped. Raises ValueError when the new design has an entry
    the source lacks or holds with another shape (it would start untrained).
    """
    return _slim_into(source, RegNetMamba2(config))


def _slim_into(source: RegNetMamba2, target: RegNetMamba2) -> tuple[RegNetMamba2, list[str]]:
    src, tgt = source.state_dict(), target.state_dict()
    _refuse_mismatch("is not a sub-network of the source weights", "missing", [k for k in tgt if k not in src], src, tgt)
    target.load_state_dict({k: src[k] for k in tgt}, strict=True)
    dropped = sorted(set(src) - set(tgt))
    n_src, n_tgt = (sum(p.numel() for p in m.parameters()) for m in (source, target))
    log.info("slimmed %.2f M -> %.2f M parameters (%d entries dropped)", n_src / 1e6, n_tgt / 1e6, len(dropped))
    return target, dropped


def grow_from(source: RegNetMamba2, config: RegNetMamba2Config) -> tuple[RegNetMamba2, list[str]]:
    """A model of ``config`` holding every weight of ``source``, plus new residual blocks that start as identities.

    Returns the model and the names of the blocks it added. Raises ValueError when the source has an entry the
    new design lacks (use slim_from), a shared entry changes shape, or a new entry is not part of a whole new
    self or cross block.
    """
    return _grow_into(source, RegNetMamba2(config))


def _grow_into(source: RegNetMamba2, target: RegNetMamba2) -> tuple[RegNetMamba2, list[str]]:
    src, tgt = source.state_dict(), target.state_dict()
    _refuse_mismatch("does not contain the source weights", "it lacks", [k for k in src if k not in tgt], src, tgt)
    added = _new_blocks(target, src)
    covered = {f"{name}.{k}" for name in added for k in target.get_submodule(name).state_dict()}
    stray = [k for k in tgt if k not in src and k not in covered]
    if stray:
        raise ValueError(f"the new design adds entries outside whole new blocks: {stray[:5]}")
    target.load_state_dict({**tgt, **src}, strict=True)
    for name in added:
        _zero_residual_outputs(target.get_submodule(name))
    n_src, n_tgt = (sum(p.numel() for p in m.parameters()) for m in (source, target))
    log.info("grew %.2f M -> %.2f M parameters (%d new blocks start as identities: %s)", n_src / 1e6, n_tgt / 1e6, len(added), ", ".join(added))
    return target, added


def warm_start_from(source: RegNetMamba2, config: RegNetMamba2Config) -> tuple[RegNetMamba2, dict]:
    """Slim or grow ``source`` into ``config``, whichever it is; returns the model and a record for the run's
    history: {"kind": "slimmed", "dropped_entries": n} or {"kind": "grown", "added_blocks": [...]}."""
    target = RegNetMamba2(config)
    src, tgt = source.state_dict(), target.state_dict()
    if all(k in src for k in tgt):
        model, dropped = _slim_into(source, target)
        return model, {"kind": "slimmed", "dropped_entries": len(dropped)}
    if all(k in tgt for k in src):
        model, added = _grow_into(source, target)
        return model, {"kind": "grown", "added_blocks": added}
    raise ValueError("the new design neither keeps a subset of the source's blocks (slimming) nor all of them (growing)")


def _refuse_mismatch(what: str, absent_label: str, absent: list[str], src: dict, tgt: dict) -> None:
    """ValueError naming the entries one side lacks and the shared entries whose shape differs, if any."""
    reshaped = [k for k in tgt if k in src and src[k].shape != tgt[k].shape]
    if absent or reshaped:
        raise ValueError(
            f"the new design {what}: "
            + (f"{absent_label} {absent[:5]}{' ...' if len(absent) > 5 else ''} " if absent else "")
            + (f"shape differs for {reshaped[:5]}" if reshaped else "")
        )


def _new_blocks(model: RegNetMamba2, known: dict) -> list[str]:
    """Names of the self and cross blocks of ``model`` none of whose entries are in ``known``."""
    return [
        name for name, mod in model.named_modules()
        if isinstance(mod, (SelfBlock, CrossBlock)) and not any(f"{name}.{k}" in known for k in mod.state_dict())
    ]


def _zero_residual_outputs(block: SelfBlock | CrossBlock) -> None:
    """Zero what a block adds to its residual stream, so that it starts as the identity (and still learns:
    the gradient reaches the zeroed layers, and through them the rest of the block, from the first step)."""
    with torch.no_grad():
        block.mixer.out_proj.weight.zero_()
        if block.mlp is not None:
            last = block.mlp.net[-1]
            last.weight.zero_()
            last.bias.zero_()
