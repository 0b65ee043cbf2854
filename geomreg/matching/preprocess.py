"""Robust intensity normalisation of arbitrary raster arrays (optical, SAR amplitude or dB, IR, ...)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# A float image whose upper tail is this many times its median is treated as SAR amplitude/intensity:
# such speckled, heavy-tailed data only becomes comparable to optical structure on a log scale.
_HEAVY_TAIL_RATIO = 8.0


@dataclass(frozen=True)
class NormalizedImage:
    image: np.ndarray  # [H, W] float32 in [0, 1]
    valid: np.ndarray  # [H, W] bool, False on NaN / nodata / outside the footprint
    log_scaled: bool


def check_image(arr: np.ndarray, name: str) -> np.ndarray:
    """Validate an input array; return it as HxW or HxWxC. Raises ValueError naming the problem."""
    if not isinstance(arr, np.ndarray):
        raise ValueError(f"{name}: expected a numpy array, got {type(arr).__name__}")
    if arr.ndim not in (2, 3):
        raise ValueError(f"{name}: expected an HxW or HxWxC array, got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0 or arr.size == 0:
        raise ValueError(f"{name}: empty image (shape {arr.shape})")
    if arr.ndim == 3 and arr.shape[2] > 16:
        raise ValueError(f"{name}: {arr.shape[2]} channels in the last axis; expected HxWxC with C <= 16 (is it CxHxW?)")
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.number)):
        raise ValueError(f"{name}: unsupported dtype {arr.dtype}; expected an integer, float or complex array")
    return arr


def to_single_band(arr: np.ndarray) -> np.ndarray:
    """HxWxC -> HxW float64: complex -> amplitude, RGB(A) -> luminance, other stacks -> mean."""
    a = np.abs(arr) if np.iscomplexobj(arr) else arr
    a = a.astype(np.float64, copy=False)
    if a.ndim == 2:
        return a
    c = a.shape[2]
    if c == 1:
        return a[..., 0]
    if c in (3, 4):
        return a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114
    return a.mean(axis=2)


def _looks_like_sar_amplitude(values: np.ndarray, integer_input: bool) -> bool:
    if values.size < 16 or values.min() < 0:
        return False  # negative values: already in dB (or not amplitude)
    med = np.median(values)
    if med <= 0:
        return False
    p99 = np.percentile(values, 99.5)
    if integer_input and values.max() <= 255:
        return False  # 8-bit imagery is display-scaled already
    return p99 / med > _HEAVY_TAIL_RATIO


def normalize_intensity(
    arr: np.ndarray,
    *,
    nodata: float | None = None,
    valid: np.ndarray | None = None,
    log_scale: bool | None = None,
    percentiles: tuple[float, float] = (1.0, 99.0),
    name: str = "image",
) -> NormalizedImage:
    """Map any raster to float32 [0, 1] with a percentile stretch over its valid pixels.

    log_scale: None detects heavy-tailed (SAR amplitude/intensity) data and log-scales it.
    """
    arr = check_image(arr, name)
    integer_input = np.issubdtype(arr.dtype, np.integer)
    mask = np.ones(arr.shape[:2], dtype=bool) if valid is None else valid.astype(bool).copy()
    if mask.shape != arr.shape[:2]:
        raise ValueError(f"{name}: valid mask shape {mask.shape} does not match image shape {arr.shape[:2]}")
    if nodata is not None:
        raw = arr if arr.ndim == 2 else arr
        eq = raw == nodata if not np.isnan(nodata) else np.isnan(raw)
        mask &= ~(eq.all(axis=2) if eq.ndim == 3 else eq)
    img = to_single_band(arr)
    mask &= np.isfinite(img)
    if not mask.any():
        return NormalizedImage(np.zeros(img.shape, np.float32), mask, False)
    values = img[mask]
    do_log = _looks_like_sar_amplitude(values, integer_input) if log_scale is None else log_scale
    if do_log:
        floor = max(np.percentile(values, 0.5), 1e-6) if values.max() > 0 else 1e-6
        img = np.log(np.maximum(img, floor))
        values = img[mask]
    lo, hi = np.percentile(values, percentiles)
    if hi - lo < 1e-12:
        out = np.zeros(img.shape, np.float32)
    else:
        out = np.clip((img - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    out[~mask] = 0.0
    return NormalizedImage(out, mask, bool(do_log))
