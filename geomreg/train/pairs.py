"""Training instances: crops of real pairs under random homographies, so every instance has an exact
dense correspondence A -> B, optionally with one side pushed to a simulated modality."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace

import cv2
import numpy as np

from geomreg.data.manifest import PairRecord, load_pair
from geomreg.matching.preprocess import normalize_intensity
from geomreg.train.simulate import simulate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WarpRange:
    """Random homography magnitudes; the curriculum scales them from small to full."""

    rotation_deg: float = 12.0
    scale: float = 0.15  # log-uniform in [1/(1+s), 1+s]
    translation: float = 0.10  # fraction of the crop size
    perspective: float = 2e-4

    def scaled(self, f: float) -> "WarpRange":
        return WarpRange(self.rotation_deg * f, self.scale * f, self.translation * f, self.perspective * f)


@dataclass(frozen=True)
class Instance:
    img_a: np.ndarray  # [S, S] float32 in [0, 1]
    img_b: np.ndarray
    valid_a: np.ndarray  # [S, S] bool
    valid_b: np.ndarray
    H_ab: np.ndarray  # [3, 3] A pixel -> B pixel
    modality: str
    exact: bool = False  # H_ab is exact to the pixel (a self pair), not only as good as the pair's ground truth
    # The pair's ground truth was re-estimated by the structural audit (geomreg.data.gt_audit): good to about
    # a pixel, so its fine targets are trusted like a self pair's, unlike SRIF's own few-pixel ground truth.
    audited: bool = False


# Images are cached at most this large (longest side): 1,500 pairs must fit in memory as uint8.
CACHE_MAX_SIDE = 512


@dataclass
class CachedPair:
    record: PairRecord
    ref: np.ndarray  # uint8 [H, W], normalised grey
    mov: np.ndarray
    ref_rgb: np.ndarray | None  # uint8 [H, W, 3] when the source is colour
    mov_rgb: np.ndarray | None
    ref_valid: np.ndarray
    mov_valid: np.ndarray
    H_mov_to_ref: np.ndarray


def nodata_mask(gray: np.ndarray) -> np.ndarray:
    """Valid pixels: not inside a black no-data wedge (a fully black 7x7 neighbourhood, e.g. from rotation)."""
    dark = (gray <= 2.0 / 255.0).astype(np.float32)
    return cv2.blur(dark, (7, 7)) < 0.999


def shrink(img: np.ndarray, max_side: int = CACHE_MAX_SIDE) -> tuple[np.ndarray, np.ndarray]:
    """Downscale to max_side (longest side); returns the image and the pixel map old -> new (centre convention)."""
    h, w = img.shape[:2]
    s = min(1.0, max_side / max(h, w))
    if s == 1.0:
        return img, np.eye(3)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    sx, sy = size[0] / w, size[1] / h
    S = np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5], [0, 0, 1.0]])
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA), S


def _to_cache(img: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    img, S = shrink(img)
    gray = (normalize_intensity(img, percentiles=(0.5, 99.5)).image * 255).round().astype(np.uint8)
    rgb = img[..., :3].copy() if img.ndim == 3 and img.shape[2] >= 3 and img.dtype == np.uint8 else None
    return gray, rgb, S


def cache_pair(rec: PairRecord) -> CachedPair:
    ref, mov, H = load_pair(rec)
    ref_g, ref_rgb, S_ref = _to_cache(ref)
    mov_g, mov_rgb, S_mov = _to_cache(mov)
    H = S_ref @ H @ np.linalg.inv(S_mov)
    return CachedPair(rec, ref_g, mov_g, ref_rgb, mov_rgb, nodata_mask(ref_g / 255.0), nodata_mask(mov_g / 255.0), H / H[2, 2])


def random_homography(size: int, rng: np.random.Generator, r: WarpRange) -> np.ndarray:
    """A homography about the crop centre: rotation, scale, translation and a mild perspective."""
    c = (size - 1) / 2.0
    th = np.deg2rad(rng.uniform(-r.rotation_deg, r.rotation_deg))
    s = np.exp(rng.uniform(-np.log1p(r.scale), np.log1p(r.scale)))
    tx, ty = rng.uniform(-r.translation, r.translation, 2) * size
    px, py = rng.uniform(-r.perspective, r.perspective, 2)
    T0 = np.array([[1, 0, -c], [0, 1, -c], [0, 0, 1.0]])
    RS = np.array([[s * np.cos(th), -s * np.sin(th), 0], [s * np.sin(th), s * np.cos(th), 0], [px, py, 1.0]])
    T1 = np.array([[1, 0, c + tx], [0, 1, c + ty], [0, 0, 1.0]])
    H = T1 @ RS @ T0
    return H / H[2, 2]


def _warp(img: np.ndarray, M: np.ndarray, size: int, nearest: bool = False) -> np.ndarray:
    flags = (cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR) | cv2.WARP_INVERSE_MAP
    return cv2.warpPerspective(img, np.linalg.inv(M), (size, size), flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def self_pair(pair: CachedPair, use_mov: bool) -> CachedPair:
    """One image of the pair (the reference, or the moving one) paired with itself under the identity."""
    img, rgb, valid = (pair.mov, pair.mov_rgb, pair.mov_valid) if use_mov else (pair.ref, pair.ref_rgb, pair.ref_valid)
    return CachedPair(pair.record, img, img, rgb, rgb, valid, valid, np.eye(3))


def make_self_instance(pair: CachedPair, size: int, rng: np.random.Generator, warp: WarpRange, *, scale_span: float = 2.0) -> Instance:
    """A self pair under a random homography, one side always pushed to a simulated modality (exact ground truth)."""
    inst = make_instance(self_pair(pair, rng.random() < 0.5), size, rng, warp, simulate_prob=1.0, scale_span=scale_span)
    return replace(inst, exact=True, audited=False)


def make_instance(
    pair: CachedPair,
    size: int,
    rng: np.random.Generator,
    warp: WarpRange,
    *,
    simulate_prob: float = 0.0,
    swap: bool = False,
    scale_span: float = 2.0,
) -> Instance:
    """A = a crop of the reference (random scale/offset), B = the moving image seen through H_ab.

    The crop sees the image at a scale drawn uniformly between "the whole image fits" and `scale_span`
    times that (capped at the cached resolution). Validation keeps the default span; training may widen it
    so that small crops also see the native resolution the matcher is run at.
    """
    ref, mov, H_m2r = pair.ref, pair.mov, pair.H_mov_to_ref
    ref_rgb, mov_rgb, ref_valid, mov_valid = pair.ref_rgb, pair.mov_rgb, pair.ref_valid, pair.mov_valid
    if swap:  # the network must work with either modality first
        ref, mov, H_m2r = mov, ref, np.linalg.inv(H_m2r)
        ref_rgb, mov_rgb, ref_valid, mov_valid = mov_rgb, ref_rgb, mov_valid, ref_valid
    h, w = ref.shape
    # Crop of the reference: a random scale so that large images are seen at several resolutions.
    lo = min(1.0, size / min(h, w))
    s = rng.uniform(lo, min(1.0, lo * scale_span)) if lo < 1.0 else lo
    ox = rng.uniform(0, max(w * s - size, 0))
    oy = rng.uniform(0, max(h * s - size, 0))
    # pixel-centre convention: x' = (x + 0.5) * s - 0.5 - offset
    M_a = np.array([[s, 0, 0.5 * s - 0.5 - ox], [0, s, 0.5 * s - 0.5 - oy], [0, 0, 1.0]])
    H_ab = random_homography(size, rng, warp)
    M_b = H_ab @ M_a @ H_m2r  # mov pixel -> B pixel

    img_a = _warp(ref, M_a, size).astype(np.float32) / 255.0
    img_b = _warp(mov, M_b, size).astype(np.float32) / 255.0
    valid_a = _warp(ref_valid.astype(np.uint8), M_a, size, nearest=True) > 0
    valid_b = _warp(mov_valid.astype(np.uint8), M_b, size, nearest=True) > 0
    if rng.random() < simulate_prob:
        if rng.random() < 0.5:
            rgb = _warp(ref_rgb, M_a, size).astype(np.float32) / 255.0 if ref_rgb is not None else None
            img_a = simulate(img_a, rgb, rng)
        else:
            rgb = _warp(mov_rgb, M_b, size).astype(np.float32) / 255.0 if mov_rgb is not None else None
            img_b = simulate(img_b, rgb, rng)
    img_a = np.where(valid_a, img_a, 0).astype(np.float32)
    img_b = np.where(valid_b, img_b, 0).astype(np.float32)
    return Instance(img_a, img_b, valid_a, valid_b, H_ab, pair.record.modality, audited=pair.record.h_fixed is not None)
