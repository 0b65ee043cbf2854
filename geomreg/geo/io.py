"""Raster input: validation, band handling, and windowed reads onto a working grid.

Memory stays bounded whatever the scene size: everything here reads one window at a time, either
directly (the working grid is the raster's own grid, shifted by whole pixels) or through a GDAL
WarpedVRT built for exactly that window (another CRS, resolution or sub-pixel alignment).
"""

from __future__ import annotations

import functools
import logging
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterator

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Resampling
from rasterio.errors import RasterioError, RasterioIOError
from rasterio.transform import Affine
from rasterio.vrt import WarpedVRT
from rasterio.windows import Window

from geomreg.geo.errors import InputError

log = logging.getLogger(__name__)

# Luminance weights (ITU-R BT.601), the same as geomreg.matching.preprocess.to_single_band.
_LUMA = np.array([0.299, 0.587, 0.114])


# --------------------------------------------------------------------------------------------
# Grids
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grid:
    """A pixel grid: CRS (WKT, or None in pixel mode), affine geotransform (6 GDAL-order-free coefs), size.

    Pixel coordinates follow the matchers' convention: x = column, y = row, origin at the centre of
    the top-left pixel. Map coordinates of pixel (x, y) are transform * (x + 0.5, y + 0.5).
    """

    crs: str | None
    transform: tuple[float, float, float, float, float, float]  # Affine a, b, c, d, e, f
    width: int
    height: int

    @property
    def affine(self) -> Affine:
        return Affine(*self.transform)

    @property
    def rio_crs(self) -> CRS | None:
        return None if self.crs is None else CRS.from_wkt(self.crs)

    @property
    def res(self) -> float:
        """Pixel size (geometric mean of the two axes) in map units."""
        a = self.affine
        return math.sqrt(abs(a.a * a.e - a.b * a.d))

    def px_to_map(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        t = self.transform
        x, y = xy[:, 0] + 0.5, xy[:, 1] + 0.5
        return np.stack([t[0] * x + t[1] * y + t[2], t[3] * x + t[4] * y + t[5]], axis=1)

    def map_to_px(self, xy: np.ndarray) -> np.ndarray:
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        inv = ~self.affine
        x = inv.a * xy[:, 0] + inv.b * xy[:, 1] + inv.c - 0.5
        y = inv.d * xy[:, 0] + inv.e * xy[:, 1] + inv.f - 0.5
        return np.stack([x, y], axis=1)

    def window_grid(self, window: tuple[int, int, int, int]) -> "Grid":
        col, row, w, h = window
        return Grid(self.crs, tuple((self.affine @ Affine.translation(col, row))[:6]), int(w), int(h))

    def scaled(self, factor: float) -> "Grid":
        """The same extent with pixels `factor` times larger."""
        a = self.affine @ Affine.scale(factor)
        return Grid(self.crs, tuple(a[:6]), max(1, math.ceil(self.width / factor)), max(1, math.ceil(self.height / factor)))

    @classmethod
    def of_dataset(cls, ds: rasterio.io.DatasetReader) -> "Grid":
        return cls(None if ds.crs is None else ds.crs.to_wkt(), tuple(ds.transform[:6]), ds.width, ds.height)


def same_crs(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a == b or CRS.from_wkt(a) == CRS.from_wkt(b)


def integer_offset(src: Grid, dst: Grid, tol: float = 1e-6) -> tuple[int, int] | None:
    """(dcol, drow) such that dst pixel (c, r) is src pixel (c + dcol, r + drow), or None if not so aligned."""
    if not same_crs(src.crs, dst.crs):
        return None
    a, b = src.affine, dst.affine
    if any(abs(u - v) > tol * max(1.0, abs(u)) for u, v in zip((a.a, a.b, a.d, a.e), (b.a, b.b, b.d, b.e))):
        return None
    col, row = ~a @ (b.c, b.f)
    rc, rr = round(col), round(row)
    if abs(col - rc) > 1e-4 or abs(row - rr) > 1e-4:
        return None
    return int(rc), int(rr)


# --------------------------------------------------------------------------------------------
# Sources
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Stretch:
    """Scene-wide intensity mapping, decided once from an overview so that every tile is comparable."""

    log: bool
    lo: float
    hi: float


@dataclass(frozen=True)
class RasterSource:
    """Everything a worker needs to read one input (small and picklable; no open handles)."""

    path: str
    role: str  # "reference" or "moving"
    grid: Grid
    count: int
    dtype: str
    nodata: float | None
    bands: tuple[int, ...]  # 1-based band indexes read
    combine: str  # "single", "luminance" or "mean"
    is_complex: bool
    stretch: Stretch | None = None

    def with_stretch(self, stretch: Stretch) -> "RasterSource":
        return replace(self, stretch=stretch)


def _band_selection(ds: rasterio.io.DatasetReader, band: int | str, path: str) -> tuple[tuple[int, ...], str]:
    n = ds.count
    sel = band
    if isinstance(sel, str) and sel.strip().lstrip("-").isdigit():
        sel = int(sel)
    if isinstance(sel, bool) or not isinstance(sel, (int, str)):
        raise InputError(f"unsupported band selection {band!r}: use auto, luminance, mean or a band number 1..{n}", path)
    if isinstance(sel, int):
        if not 1 <= sel <= n:
            raise InputError(f"unsupported band selection {band!r}: the raster has {n} band(s), numbered 1..{n}", path)
        return (sel,), "single"
    sel = sel.strip().lower()
    if sel == "luminance":
        if n < 3:
            raise InputError(f"unsupported band selection 'luminance': needs 3 (RGB) bands, the raster has {n}", path)
        return (1, 2, 3), "luminance"
    if sel == "mean":
        return tuple(range(1, n + 1)), "mean" if n > 1 else "single"
    if sel == "auto":
        if n in (3, 4) and (n == 3 or ds.colorinterp[3] in (ColorInterp.alpha, ColorInterp.undefined)):
            return (1, 2, 3), "luminance"  # an RGB(A) image: luminance keeps the structure of all three
        if n != 1:
            log.info("%s: %d bands, using band 1 (choose another with a band option)", path, n)
        return (1,), "single"
    raise InputError(f"unsupported band selection {band!r}: use auto, luminance, mean or a band number 1..{n}", path)


def inspect_raster(path: str | os.PathLike, role: str, band: int | str = "auto", pixel_mode: bool = False) -> RasterSource:
    """Open and validate an input raster; raise InputError naming the file and the problem."""
    p = str(path)
    if not os.path.exists(p) and "://" not in p and not p.startswith("/vsi"):
        raise InputError(f"{role} file not found", p)
    if os.path.isdir(p):
        raise InputError(f"{role} path is a directory, not a raster file", p)
    if os.path.exists(p) and not os.access(p, os.R_OK):
        raise InputError(f"{role} file is not readable (permission denied)", p)
    try:
        with rasterio.open(p) as ds:
            grid = Grid.of_dataset(ds)
            if ds.crs is None and not pixel_mode:
                raise InputError(
                    f"{role} raster has no CRS (no georeferencing); pass pixel mode (--pixel-mode / pixel_mode=True) "
                    "to register pixel grids directly",
                    p,
                )
            if ds.width < 2 or ds.height < 2 or ds.count < 1:
                raise InputError(f"{role} raster is empty ({ds.width}x{ds.height}, {ds.count} bands)", p)
            bands, combine = _band_selection(ds, band, p)
            dtype = ds.dtypes[bands[0] - 1]
            return RasterSource(
                path=p, role=role, grid=grid, count=ds.count, dtype=dtype,
                nodata=None if ds.nodata is None else float(ds.nodata),
                bands=bands, combine=combine, is_complex=np.issubdtype(np.dtype(dtype), np.complexfloating),
            )
    except InputError:
        raise
    except RasterioIOError as e:
        raise InputError(f"{role} file is not a readable raster (corrupt or unsupported format): {e}", p) from None
    except (RasterioError, OSError, ValueError) as e:
        raise InputError(f"{role} raster cannot be opened: {e}", p) from None


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _combine(data: np.ndarray, combine: str) -> np.ndarray:
    """[B, H, W] -> [H, W] float64: complex -> amplitude, then single band / luminance / mean."""
    a = np.abs(data) if np.iscomplexobj(data) else data
    a = a.astype(np.float64, copy=False)
    if combine == "luminance":
        return np.tensordot(_LUMA, a[:3], axes=1)
    if combine == "mean":
        return a.mean(axis=0)
    return a[0]


def read_window(
    ds: rasterio.io.DatasetReader,
    src: RasterSource,
    grid: Grid,
    window: tuple[int, int, int, int],
    resampling: Resampling = Resampling.bilinear,
) -> tuple[np.ndarray, np.ndarray]:
    """Read `window` of `grid` from `src` as one float64 band (not stretched) and its valid mask.

    The window may extend past either raster: what lies outside is invalid (False), never an error.
    """
    col, row, w, h = (int(v) for v in window)
    sub = grid.window_grid((col, row, w, h))
    off = integer_offset(src.grid, sub)
    try:
        if off is not None:
            data, valid = _read_direct(ds, src, off, w, h)
        else:
            data, valid = _read_warped(ds, src, sub, resampling)
    except RasterioError as e:
        raise InputError(f"{src.role} raster data cannot be read (corrupt?): {e}", src.path) from None
    img = _combine(data, src.combine)
    valid &= np.isfinite(img)
    return img, valid


def _read_direct(ds, src: RasterSource, off: tuple[int, int], w: int, h: int) -> tuple[np.ndarray, np.ndarray]:
    c0, r0 = off
    gw, gh = src.grid.width, src.grid.height
    cc0, rr0, cc1, rr1 = max(c0, 0), max(r0, 0), min(c0 + w, gw), min(r0 + h, gh)
    dtype = np.complex64 if src.is_complex else np.float64
    data = np.zeros((len(src.bands), h, w), dtype=dtype)
    valid = np.zeros((h, w), dtype=bool)
    if cc1 <= cc0 or rr1 <= rr0:
        return data, valid
    win = Window(cc0, rr0, cc1 - cc0, rr1 - rr0)
    ys, xs = slice(rr0 - r0, rr1 - r0), slice(cc0 - c0, cc1 - c0)
    data[:, ys, xs] = ds.read(list(src.bands), window=win)
    # The dataset mask honours nodata values, alpha bands and internal masks alike.
    m = np.ones((rr1 - rr0, cc1 - cc0), dtype=bool)
    for b in src.bands:
        m &= ds.read_masks(b, window=win) > 0
    valid[ys, xs] = m
    return data, valid


def _read_warped(ds, src: RasterSource, sub: Grid, resampling: Resampling) -> tuple[np.ndarray, np.ndarray]:
    kw = dict(crs=sub.rio_crs if sub.crs is not None else None, transform=sub.affine, width=sub.width, height=sub.height, resampling=resampling)
    if sub.crs is None:
        kw.pop("crs")
    if src.is_complex:
        # GDAL warps complex samples as complex; NaN cannot flag them, so the warped mask does.
        with WarpedVRT(ds, src_nodata=src.nodata, nodata=0, **kw) as vrt:
            data = vrt.read(list(src.bands))
            valid = np.ones(data.shape[1:], dtype=bool)
            for b in src.bands:
                valid &= vrt.read_masks(b) > 0
        return data, valid
    with WarpedVRT(ds, src_nodata=src.nodata, nodata=np.nan, dtype="float32", **kw) as vrt:
        data = vrt.read(list(src.bands)).astype(np.float64)
    valid = np.isfinite(data).all(axis=0)
    return data, valid


def apply_stretch(img: np.ndarray, valid: np.ndarray, stretch: Stretch | None) -> np.ndarray:
    """Scene-wide stretch to float32 [0, 1]; invalid pixels become NaN."""
    out = img.astype(np.float64, copy=True)
    if stretch is not None:
        if stretch.log:
            out = np.log(np.maximum(out, 1e-12))
        span = stretch.hi - stretch.lo
        out = (out - stretch.lo) / span if span > 1e-12 else np.zeros_like(out)
        out = np.clip(out, 0.0, 1.0)
    out = out.astype(np.float32)
    out[~valid] = np.nan
    return out


def iter_blocks(width: int, height: int, block: int) -> Iterator[tuple[int, int, int, int]]:
    for r in range(0, height, block):
        for c in range(0, width, block):
            yield c, r, min(block, width - c), min(block, height - r)


def open_raster(src: RasterSource) -> rasterio.io.DatasetReader:
    try:
        return rasterio.open(src.path)
    except RasterioError as e:
        raise InputError(f"{src.role} raster cannot be opened: {e}", src.path) from None


def resolve_path(p: str | os.PathLike) -> str:
    return str(Path(p).expanduser().resolve())


def to_crs(xy: np.ndarray, src_crs: str | None, dst_crs: str | None) -> np.ndarray:
    """Map coordinates [N, 2] from one CRS (WKT) to another; unchanged when they are the same."""
    xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if same_crs(src_crs, dst_crs) or len(xy) == 0:
        return xy.copy()
    x, y = _transformer(src_crs, dst_crs).transform(xy[:, 0], xy[:, 1])
    return np.stack([np.asarray(x, np.float64), np.asarray(y, np.float64)], axis=1)


@functools.lru_cache(maxsize=16)
def _transformer(src_crs: str, dst_crs: str):
    from pyproj import Transformer

    return Transformer.from_crs(src_crs, dst_crs, always_xy=True)
