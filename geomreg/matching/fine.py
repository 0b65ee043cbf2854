"""Fine matching at 1/2: windows around each coarse match, a small in-window mixer, correlation, and
the soft-argmax expectation with its variance (sub-pixel position and an uncertainty).

At inference the position is the expectation over the heatmap's peak and its neighbours only (a local
soft-argmax). The expectation over the whole window is pulled toward the window centre by the probability mass
far from the peak: with heatmaps as broad as this network's (peak probability about 0.2), it reached only
about three quarters of the true offset on exactly known self pairs (the least-squares gain of the truth on the
prediction was 1.35; benchmarks/fine_stage.py), which shows as tie points under-following scale and shear. Training keeps the full
expectation: its gradient reaches every position of the window.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from geomreg.matching.config import FineConfig
from geomreg.nn.attention import attend

# A coarse cell (8x8 px) is 4x4 cells at 1/2; we anchor each coarse cell at fine index 4 * cell + 2.
FINE_PER_COARSE = 4
ANCHOR = 2


@dataclass(frozen=True)
class MixedWindows:
    """A's windows after the mixer's self attention: they depend on A's cells only, so a second pass over the
    same matches (guided matching moves only B's windows) reuses them instead of recomputing half its work."""

    tokens: torch.Tensor  # [M, K, C] after self attention (the residual stream)
    normed: torch.Tensor  # [M, K, C] the same, layer-normed (cross attention's keys and values)

    def __getitem__(self, keep: torch.Tensor | slice) -> "MixedWindows":
        return MixedWindows(self.tokens[keep], self.normed[keep])


@dataclass(frozen=True)
class FineResult:
    offset: torch.Tensor  # [M, 2] (x, y) offset in 1/2-resolution px from B's window centre (expectation; local at inference)
    std: torch.Tensor  # [M] standard deviation of that expectation (1/2-resolution pixels)
    heatmap: torch.Tensor  # [M, w, w]
    windows_a: MixedWindows | None = None  # A's mixed windows, for a further pass over the same matches


def anchor_fine_xy(idx: torch.Tensor, w8: int) -> torch.Tensor:
    """Coarse cell index (row-major, grid width w8) -> fine (x, y) index of its anchor. [M] -> [M, 2]."""
    return torch.stack([idx % w8, idx // w8], dim=-1) * FINE_PER_COARSE + ANCHOR


def window_offsets(window: int) -> torch.Tensor:
    """(x, y) offset of every window cell from its centre, row-major: [w*w, 2]."""
    r = window // 2
    d = torch.arange(-r, r + 1, dtype=torch.float32)
    return torch.stack(torch.meshgrid(d, d, indexing="xy"), dim=-1).reshape(-1, 2)


def local_expectation(heat: torch.Tensor, offsets: torch.Tensor, radius: int) -> torch.Tensor:
    """Soft-argmax restricted to the peak's neighbourhood. heat [M, K] (rows sum to 1), offsets [K, 2] -> [M, 2]."""
    peak = offsets[heat.argmax(dim=-1)]  # [M, 2]
    near = ((offsets[None] - peak[:, None]).abs() <= radius).all(dim=-1)  # [M, K]
    w = heat * near
    return (w @ offsets) / w.sum(dim=-1, keepdim=True)


def gather_windows(fmap: torch.Tensor, batch: torch.Tensor, centre_xy: torch.Tensor, window: int) -> torch.Tensor:
    """fmap [B, C, H, W], centres [M, 2] (x, y) -> windows [M, w*w, C] (zero outside the map)."""
    r = window // 2
    padded = F.pad(fmap, (r, r, r, r))
    d = torch.arange(-r, r + 1, device=fmap.device)
    ys = (centre_xy[:, 1, None, None] + r + d[None, :, None]).expand(-1, window, window)
    xs = (centre_xy[:, 0, None, None] + r + d[None, None, :]).expand(-1, window, window)
    win = padded[batch[:, None, None], :, ys, xs]  # [M, w, w, C]
    return rearrange(win, "m h w c -> m (h w) c")


class WindowMixer(nn.Module):
    """Self attention inside each window, then cross attention between the two windows of a match."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.self_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.cross_attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm1, self.norm2, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def mix_within(self, w: torch.Tensor) -> MixedWindows:
        """Self attention inside each window (A's and B's alike). w [M, K, C]."""
        h = self.norm1(w)
        x = w + attend(self.self_attn, h, h, h)
        return MixedWindows(x, self.norm2(x))

    def forward(
        self, wa: torch.Tensor | MixedWindows, wb: torch.Tensor, anchor: int
    ) -> tuple[torch.Tensor, torch.Tensor, MixedWindows]:
        # wa (or A's windows already mixed), wb [M, K, C] -> A's anchor token [M, C], B's window [M, K, C], A's mixed windows
        if isinstance(wa, MixedWindows):
            a, b = wa, self.mix_within(wb)
        else:
            m = wa.shape[0]
            both = self.mix_within(torch.cat([wa, wb], dim=0))  # [2M, K, C]: one batch for both sides
            a, b = both[:m], both[m:]
        # Past this point only A's anchor is read (it is the correlation query), so only it reads B's
        # window and goes through the MLP: the same result at half the cost of mixing all of A's tokens.
        xa = a.tokens[:, anchor : anchor + 1] + attend(self.cross_attn, a.normed[:, anchor : anchor + 1], b.normed, b.normed)  # [M, 1, C]
        xb = b.tokens + attend(self.cross_attn, b.normed, a.normed, a.normed)  # [M, K, C]
        y = torch.cat([xa, xb], dim=1)  # [M, 1 + K, C]
        y = y + self.mlp(self.norm3(y))
        return y[:, 0], y[:, 1:], a


class FineMatching(nn.Module):
    def __init__(self, cfg: FineConfig, c_fine: int, c_coarse: int) -> None:
        super().__init__()
        if cfg.window % 2 != 1:
            raise ValueError(f"FineConfig.window must be odd, got {cfg.window}")
        self.cfg = cfg
        self.fine_proj = nn.Linear(c_fine, cfg.dim)
        self.coarse_proj = nn.Linear(c_coarse, cfg.dim)
        self.mixer = WindowMixer(cfg.dim, cfg.heads)
        self.register_buffer("offsets", window_offsets(cfg.window), persistent=False)

    def set_window(self, window: int) -> None:
        """Change the window side in place. No parameter depends on it (the mixer has no position embedding)."""
        if window % 2 != 1 or window < 3:
            raise ValueError(f"fine window must be odd and >= 3, got {window}")
        self.cfg = replace(self.cfg, window=window)
        self.offsets = window_offsets(window).to(self.offsets.device)

    def forward(
        self,
        fine_a: torch.Tensor,  # [B, C0, H2, W2]
        fine_b: torch.Tensor,
        coarse_a: torch.Tensor,  # [B, L8, C2]
        coarse_b: torch.Tensor,
        batch: torch.Tensor,  # [M]
        idx_a: torch.Tensor,
        idx_b: torch.Tensor,
        w8: int,
        centre_b: torch.Tensor | None = None,  # [M, 2] fine (x, y) of B's windows (default: idx_b's anchors)
        windows_a: MixedWindows | None = None,  # A's mixed windows of these same matches, from an earlier pass
    ) -> FineResult:
        w = self.cfg.window
        m = batch.numel()
        if m == 0:
            z = fine_a.new_zeros(0)
            return FineResult(z.view(0, 2), z, z.view(0, w, w))
        if windows_a is not None and windows_a.tokens.shape[:2] != (m, w * w):
            raise ValueError(f"FineMatching: windows_a holds {tuple(windows_a.tokens.shape[:2])} windows, expected {(m, w * w)}")
        centre_b = anchor_fine_xy(idx_b, w8) if centre_b is None else centre_b
        wb = gather_windows(fine_b, batch, centre_b, w)  # [M, w*w, C0]
        wb = self.fine_proj(wb) + self.coarse_proj(coarse_b[batch, idx_b])[:, None]
        if windows_a is None:
            wa = gather_windows(fine_a, batch, anchor_fine_xy(idx_a, w8), w)
            wa = self.fine_proj(wa) + self.coarse_proj(coarse_a[batch, idx_a])[:, None]
        query, wb, windows_a = self.mixer(wa if windows_a is None else windows_a, wb, anchor=(w * w) // 2)  # [M, C], [M, w*w, C]
        sim = torch.einsum("mc,mkc->mk", query, wb) / wb.shape[-1] ** 0.5
        heat = F.softmax(sim.float(), dim=-1)  # [M, w*w]
        mean = heat @ self.offsets  # [M, 2]
        var = (heat[..., None] * (self.offsets[None] - mean[:, None]) ** 2).sum(dim=(1, 2))
        position = mean if self.training or not self.cfg.local_radius else local_expectation(heat, self.offsets, self.cfg.local_radius)
        return FineResult(position, var.clamp_min(1e-10).sqrt(), heat.view(m, w, w), windows_a)
