"""Mamba-2 mixers on 2-D feature maps: the self form and the cross form (CMI).

Self form (the Mamba-2 block):   in_proj -> depthwise conv -> SiLU -> SSD -> gated RMSNorm -> out_proj.
Cross form (for cross-modality interaction): the SSD analogue of cross-attention. In the SSD "attention"
view, y_t = sum_s C_t . B_s * decay(s..t) * dt_s x_s, C plays the query and (B, x, dt) the keys/values.
So to update image A with image B, C and the gate z come from A's tokens while x, B and dt come from B's.

Structure-emphasising feature scaling (our reading of the paper's SSD "feature scaling"): the step size
dt of each token is multiplied by exp(gamma_h * s_t), where s_t is a local structure cue (log of the
feature-gradient magnitude relative to the map's mean, so ~0 on average) and gamma_h a learned per-head
gain. A large dt both writes the token strongly into the state and lets the state forget flat context
faster, so edges and structures, which survive modality changes, dominate what the scan carries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from geomreg.nn.norm import GatedRMSNorm
from geomreg.nn.scan2d import N_DIRECTIONS, from_direction_groups, heads_by_direction, merge_direction_heads, to_direction_groups
from geomreg.nn.ssd import ssd_scan_grouped


@dataclass(frozen=True)
class MixerConfig:
    d_model: int
    expand: int = 2
    headdim: int = 16
    d_state: int = 16
    chunk_size: int = 64
    structure_scaling: bool = True
    ssd_backend: str = "torch"  # "auto" uses mamba-ssm's kernel on CUDA

    @property
    def d_inner(self) -> int:
        return self.expand * self.d_model

    @property
    def n_heads(self) -> int:
        return self.d_inner // self.headdim

    def __post_init__(self) -> None:
        if self.d_inner % self.headdim or self.n_heads % N_DIRECTIONS:
            raise ValueError(f"MixerConfig: d_inner={self.d_inner} must split into heads of {self.headdim}, a multiple of {N_DIRECTIONS}")


def structure_cue(f: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """Local structure of a feature map [B, C, H, W] -> [B, H*W]: log of the gradient energy over its mean."""
    gx = f[..., :, 1:] - f[..., :, :-1]
    gy = f[..., 1:, :] - f[..., :-1, :]
    g = F.pad(gx.abs(), (0, 1)).mean(1) + F.pad(gy.abs(), (0, 0, 0, 1)).mean(1)  # [B, H, W]
    g = g.flatten(1)
    return torch.log((g + eps) / (g.mean(dim=1, keepdim=True) + eps)).clamp(-4.0, 4.0)


class _SSDCore(nn.Module):
    """The per-head SSD parameters (A, dt bias, D, structure gain) and the four-direction scan."""

    def __init__(self, cfg: MixerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        h = cfg.n_heads
        # A in [-16, -1] and dt in [1e-3, 1e-1], log-uniform, as in Mamba-2's initialisation.
        self.A_log = nn.Parameter(torch.log(torch.empty(h).uniform_(1.0, 16.0)))
        dt = torch.exp(torch.empty(h).uniform_(math.log(1e-3), math.log(1e-1)))
        self.dt_bias = nn.Parameter(dt + torch.log(-torch.expm1(-dt)))  # inverse softplus
        self.D = nn.Parameter(torch.ones(h))
        self.structure_gain = nn.Parameter(torch.full((h,), 0.5)) if cfg.structure_scaling else None

    def forward(self, x, dt_raw, B, C, hw: tuple[int, int], cue: torch.Tensor | None) -> torch.Tensor:
        # x [b, L, H, P], dt_raw [b, L, H], B, C [b, L, 4, N] (one group per direction), cue [b, L]
        dt = F.softplus(dt_raw + self.dt_bias)
        if self.structure_gain is not None and cue is not None:
            dt = dt * torch.exp(self.structure_gain * cue[..., None])
        # Direction-major for the scan: direction d's heads and its B/C group, in d's token order.
        xs = rearrange(to_direction_groups(heads_by_direction(x), hw), "b d l r p -> b d r l p")  # [b, 4, H/4, L, P]
        dts = rearrange(to_direction_groups(heads_by_direction(dt), hw), "b d l r -> b d r l")  # [b, 4, H/4, L]
        Bs, Cs = to_direction_groups(B, hw), to_direction_groups(C, hw)  # [b, 4, L, N]
        y = ssd_scan_grouped(xs, dts, -torch.exp(self.A_log), Bs, Cs, chunk_size=self.cfg.chunk_size, D=self.D, backend=self.cfg.ssd_backend)
        y = from_direction_groups(rearrange(y, "b d r l p -> b d l r p"), hw)  # [b, L, 4, H/4, P]
        return merge_direction_heads(y)  # [b, L, H, P]

    def scan_tokens(self, x, dt_raw, B, C, hw: tuple[int, int], cue: torch.Tensor | None) -> torch.Tensor:
        """Flat projections [b, L, H*P], [b, L, H], [b, L, 4*N] x 2 -> scanned [b, L, H*P]."""
        y = self(
            rearrange(x, "b l (h p) -> b l h p", p=self.cfg.headdim),
            dt_raw,
            rearrange(B, "b l (g n) -> b l g n", g=N_DIRECTIONS),
            rearrange(C, "b l (g n) -> b l g n", g=N_DIRECTIONS),
            hw,
            cue,
        )
        return rearrange(y, "b l h p -> b l (h p)")


class Mamba2Mixer2D(nn.Module):
    """Mamba-2 token mixer over a feature map (self form)."""

    def __init__(self, cfg: MixerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        di, gn = cfg.d_inner, N_DIRECTIONS * cfg.d_state
        self.in_proj = nn.Linear(cfg.d_model, 2 * di + 2 * gn + cfg.n_heads, bias=False)
        # Depthwise 3x3 (not a causal 1-D conv): local context in every direction before the scan.
        self.conv = nn.Conv2d(di + 2 * gn, di + 2 * gn, 3, padding=1, groups=di + 2 * gn)
        self.core = _SSDCore(cfg)
        self.norm = GatedRMSNorm(di)
        self.out_proj = nn.Linear(di, cfg.d_model, bias=False)

    def forward(self, tokens: torch.Tensor, hw: tuple[int, int], cue: torch.Tensor | None = None) -> torch.Tensor:
        # tokens [b, L, C] in raster order, hw = (H, W) of the grid
        cfg, di, gn = self.cfg, self.cfg.d_inner, N_DIRECTIONS * self.cfg.d_state
        z, xbc, dt = torch.split(self.in_proj(tokens), [di, di + 2 * gn, cfg.n_heads], dim=-1)
        xbc = rearrange(xbc, "b (h w) c -> b c h w", h=hw[0])
        xbc = F.silu(rearrange(self.conv(xbc), "b c h w -> b (h w) c"))
        x, B, C = torch.split(xbc, [di, gn, gn], dim=-1)
        return self.out_proj(self.norm(self.core.scan_tokens(x, dt, B, C, hw, cue), z))  # [b, L, C]


class CrossMamba2Mixer2D(nn.Module):
    """Cross-form SSD: the target's tokens read (through C) a scan over the source's tokens (x, B, dt)."""

    def __init__(self, cfg: MixerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        di, gn = cfg.d_inner, N_DIRECTIONS * cfg.d_state
        self.query_proj = nn.Linear(cfg.d_model, di + gn, bias=False)  # z, C from the target
        self.source_proj = nn.Linear(cfg.d_model, di + gn + cfg.n_heads, bias=False)  # x, B, dt from the source
        self.query_conv = nn.Conv2d(gn, gn, 3, padding=1, groups=gn)
        self.source_conv = nn.Conv2d(di + gn, di + gn, 3, padding=1, groups=di + gn)
        self.core = _SSDCore(cfg)
        self.norm = GatedRMSNorm(di)
        self.out_proj = nn.Linear(di, cfg.d_model, bias=False)

    def forward(self, target: torch.Tensor, source: torch.Tensor, hw: tuple[int, int], source_cue: torch.Tensor | None = None) -> torch.Tensor:
        # target, source [b, L, C] on the same (H, W) grid
        cfg, di, gn = self.cfg, self.cfg.d_inner, N_DIRECTIONS * self.cfg.d_state
        z, C = torch.split(self.query_proj(target), [di, gn], dim=-1)
        xb, dt = torch.split(self.source_proj(source), [di + gn, cfg.n_heads], dim=-1)
        C = F.silu(rearrange(self.query_conv(rearrange(C, "b (h w) c -> b c h w", h=hw[0])), "b c h w -> b (h w) c"))
        xb = F.silu(rearrange(self.source_conv(rearrange(xb, "b (h w) c -> b c h w", h=hw[0])), "b c h w -> b (h w) c"))
        x, B = torch.split(xb, [di, gn], dim=-1)
        return self.out_proj(self.norm(self.core.scan_tokens(x, dt, B, C, hw, source_cue), z))
