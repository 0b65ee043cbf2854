"""Fixed structure channels at the input: the inductive bias "structure and edges first".

Intensities of SAR and optical images are unrelated, but the *orientation* of their edges is shared up to
polarity. Beside the normalised intensity we feed the gradient magnitude and the doubled-angle orientation
(m cos 2θ, m sin 2θ), which is invariant to contrast reversal (θ and θ + 180° give the same channels).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

_SOBEL_X = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0
_BLUR = torch.tensor([1.0, 2.0, 1.0]) / 4.0

N_STRUCTURE_CHANNELS = 4


def structure_channels(img: torch.Tensor, valid: torch.Tensor | None = None, eps: float = 1e-6) -> torch.Tensor:
    """img [B, 1, H, W] in [0, 1], valid [B, 1, H, W] bool -> [B, 4, H, W]."""
    if valid is None:
        valid = torch.ones_like(img, dtype=torch.bool)
    v = valid.to(img.dtype)
    n = v.sum(dim=(2, 3), keepdim=True).clamp_min(1.0)
    mean = (img * v).sum(dim=(2, 3), keepdim=True) / n
    std = (((img - mean) ** 2) * v).sum(dim=(2, 3), keepdim=True).div(n).sqrt().clamp_min(1e-3)
    intensity = (img - mean) / std * v

    blur = (_BLUR[:, None] * _BLUR[None, :]).to(img)[None, None]
    smooth = F.conv2d(F.pad(img, (1, 1, 1, 1), mode="replicate"), blur)
    sx = _SOBEL_X.to(img)[None, None]
    padded = F.pad(smooth, (1, 1, 1, 1), mode="replicate")
    gx, gy = F.conv2d(padded, sx), F.conv2d(padded, sx.transpose(-1, -2))
    mag = torch.sqrt(gx**2 + gy**2 + eps)
    scale = (mag * v).sum(dim=(2, 3), keepdim=True).div(n).clamp_min(1e-4)
    m = mag / scale
    cos2 = (gx**2 - gy**2) / (mag**2)
    sin2 = 2 * gx * gy / (mag**2)
    return torch.cat([intensity, m, m * cos2, m * sin2], dim=1) * v
