"""Mixed precision for the network's forward pass (an option: MatcherConfig.precision).

"fp32" runs as before. "bf16" / "fp16" run the network under torch.autocast: matrix products and convolutions
in half precision, the rest (softmax, normalisation, the SSD's decays, which geomreg/nn/ssd.py computes in
float32 whatever its inputs) in float32. Tie-point coordinates are formed in float32 (window centre plus the
fine stage's offset) and the guided pass fits in float64, so what half precision can change is the
network's scores and heatmaps, not the arithmetic of the coordinates.
"""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("fp32", "bf16", "fp16")
_DTYPE = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")


def mixed_precision(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The autocast context for ``precision`` on ``device`` (a no-op for fp32)."""
    check_precision(precision)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=_DTYPE[precision])
