"""Warm-starting a slimmer design from trained weights.

Dropping blocks from a trained network (e.g. the self SSD blocks at the token-heavy 1/2 and 1/4 scales,
which cost most of the time per pair) and fine-tuning the rest recovers its accuracy in a fraction of the
steps a fresh training needs: every block the slim design keeps has the same parameter names, so its
weights carry over one to one. The slim design must be a sub-network by name: a parameter it has that the
source lacks (or with another shape) would start from random values, and that is refused.
"""

from __future__ import annotations

import logging

from geomreg.matching.config import RegNetMamba2Config
from geomreg.matching.model import RegNetMamba2

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
    target = RegNetMamba2(config)
    src, tgt = source.state_dict(), target.state_dict()
    missing = [k for k in tgt if k not in src]
    reshaped = [k for k in tgt if k in src and src[k].shape != tgt[k].shape]
    if missing or reshaped:
        raise ValueError(
            "the new design is not a sub-network of the source weights: "
            + (f"missing {missing[:5]}{' ...' if len(missing) > 5 else ''} " if missing else "")
            + (f"shape differs for {reshaped[:5]}" if reshaped else "")
        )
    target.load_state_dict({k: src[k] for k in tgt}, strict=True)
    dropped = sorted(set(src) - set(tgt))
    n_src, n_tgt = (sum(p.numel() for p in m.parameters()) for m in (source, target))
    log.info("slimmed %.2f M -> %.2f M parameters (%d entries dropped)", n_src / 1e6, n_tgt / 1e6, len(dropped))
    return target, dropped
