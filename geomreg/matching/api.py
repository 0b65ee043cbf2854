"""The Matcher API: numpy images in, correspondences in each image's own pixel grid out.

    m = geomreg.Matcher.from_pretrained(device="auto")
    r = m.match(ref, mov)      # r.ref_xy, r.mov_xy [N, 2] (x = column, y = row), r.confidence [N]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from geomreg.matching.guided import GuideConfig, guided_matches
from geomreg.matching.model import RegNetMamba2
from geomreg.matching.precision import check_precision, mixed_precision
from geomreg.matching.preprocess import NormalizedImage, check_image, normalize_intensity
from geomreg.matching.types import ImageMatcher, MatchResult
from geomreg.matching.weights import load_checkpoint, load_packaged
from geomreg.nn.cpu_allocator import keep_freed_memory

log = logging.getLogger(__name__)

MATCHER_NAMES = ("regnetmamba2", "regnetmamba2+polish", "regnetmamba2+cfog", "cfog", "auto")


@dataclass(frozen=True)
class MatcherConfig:
    # Larger inputs are downscaled to this longest side (the tiling layer sends 512 px tiles). The coarse
    # stage's one [La, Lb] matrix grows with the 4th power of the side: ~0.5 GB for a 1024 x 680 pair.
    # 1024 rather than 768: the VIS-NIR validation pairs are 1024 px wide and register better at native size
    # (docs/benchmarks.md, "Defaults and why").
    max_side: int = 1024
    batch_size: int = 4
    min_confidence: float = 0.0
    # Second fine pass around the first pass's fitted geometry (geomreg/matching/guided.py); None: one pass.
    guide: GuideConfig | None = GuideConfig()
    # "fp32", or "bf16" / "fp16": the network under autocast (geomreg/matching/precision.py; docs/gpu.md).
    precision: str = "fp32"

    def __post_init__(self) -> None:
        check_precision(self.precision)


# Working set of one tile pair on CPU, above the loaded model (peak RSS of a fresh process matching one pair,
# minus its RSS before; 2026-12-06, step-13500 weights, 1 thread): 497 MB at 328 px, 834 MB at 584 px (a 512 px
# tile with its 36 px moving margin), 1165 MB at 840 px; each further pair of a batch adds about as much
# (584 px: 1.05, 1.82, 3.06 GB peak RSS at batches of 1, 2, 4). Linear in the side, not the area, over this
# range: the 1,024 fine windows of the guided pass weigh as much as the pyramids.
_MEM_BASE, _MEM_PER_SIDE_PX = 70 * 2**20, 1.31 * 2**20


def memory_per_pair(h: int, w: int, max_side: int = 1024) -> int:
    """Bytes one (h x w) pair needs while RegNetMamba-2 matches it on CPU (measured model, see above)."""
    side = min(max(h, w), max_side)
    return int(_MEM_BASE + _MEM_PER_SIDE_PX * side)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r} (auto, cpu, cuda, cuda:N)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available")
    return dev


@dataclass(frozen=True)
class _Prepared:
    image: np.ndarray  # float32 [h, w] at working scale
    valid: np.ndarray  # bool [h, w]
    scale: float  # working / original
    note: str | None


def _prepare(arr: np.ndarray, name: str, max_side: int) -> _Prepared:
    norm: NormalizedImage = normalize_intensity(arr, name=name)
    if not norm.valid.any():
        raise ValueError(f"{name}: no valid pixel (all NaN or nodata)")
    h, w = norm.image.shape
    scale = min(1.0, max_side / max(h, w))
    if scale < 1.0:
        size = (max(8, round(w * scale)), max(8, round(h * scale)))
        img = cv2.resize(norm.image, size, interpolation=cv2.INTER_AREA)
        valid = cv2.resize(norm.valid.astype(np.uint8), size, interpolation=cv2.INTER_NEAREST) > 0
        scale = size[0] / w
        note = f"{name}: {w}x{h} downscaled by {scale:.3f} to the matcher's working size ({max_side} px); tile large scenes instead"
        log.info(note)
        return _Prepared(img, valid, scale, note)
    return _Prepared(norm.image, norm.valid, 1.0, None)


def _pad_to(p: _Prepared, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    img = np.zeros((h, w), np.float32)
    valid = np.zeros((h, w), bool)
    img[: p.image.shape[0], : p.image.shape[1]] = p.image
    valid[: p.valid.shape[0], : p.valid.shape[1]] = p.valid
    return img, valid


def _to_original(xy: np.ndarray, scale: float) -> np.ndarray:
    # pixel-centre convention: x_work = (x + 0.5) * s - 0.5
    return (xy + 0.5) / scale - 0.5


class Matcher:
    """RegNetMamba-2 behind the ImageMatcher protocol."""

    name = "regnetmamba2"

    def __init__(self, model: RegNetMamba2, device: str | torch.device = "cpu", config: MatcherConfig | None = None) -> None:
        self.device = resolve_device(device) if isinstance(device, str) else device
        if self.device.type == "cpu":
            keep_freed_memory()  # 15-20 % off the time per pair on CPU (geomreg/nn/cpu_allocator.py)
        self.model = model.to(self.device).eval()
        self.config = config or MatcherConfig()

    @classmethod
    def from_pretrained(cls, device: str = "auto", config: MatcherConfig | None = None) -> "Matcher":
        """The packaged RegNetMamba-2 weights (checksum-verified). Raises CheckpointError when none are packaged."""
        from geomreg.matching.weights import packaged_is_validated

        model = load_packaged()
        validated, why = packaged_is_validated()
        if not validated:
            log.warning("%s; the CFOG-style matcher ('cfog') may register better for now", why)
        return cls(model, device, config)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str = "cpu", config: MatcherConfig | None = None) -> "Matcher":
        return cls(load_checkpoint(path), device, config)

    def match(self, ref: np.ndarray, mov: np.ndarray) -> MatchResult:
        return self.match_batch([(ref, mov)])[0]

    def memory_per_pair(self, h: int, w: int) -> int:
        """Prior for the geospatial layer's memory budget (geomreg/geo/memory.py), which then measures."""
        return memory_per_pair(h, w, self.config.max_side)

    @torch.no_grad()
    def match_batch(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[MatchResult]:
        prepared = []
        for k, (ref, mov) in enumerate(pairs):
            check_image(ref, f"ref[{k}]" if len(pairs) > 1 else "ref")
            check_image(mov, f"mov[{k}]" if len(pairs) > 1 else "mov")
            prepared.append((_prepare(ref, "ref", self.config.max_side), _prepare(mov, "mov", self.config.max_side)))
        results: list[MatchResult | None] = [None] * len(prepared)
        # Pairs whose padded working size agrees run as one batch.
        groups: dict[tuple[int, int], list[int]] = {}
        for k, (a, b) in enumerate(prepared):
            h = -(-max(a.image.shape[0], b.image.shape[0]) // 8) * 8
            w = -(-max(a.image.shape[1], b.image.shape[1]) // 8) * 8
            groups.setdefault((h, w), []).append(k)
        for (h, w), idx in groups.items():
            for s in range(0, len(idx), self.config.batch_size):
                chunk = idx[s : s + self.config.batch_size]
                for k, res in zip(chunk, self._run(prepared, chunk, h, w)):
                    results[k] = res
        return results  # type: ignore[return-value]

    def _run(self, prepared, chunk: list[int], h: int, w: int) -> list[MatchResult]:
        imgs_a, val_a, imgs_b, val_b = [], [], [], []
        for k in chunk:
            ia, va = _pad_to(prepared[k][0], h, w)
            ib, vb = _pad_to(prepared[k][1], h, w)
            imgs_a.append(ia), val_a.append(va), imgs_b.append(ib), val_b.append(vb)
        t = lambda xs: torch.from_numpy(np.stack(xs))[:, None].to(self.device)  # noqa: E731
        valid_b = t(val_b)
        with mixed_precision(self.device, self.config.precision):
            out = self.model(t(imgs_a), t(imgs_b), t(val_a), valid_b)
            out = out.matches if self.config.guide is None else guided_matches(self.model, out, valid_b, self.config.guide)
        batch = out.batch.cpu().numpy()
        xy_a, xy_b, conf = (v.float().cpu().numpy().astype(np.float64) for v in (out.xy_a, out.xy_b, out.confidence))
        results = []
        for j, k in enumerate(chunk):
            a, b = prepared[k]
            sel = (batch == j) & (conf >= self.config.min_confidence)
            ra, rb = xy_a[sel], xy_b[sel]
            # The fine stage can move a point off the moving image's valid area: drop those.
            inside = (rb[:, 0] >= -0.5) & (rb[:, 1] >= -0.5) & (rb[:, 0] <= b.image.shape[1] - 0.5) & (rb[:, 1] <= b.image.shape[0] - 0.5)
            notes = tuple(n for n in (a.note, b.note) if n)
            results.append(
                MatchResult(_to_original(ra[inside], a.scale), _to_original(rb[inside], b.scale), np.clip(conf[sel][inside], 0, 1), notes)
            )
        return results


# What "auto" picks once the weights are validated: the network's tie points, polished to sub-pixel where the
# structure allows (geomreg/matching/polish.py): the network's robustness with CFOG's precision (docs/precision.md).
AUTO_WITH_WEIGHTS = "regnetmamba2+polish"


def auto_matcher_name(checkpoint: str | Path | None = None) -> tuple[str, str]:
    """(name, why) of the matcher "auto" stands for: AUTO_WITH_WEIGHTS when a checkpoint is given or the packaged
    weights are validated (geomreg.matching.weights.packaged_is_validated), else "cfog"."""
    if checkpoint:
        return AUTO_WITH_WEIGHTS, f"checkpoint {checkpoint}"
    from geomreg.matching.weights import packaged_is_validated

    ok, why = packaged_is_validated()
    return (AUTO_WITH_WEIGHTS if ok else "cfog"), why


def get_matcher(name: str = "regnetmamba2", *, device: str = "auto", checkpoint: str | Path | None = None) -> ImageMatcher:
    """A matcher by name: "regnetmamba2" (packaged weights, or `checkpoint`), "regnetmamba2+polish" (its tie points
    each polished by CFOG where distinctive, geomreg.matching.polish), "regnetmamba2+cfog" (CFOG's own tie points
    around its model, geomreg.matching.refine), "cfog" (classical baseline), or "auto" (see auto_matcher_name)."""
    if name == "auto":
        chosen, why = auto_matcher_name(checkpoint)
        if chosen == "cfog":
            log.warning("matcher 'auto': %s; using the CFOG-style matcher", why)
        return get_matcher(chosen, device=device, checkpoint=checkpoint)
    if name == "regnetmamba2":
        return Matcher.from_checkpoint(checkpoint, device=device) if checkpoint else Matcher.from_pretrained(device=device)
    if name == "regnetmamba2+polish":
        from geomreg.matching.polish import PolishedMatcher

        return PolishedMatcher(get_matcher("regnetmamba2", device=device, checkpoint=checkpoint))
    if name == "regnetmamba2+cfog":
        from geomreg.matching.refine import RefinedMatcher

        return RefinedMatcher(get_matcher("regnetmamba2", device=device, checkpoint=checkpoint))
    if name == "cfog":
        from geomreg.matching.cfog import CFOGMatcher

        return CFOGMatcher()
    raise ValueError(f"unknown matcher {name!r}; choose one of {', '.join(MATCHER_NAMES)}")
