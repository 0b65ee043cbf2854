"""Display images of a registration: the reference and the moving scene on one display grid.

The display grid is a window of the reference grid (by default the footprint overlap), decimated so
that its longest side stays under `max_side`: what a figure shows never needs a whole large scene in
memory. The moving scene is brought onto it twice: with its own georeferencing ("before") and with
the fitted correction ("after"), the same mapping `Registration.write` resamples with.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import rasterio
from rasterio.enums import Resampling

from geomreg.geo.io import Grid, RasterSource, apply_stretch, read_window, to_crs
from geomreg.geo.registration import Registration
from geomreg.geo.tiling import polygon_px_bounds
from geomreg.matching.preprocess import normalize_intensity

Window = tuple[int, int, int, int]  # col, row, width, height (reference pixels)

_COORD_STEP = 8  # display pixels between exact evaluations of the mapping (bilinear in between)


@dataclass(frozen=True, eq=False)
class DisplayImages:
    """Co-located display images, float32 in [0, 1] with NaN where a scene has no data."""

    reference: np.ndarray
    before: np.ndarray  # moving scene placed by its own georeferencing
    after: np.ndarray | None  # moving scene placed by the registration (None when it failed)
    grid: Grid  # the display grid (reference CRS)
    title: str = ""

    @property
    def extent(self) -> tuple[float, float, float, float]:
        return grid_extent(self.grid)


def grid_extent(grid: Grid) -> tuple[float, float, float, float]:
    """(left, right, bottom, top) of a grid's outer pixel edges, for imshow(extent=...)."""
    (x0, y0), (x1, y1) = grid.px_to_map(np.array([[-0.5, -0.5], [grid.width - 0.5, grid.height - 0.5]]))
    return float(x0), float(x1), float(y1), float(y0)


def stretch(img: np.ndarray, name: str = "image") -> np.ndarray:
    """Any 2-D (or H x W x C) array -> float32 [0, 1], NaN where invalid (percentile stretch, SAR-aware)."""
    arr = np.asarray(img)
    if arr.ndim == 3:
        arr = arr.astype(np.float64).mean(axis=2)
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D image, got shape {np.shape(img)}")
    if arr.dtype.kind == "f":
        fin = arr[np.isfinite(arr)]
        if fin.size == 0 or (fin.min() >= 0.0 and fin.max() <= 1.0):
            return arr.astype(np.float32)  # already a display image (or nothing to show)
    n = normalize_intensity(arr, name=name)
    out = n.image.astype(np.float32, copy=True)
    out[~n.valid] = np.nan
    return out


def display_grid(reg: Registration, window: Window | None = None, max_side: int = 800) -> Grid:
    """A window of the reference grid (default: the overlap's bounding box), decimated to max_side."""
    ref = reg.plan.reference.grid
    if window is None:
        b = polygon_px_bounds(ref, reg.plan.overlap)
        if b is None:  # cannot happen for a planned registration; the whole reference then
            b = (0, 0, ref.width, ref.height)
        window = (b[0], b[1], b[2] - b[0], b[3] - b[1])
    c, r, w, h = (int(v) for v in window)
    c0, r0, c1, r1 = max(c, 0), max(r, 0), min(c + w, ref.width), min(r + h, ref.height)
    if c1 <= c0 or r1 <= r0:
        raise ValueError(f"window {window} lies outside the reference grid ({ref.width} x {ref.height} px)")
    g = ref.window_grid((c0, r0, c1 - c0, r1 - r0))
    f = max(g.width, g.height) / float(max_side)
    return g.scaled(f) if f > 1.0 else g


def _read(src: RasterSource, grid: Grid) -> np.ndarray:
    with rasterio.open(src.path) as ds:
        img, valid = read_window(ds, src, grid, (0, 0, grid.width, grid.height), Resampling.average)
    if src.stretch is None:
        return stretch(np.where(valid, img, np.nan), src.role)
    return apply_stretch(img, valid, src.stretch)


def reference_on_grid(reg: Registration, grid: Grid) -> np.ndarray:
    """The reference scene on `grid`, stretched as the matcher saw it."""
    return _read(reg.plan.reference, grid)


def _knots(n: int, step: int) -> np.ndarray:
    return np.unique(np.r_[np.arange(0, n, step), n - 1]).astype(np.float64)


def _interp_weights(knots: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(n, dtype=np.float64)
    if len(knots) == 1:
        return np.zeros(n, dtype=np.int64), np.zeros(n)
    i = np.clip(np.searchsorted(knots, t, side="right") - 1, 0, len(knots) - 2)
    return i, (t - knots[i]) / (knots[i + 1] - knots[i])


def _bilinear(values: np.ndarray, ys: np.ndarray, xs: np.ndarray, h: int, w: int) -> np.ndarray:
    iy, ty = _interp_weights(ys, h)
    ix, tx = _interp_weights(xs, w)
    v = values
    if len(ys) > 1:
        v = v[iy] * (1 - ty)[:, None] + v[iy + 1] * ty[:, None]
    else:
        v = np.repeat(v[:1], h, axis=0)
    if len(xs) > 1:
        return v[:, ix] * (1 - tx)[None, :] + v[:, ix + 1] * tx[None, :]
    return np.repeat(v[:, :1], w, axis=1)


def _moving_coordinates(reg: Registration, grid: Grid, corrected: bool) -> tuple[np.ndarray, np.ndarray]:
    """Map coordinates (moving CRS) of the moving-scene point shown at every display pixel."""
    plan = reg.plan
    xs, ys = _knots(grid.width, _COORD_STEP), _knots(grid.height, _COORD_STEP)
    gx, gy = np.meshgrid(xs, ys)
    ref_map = grid.px_to_map(np.c_[gx.ravel(), gy.ravel()])
    if corrected:
        # reference_to_moving: where the moving scene's own georeferencing puts the point the
        # reference shows here, i.e. the inverse of the registration's correction.
        mx, my = reg.reference_to_moving(ref_map[:, 0], ref_map[:, 1])
        ref_map = np.c_[mx, my]
    mov_map = to_crs(ref_map, plan.grid.crs, plan.moving.grid.crs)
    X = _bilinear(mov_map[:, 0].reshape(gx.shape), ys, xs, grid.height, grid.width)
    Y = _bilinear(mov_map[:, 1].reshape(gx.shape), ys, xs, grid.height, grid.width)
    return X, Y


def moving_on_grid(reg: Registration, grid: Grid, corrected: bool = True) -> np.ndarray:
    """The moving scene on `grid`: with the registration applied, or (corrected=False) as georeferenced."""
    if corrected and not reg.ok:
        raise ValueError(f"registration failed ({reg.reason}): there is no corrected moving scene to show")
    src = reg.plan.moving
    X, Y = _moving_coordinates(reg, grid, corrected)
    px = src.grid.map_to_px(np.c_[X.ravel(), Y.ravel()])
    fin = np.isfinite(px).all(axis=1)
    out = np.full((grid.height, grid.width), np.nan, np.float32)
    if not fin.any():
        return out
    W, H = src.grid.width, src.grid.height
    c0 = max(int(math.floor(px[fin, 0].min())) - 2, 0)
    r0 = max(int(math.floor(px[fin, 1].min())) - 2, 0)
    c1 = min(int(math.ceil(px[fin, 0].max())) + 3, W)
    r1 = min(int(math.ceil(px[fin, 1].max())) + 3, H)
    if c1 <= c0 or r1 <= r0:
        return out  # the display window shows none of the moving scene
    # Read only the window the display needs, decimated to about the display's resolution.
    s = max(1, int(min((c1 - c0) / grid.width, (r1 - r0) / grid.height)))
    sub = src.grid.window_grid((c0, r0, c1 - c0, r1 - r0))
    sub = sub.scaled(s) if s > 1 else sub
    img = _read(src, sub)
    uv = sub.map_to_px(np.c_[X.ravel(), Y.ravel()])
    uv[~np.isfinite(uv).all(axis=1)] = -1e6
    u = uv[:, 0].reshape(X.shape).astype(np.float32)
    v = uv[:, 1].reshape(X.shape).astype(np.float32)
    # NaN (no data) propagates through the bilinear kernel: edges of no-data stay no-data.
    return cv2.remap(img, u, v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=float("nan"))


def display_images(reg: Registration, window: Window | None = None, max_side: int = 800) -> DisplayImages:
    """Reference, moving before and (when registered) moving after, on one display grid."""
    grid = display_grid(reg, window, max_side)
    after = moving_on_grid(reg, grid, corrected=True) if reg.ok else None
    title = f"{reg.transform_kind}, RMSE {reg.rmse:.2f} px" if reg.ok else f"failed: {reg.reason}"
    return DisplayImages(reference_on_grid(reg, grid), moving_on_grid(reg, grid, corrected=False), after, grid, title)
