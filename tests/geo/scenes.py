"""Synthetic georeferenced scene pairs built from the real Landsat-8 texture of the bundled sample.

A moving scene is made by choosing its grid (CRS, pixel size, extent) and a known map transform T
(moving map coordinates, in the reference CRS -> true map coordinates), then sampling the real
texture at T(map(pixel)) for every moving pixel. Registration must then find T.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import rasterio
from rasterio.crs import CRS

from geomreg.geo.io import Grid, to_crs

MapFn = Callable[[np.ndarray], np.ndarray]  # [N, 2] -> [N, 2], reference CRS


@dataclass(frozen=True)
class Texture:
    image: np.ndarray  # float64, real Landsat-8 red band
    grid: Grid  # its true georeferencing


def write_raster(path: Path, data: np.ndarray, grid: Grid | None, nodata=None, dtype="uint16", crs_none: bool = False) -> Path:
    data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    kw = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0], dtype=dtype,
              tiled=True, blockxsize=128, blockysize=128, compress="deflate")
    if grid is not None and not crs_none:
        kw.update(crs=CRS.from_wkt(grid.crs), transform=grid.affine)
    elif grid is not None:
        kw.update(transform=grid.affine)
    if nodata is not None:
        kw["nodata"] = nodata
    with rasterio.open(path, "w", **kw) as ds:
        ds.write(data.astype(dtype))
    return path


def reference_scene(tmp: Path, tex: Texture, margin: int = 128, size: int = 384, name: str = "ref.tif") -> tuple[Path, Grid]:
    g = tex.grid.window_grid((margin, margin, size, size))
    img = tex.image[margin : margin + size, margin : margin + size]
    return write_raster(tmp / name, np.clip(img, 1, 65535), g), g


def moving_scene(
    tmp: Path, tex: Texture, grid: Grid, T: MapFn, name: str = "mov.tif", modality: Callable[[np.ndarray], np.ndarray] | None = None,
    nodata_mask: np.ndarray | None = None,
) -> Path:
    """Sample the texture for every pixel of `grid`: pixel -> claimed map (grid CRS) -> reference CRS -> T -> texture."""
    cols, rows = np.meshgrid(np.arange(grid.width, dtype=np.float64), np.arange(grid.height, dtype=np.float64))
    claimed = to_crs(grid.px_to_map(np.c_[cols.ravel(), rows.ravel()]), grid.crs, tex.grid.crs)
    tx = tex.grid.map_to_px(T(claimed)).astype(np.float32)
    mx, my = tx[:, 0].reshape(cols.shape), tx[:, 1].reshape(cols.shape)
    img = cv2.remap(tex.image.astype(np.float32), mx, my, cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    inside = (mx >= 1) & (my >= 1) & (mx <= tex.image.shape[1] - 2) & (my <= tex.image.shape[0] - 2)
    img = img.astype(np.float64)
    if modality is not None:
        img = modality(img)
    img = np.clip(img, 1, 65535)
    img[~inside] = 0
    if nodata_mask is not None:
        img[nodata_mask] = 0
    return write_raster(tmp / name, img, grid, nodata=0)


def truth_error_px(reg, T: MapFn, n: int = 9, shrink: float = 0.15) -> float:
    """RMSE (reference pixels) of reg.map_to_reference against T over a grid inside the overlap."""
    x0, y0, x1, y1 = reg.plan.overlap.bounds
    dx, dy = (x1 - x0) * shrink, (y1 - y0) * shrink
    gx, gy = np.meshgrid(np.linspace(x0 + dx, x1 - dx, n), np.linspace(y0 + dy, y1 - dy, n))
    ex, ey = reg.map_to_reference(gx, gy)
    t = T(np.c_[gx.ravel(), gy.ravel()])
    err = np.hypot(ex.ravel() - t[:, 0], ey.ravel() - t[:, 1]) / reg.plan.reference.grid.res
    return float(np.sqrt(np.mean(err**2)))


def sample_crops(tmp: Path, size: int = 384) -> tuple[Path, Path]:
    """size x size crops of the bundled pair (real Landsat-8 reference, SIMULATED SAR-like moving scene), each
    keeping its own georeferencing: the moving crop stays off by the sample's known offset (truth.json), and the
    two overlap by about (size - 64) px. Small enough for the network to register in one tile."""
    from rasterio.windows import Window

    from geomreg.geo.sample import sample_pair

    pair = sample_pair()
    out = []
    for src, offset, name in ((pair.reference, 128, "sample_ref.tif"), (pair.moving, 64, "sample_mov.tif")):
        with rasterio.open(src) as ds:
            window = Window(offset, offset, size, size)
            profile = dict(ds.profile, width=size, height=size, transform=ds.window_transform(window))
            data = ds.read(window=window)
        with rasterio.open(tmp / name, "w", **profile) as dst:
            dst.write(data)
        out.append(tmp / name)
    return out[0], out[1]


def shift(dx: float, dy: float) -> MapFn:
    return lambda xy: xy + np.array([dx, dy])


def affine_about(centre: np.ndarray, angle_deg: float, scale: float, dx: float, dy: float) -> MapFn:
    a = np.deg2rad(angle_deg)
    R = scale * np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return lambda xy: (xy - centre) @ R.T + centre + np.array([dx, dy])


def inverted(img: np.ndarray) -> np.ndarray:
    """A crude modality change: contrast reversal with a gamma (a matcher on raw intensities would fail)."""
    v = img[img > 0]
    lo, hi = np.percentile(v, [1, 99]) if v.size else (0, 1)
    x = np.clip((img - lo) / (hi - lo), 0, 1)
    return 1000 + 20000 * (1 - x) ** 1.6


__all__ = ["Texture", "write_raster", "reference_scene", "moving_scene", "truth_error_px", "sample_crops", "shift", "affine_about", "inverted"]
