"""RegNetMamba-2: a coarse-to-fine multimodal matcher built on Mamba-2 SSD.

    1. Siamese encoder: structure channels, CNN stem, SSD stages at 1/2, 1/4, 1/8
    2. CMI: self SSD interleaved with two-way cross-form SSD, at every scale
    3. MSF: progressive upward fusion 1/8 -> 1/4 -> 1/2 (fine features)
    4. coarse matching at 1/8 (dual softmax, mutual NN)
    5. fine matching at 1/2 (window expectation and variance)
    6. correspondences in full-resolution pixel coordinates
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from geomreg.matching.cmi import CrossModalityInteraction
from geomreg.matching.coarse import CoarseMatches, CoarseMatching, CoarseResult
from geomreg.matching.config import RegNetMamba2Config
from geomreg.matching.encoder import Pyramid, SiameseEncoder
from geomreg.matching.fine import FineMatching, FineResult, MixedWindows, anchor_fine_xy
from geomreg.matching.msf import MultiScaleFusion
from geomreg.nn.mamba2 import MixerConfig

STRIDE_COARSE = 8
STRIDE_FINE = 2


@dataclass(frozen=True)
class Correspondences:
    batch: torch.Tensor  # [M]
    xy_a: torch.Tensor  # [M, 2] pixel (x, y) in image A, origin at the centre of the top-left pixel
    xy_b: torch.Tensor  # [M, 2] in image B
    confidence: torch.Tensor  # [M]

    def subset(self, keep: torch.Tensor) -> "Correspondences":
        return Correspondences(self.batch[keep], self.xy_a[keep], self.xy_b[keep], self.confidence[keep])

    def cat(self, other: "Correspondences") -> "Correspondences":
        """These correspondences, then `other`'s."""
        return Correspondences(*(torch.cat([a, b]) for a, b in zip(
            (self.batch, self.xy_a, self.xy_b, self.confidence), (other.batch, other.xy_a, other.xy_b, other.confidence))))


@dataclass(frozen=True)
class MatchingFeatures:
    """What the two matching stages read: the CMI features at 1/8 and the fused MSF features at 1/2."""

    coarse_a: torch.Tensor  # [B, L8, C2]
    coarse_b: torch.Tensor
    fine_a: torch.Tensor  # [B, C0, H2, W2]
    fine_b: torch.Tensor


@dataclass(frozen=True)
class FineAt:
    """Stage 5 run on windows of B centred where the caller says (RegNetMamba2.fine_at)."""

    matches: Correspondences  # the refined correspondences of the kept matches
    fine: FineResult  # their offsets, stds and heatmaps [K, w, w]
    centre: torch.Tensor  # [K, 2] fine (x, y) index of each of B's windows (the offsets are from it)


@dataclass(frozen=True)
class RegNetOutput:
    coarse: CoarseResult
    fine_matches: CoarseMatches  # the coarse matches the fine stage refined (predicted, or given in training)
    fine: FineResult
    matches: Correspondences
    hw8: tuple[int, int]
    features: MatchingFeatures  # what a slimmer student is taught to reproduce (geomreg.train.losses.distillation_loss)


def cell_mask(valid: torch.Tensor) -> torch.Tensor:
    """Pixel validity [B, 1, H, W] -> coarse cell validity [B, L8] (a cell counts when at least half is valid)."""
    return (F.avg_pool2d(valid.float(), STRIDE_COARSE) >= 0.5).flatten(1)


def fine_to_pixel(fine_xy: torch.Tensor) -> torch.Tensor:
    """Fine (1/2) index -> full-resolution pixel coordinate: fine cell k covers pixels 2k, 2k+1."""
    return fine_xy * STRIDE_FINE + 0.5


def pixel_to_fine(xy: torch.Tensor) -> torch.Tensor:
    """Full-resolution pixel coordinate -> continuous fine (1/2) index: the inverse of fine_to_pixel."""
    return (xy - 0.5) / STRIDE_FINE


class RegNetMamba2(nn.Module):
    def __init__(self, cfg: RegNetMamba2Config | None = None) -> None:
        super().__init__()
        self.cfg = cfg = cfg or RegNetMamba2Config()
        dims = cfg.encoder.dims
        self.encoder = SiameseEncoder(cfg.encoder)
        self.cmi = CrossModalityInteraction(cfg.encoder)
        self.msf = MultiScaleFusion(dims)
        self.coarse = CoarseMatching(cfg.coarse, dims[2])
        self.fine = FineMatching(cfg.fine, dims[0], dims[2])

    def set_coarse_threshold(self, threshold: float) -> "RegNetMamba2":
        """Set the coarse matching-probability threshold in place (it is tuned on whole images, not learnt)."""
        coarse_cfg = replace(self.cfg.coarse, threshold=threshold)
        self.coarse.cfg = coarse_cfg
        self.cfg = replace(self.cfg, coarse=coarse_cfg)
        return self

    def set_fine_window(self, window: int) -> "RegNetMamba2":
        """Set the fine window side (odd, at 1/2 resolution) in place.

        The window mixer has no position embedding, so the same weights read any window. The matches a coarse
        cell yields lie up to +-2 fine px (half a cell) from its anchor, exactly the border of the 5 x 5 window
        the network trains on, where the soft-argmax is cut off and pulled inwards: a wider window at inference
        removes that bias (benchmarks/fine_shift_bias.py).
        """
        self.fine.set_window(window)
        self.cfg = replace(self.cfg, fine=self.fine.cfg)
        return self

    def set_chunk_sizes(self, sizes: tuple[int, int, int]) -> "RegNetMamba2":
        """Set the SSD chunk length of each scale (1/2, 1/4, 1/8) in place.

        The chunk length decides how the scan is computed, not what it computes (outputs agree to float
        rounding), so it is a speed setting: benchmarks/ssd_chunks.py measures the fastest for a machine.
        """
        sizes = tuple(int(c) for c in sizes)
        if len(sizes) != 3 or min(sizes) < 1:
            raise ValueError(f"set_chunk_sizes: three positive chunk lengths expected, got {sizes}")
        per_scale = ((self.encoder.stage2, self.cmi.scales[0]), (self.encoder.stage4, self.cmi.scales[1]), (self.encoder.stage8, self.cmi.scales[2]))
        for chunk, modules in zip(sizes, per_scale):
            for mod in (m for part in modules for m in part.modules()):
                if isinstance(getattr(mod, "cfg", None), MixerConfig):
                    mod.cfg = replace(mod.cfg, chunk_size=chunk)
        self.cfg = replace(self.cfg, encoder=replace(self.cfg.encoder, chunk_sizes=sizes))
        return self

    def matching_features(self, img_a, img_b, valid_a, valid_b) -> tuple[Pyramid, Pyramid, MatchingFeatures]:
        """Stages 1-3: both pyramids after CMI and the features the matching stages read."""
        n = img_a.shape[0]
        # 1. Siamese encoder (both images in one batch)
        pyr = self.encoder(torch.cat([img_a, img_b]), torch.cat([valid_a, valid_b]))
        pa, pb = _split_pyramid(pyr, n)
        # 2. cross-modality interaction at every scale
        pa, pb = self.cmi(pa, pb)
        # 3. multi-scale fusion -> fine features at 1/2
        fine_ab = self.msf(_cat_pyramids(pa, pb))
        return pa, pb, MatchingFeatures(pa.f8, pb.f8, fine_ab[:n], fine_ab[n:])

    def forward(
        self,
        img_a: torch.Tensor,  # [B, 1, H, W] in [0, 1], H and W multiples of 8
        img_b: torch.Tensor,  # [B, 1, H, W] (same size: pad the smaller image)
        valid_a: torch.Tensor | None = None,  # [B, 1, H, W] bool
        valid_b: torch.Tensor | None = None,
        *,
        fine_on: Callable[[CoarseMatches], CoarseMatches] | None = None,  # training: which matches to refine
    ) -> RegNetOutput:
        if img_a.shape != img_b.shape or img_a.shape[-1] % STRIDE_COARSE or img_a.shape[-2] % STRIDE_COARSE:
            raise ValueError(f"RegNetMamba2: images must share one size divisible by 8, got {tuple(img_a.shape)} and {tuple(img_b.shape)}")
        valid_a = torch.ones_like(img_a, dtype=torch.bool) if valid_a is None else valid_a
        valid_b = torch.ones_like(img_b, dtype=torch.bool) if valid_b is None else valid_b
        pa, pb, feats = self.matching_features(img_a, img_b, valid_a, valid_b)

        # 4. coarse matching at 1/8
        hw8 = pa.hw8
        coarse = self.coarse(pa.f8, pb.f8, cell_mask(valid_a), cell_mask(valid_b), hw8, hw8)
        to_refine = fine_on(coarse.matches) if fine_on is not None else coarse.matches

        # 5. fine matching at 1/2
        fine = self.fine(feats.fine_a, feats.fine_b, pa.f8, pb.f8, to_refine.batch, to_refine.idx_a, to_refine.idx_b, hw8[1])

        # 6. pixel coordinates
        xy_a = fine_to_pixel(anchor_fine_xy(to_refine.idx_a, hw8[1]).float())
        xy_b = fine_to_pixel(anchor_fine_xy(to_refine.idx_b, hw8[1]).float() + fine.offset)
        matches = Correspondences(to_refine.batch, xy_a, xy_b, to_refine.confidence)
        return RegNetOutput(coarse, to_refine, fine, matches, hw8, feats)


    def fine_at(self, out: RegNetOutput, xy_b: torch.Tensor, keep: torch.Tensor | None = None) -> FineAt:
        """Stage 5 again, with B's windows centred where ``xy_b`` says instead of on the coarse matches' cells.

        out: a forward's output; xy_b [M, 2] pixel (x, y) in B for each of out.fine_matches (e.g. where a model
        fitted to the first pass puts A's anchors); keep [M] bool: which of them to refine (default: all).
        Returns the refined correspondences of the kept matches (A's side and the confidences unchanged) with
        the fine result and window centres they came from (guided matching reads the heatmaps).
        """
        fm, w8 = out.fine_matches, out.hw8[1]
        keep = torch.ones_like(fm.batch, dtype=torch.bool) if keep is None else keep
        batch, idx_a, confidence = fm.batch[keep], fm.idx_a[keep], fm.confidence[keep]
        reuse = None if out.fine.windows_a is None else out.fine.windows_a[keep]  # A's side is unchanged
        fine, centre = self.fine_around(out.features, w8, batch, idx_a, xy_b[keep], windows_a=reuse)
        xy_a = fine_to_pixel(anchor_fine_xy(idx_a, w8).float())
        return FineAt(Correspondences(batch, xy_a, fine_to_pixel(centre.float() + fine.offset), confidence), fine, centre)

    def fine_around(
        self,
        feats: MatchingFeatures,
        w8: int,
        batch: torch.Tensor,  # [K]
        idx_a: torch.Tensor,  # [K] A's cells
        xy_b: torch.Tensor,  # [K, 2] pixel (x, y) in B to centre each window on
        windows_a: MixedWindows | None = None,  # A's mixed windows of these matches (FineResult.windows_a)
    ) -> tuple[FineResult, torch.Tensor]:
        """The fine stage on windows of B centred at the fine pixel nearest ``xy_b`` (not on a coarse cell's
        anchor). Returns its result and the windows' fine (x, y) centres [K, 2], which its offsets are from.
        Guided matching calls it at a model's predictions; training calls it at jittered true positions."""
        h2, w2 = feats.fine_b.shape[-2:]
        centre = torch.round(pixel_to_fine(xy_b)).long()  # [K, 2] nearest fine cell
        centre = torch.stack([centre[:, 0].clamp(0, w2 - 1), centre[:, 1].clamp(0, h2 - 1)], dim=-1)
        cell = centre // (STRIDE_COARSE // STRIDE_FINE)  # [K, 2] the coarse cell holding it (its 1/8 context)
        idx_b = cell[:, 1] * w8 + cell[:, 0]
        fine = self.fine(feats.fine_a, feats.fine_b, feats.coarse_a, feats.coarse_b, batch, idx_a, idx_b, w8, centre_b=centre, windows_a=windows_a)
        return fine, centre


def _split_pyramid(p: Pyramid, n: int) -> tuple[Pyramid, Pyramid]:
    a = Pyramid(p.f2[:n], p.f4[:n], p.f8[:n], p.hw2, p.hw4, p.hw8)
    b = Pyramid(p.f2[n:], p.f4[n:], p.f8[n:], p.hw2, p.hw4, p.hw8)
    return a, b


def _cat_pyramids(a: Pyramid, b: Pyramid) -> Pyramid:
    return Pyramid(torch.cat([a.f2, b.f2]), torch.cat([a.f4, b.f4]), torch.cat([a.f8, b.f8]), a.hw2, a.hw4, a.hw8)
