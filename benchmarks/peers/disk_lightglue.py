"""DISK features + LightGlue matching through kornia 0.9, as an ImageMatcher (offline weights)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from geomreg.matching.preprocess import check_image, normalize_intensity
from geomreg.matching.types import MatchResult

from .lightglue_weights import ensure_lightglue_weights


@dataclass(frozen=True)
class DiskLightGlueConfig:
    max_keypoints: int = 2048  # DISK's usual budget in the LightGlue paper's setups
    filter_threshold: float = 0.1  # LightGlue's default match threshold
    device: str = "cpu"


def _resolve_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def to_rgb_tensor(img: np.ndarray, name: str):
    """[1, 3, H, W] float32 in [0, 1]; 8-bit RGB kept as is, anything else stretched to one band and repeated."""
    import torch

    img = check_image(img, name)
    if img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] >= 3:
        arr = img[..., :3].astype(np.float32) / 255.0
    elif img.dtype == np.uint8:
        g = img if img.ndim == 2 else img[..., 0]
        arr = np.repeat((g.astype(np.float32) / 255.0)[..., None], 3, axis=2)
    else:
        g = normalize_intensity(img, name=name).image
        arr = np.repeat(g[..., None], 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))[None]


class DiskLightGlueMatcher:
    name = "disk_lightglue"

    def __init__(self, cfg: DiskLightGlueConfig = DiskLightGlueConfig(), torch_home: str | Path | None = None) -> None:
        import torch
        from kornia.feature import DISK, LightGlue

        ensure_lightglue_weights(torch_home)  # kornia then finds both files in the cache: no download
        self.cfg = cfg
        self.device = torch.device(_resolve_device(cfg.device))
        self.disk = DISK.from_pretrained("depth", device=self.device).eval()
        self.lightglue = LightGlue("disk", filter_threshold=cfg.filter_threshold).to(self.device).eval()

    def _features(self, img: np.ndarray, name: str):
        t = to_rgb_tensor(img, name).to(self.device)
        f = self.disk(t, n=self.cfg.max_keypoints, pad_if_not_divisible=True)[0]
        h, w = t.shape[-2:]
        return {
            "keypoints": f.keypoints[None],
            "descriptors": f.descriptors[None],
            "image_size": torch_tensor([[w, h]], self.device),
        }

    def match(self, ref: np.ndarray, mov: np.ndarray) -> MatchResult:
        import torch

        with torch.inference_mode():
            f0 = self._features(ref, "ref")
            f1 = self._features(mov, "mov")
            if f0["keypoints"].shape[1] == 0 or f1["keypoints"].shape[1] == 0:
                return MatchResult.empty(("disk_lightglue: no keypoints",))
            out = self.lightglue({"image0": f0, "image1": f1})
            m = out["matches"][0].cpu().numpy()
            s = out["scores"][0].float().cpu().numpy()
        if len(m) == 0:
            return MatchResult.empty(("disk_lightglue: no matches",))
        k0 = f0["keypoints"][0].cpu().numpy().astype(np.float64)
        k1 = f1["keypoints"][0].cpu().numpy().astype(np.float64)
        # DISK keypoints are heatmap pixel indices (x, y): pixel centres at integers, as in geomreg.
        return MatchResult(k0[m[:, 0]], k1[m[:, 1]], np.clip(s.astype(np.float64), 0.0, 1.0))

    def match_batch(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[MatchResult]:
        return [self.match(r, m) for r, m in pairs]


def torch_tensor(values, device):
    import torch

    return torch.tensor(values, dtype=torch.float32, device=device)
