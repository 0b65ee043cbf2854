"""Modality simulation: push an image (float32 [H, W] in [0, 1]) toward another sensor's look.

These widen what the network sees beyond the real pairs. Each keeps the geometry (structure) and
changes the radiometry the way the named sensor does.
"""

from __future__ import annotations

import cv2
import numpy as np


def sar_like(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Multiplicative speckle (gamma, L looks), bright point scatterers, log/dB compression, a random remap."""
    looks = rng.uniform(1.0, 4.0)
    reflect = _random_monotone(img, rng) ** rng.uniform(1.0, 2.5) + 0.02
    amp = reflect * rng.gamma(looks, 1.0 / looks, size=img.shape)
    n_scatter = int(rng.uniform(0, 0.002) * img.size)
    if n_scatter:
        ys, xs = rng.integers(0, img.shape[0], n_scatter), rng.integers(0, img.shape[1], n_scatter)
        amp[ys, xs] += rng.uniform(5, 30, n_scatter)
    db = np.log10(amp + 1e-3)
    return _stretch(cv2.GaussianBlur(db.astype(np.float32), (0, 0), rng.uniform(0.3, 0.8)))


def thermal_like(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random non-monotonic intensity remap (materials swap brightness order), blur and sensor noise."""
    x = np.linspace(0, 1, 6)
    y = rng.uniform(0, 1, 6)
    out = np.interp(img, x, y).astype(np.float32)
    out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.8, 2.0))
    out += rng.normal(0, rng.uniform(0.0, 0.03), img.shape).astype(np.float32)
    return _stretch(out)


def nir_like(rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Band mixing of an RGB image (vegetation bright in NIR: weight green up, blue down) plus a gamma."""
    w = rng.dirichlet([1.0, 3.0, 0.5]) * rng.uniform(0.8, 1.3)
    mixed = rgb[..., 0] * w[0] + rgb[..., 1] * w[1] + rgb[..., 2] * w[2] + rng.uniform(-0.3, 0.3) * (rgb[..., 1] - rgb[..., 0])
    return _stretch(np.clip(mixed, 0, None) ** rng.uniform(0.6, 1.5))


def photometric(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mild changes of any sensor: gamma, contrast inversion sometimes, noise."""
    out = img ** rng.uniform(0.6, 1.6)
    if rng.random() < 0.2:
        out = 1.0 - out
    out = out + rng.normal(0, rng.uniform(0, 0.02), img.shape)
    return _stretch(out.astype(np.float32))


def simulate(img: np.ndarray, rgb: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """One random simulated modality."""
    kinds = ["sar", "thermal", "photometric"] + (["nir"] if rgb is not None else [])
    kind = kinds[rng.integers(len(kinds))]
    if kind == "sar":
        return sar_like(img, rng)
    if kind == "thermal":
        return thermal_like(img, rng)
    if kind == "nir":
        return nir_like(rgb, rng)
    return photometric(img, rng)


def _random_monotone(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    x = np.linspace(0, 1, 5)
    y = np.sort(rng.uniform(0, 1, 5))
    y = (y - y[0]) / max(y[-1] - y[0], 1e-3)
    return np.interp(img, x, y)


def _stretch(a: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(a, (1, 99))
    return np.clip((a - lo) / max(hi - lo, 1e-6), 0, 1).astype(np.float32)
