"""A grid of overlapping square tiles over the part of a working grid covered by a footprint polygon."""

from __future__ import annotations

import math

import numpy as np
from shapely.geometry import Polygon, box
from shapely import prepared

from geomreg.geo.io import Grid


def _starts(lo: int, hi: int, size: int, step: int) -> list[int]:
    """Tile starts covering [lo, hi) with tiles of `size`, the last one flush with hi."""
    if hi - lo <= size:
        return [lo]
    n = math.ceil((hi - lo - size) / step) + 1
    starts = [lo + i * step for i in range(n)]
    starts[-1] = hi - size
    return sorted(set(starts))


def polygon_px_bounds(grid: Grid, poly: Polygon) -> tuple[int, int, int, int] | None:
    """Pixel bounds (col0, row0, col1, row1) of a map polygon on the grid, clipped to it; None if outside."""
    if poly.is_empty:
        return None
    xy = np.asarray(poly.exterior.coords) if poly.geom_type == "Polygon" else np.concatenate([np.asarray(g.exterior.coords) for g in poly.geoms])
    px = grid.map_to_px(xy) + 0.5  # corner-origin pixel coordinates
    c0, r0 = np.floor(px.min(axis=0)).astype(int)
    c1, r1 = np.ceil(px.max(axis=0)).astype(int)
    c0, r0, c1, r1 = max(c0, 0), max(r0, 0), min(c1, grid.width), min(r1, grid.height)
    if c1 <= c0 or r1 <= r0:
        return None
    return int(c0), int(r0), int(c1), int(r1)


def tile_windows(grid: Grid, poly: Polygon, tile_size: int, overlap: int, min_cover: float = 0.1) -> list[tuple[int, int, int, int]]:
    """Windows (col, row, w, h) of overlapping tiles covering poly on grid.

    Tiles whose area lies less than `min_cover` inside the polygon are left out: they would be
    mostly nodata on one side.
    """
    b = polygon_px_bounds(grid, poly)
    if b is None:
        return []
    c0, r0, c1, r1 = b
    size_x, size_y = min(tile_size, c1 - c0), min(tile_size, r1 - r0)
    step_x, step_y = max(1, size_x - overlap), max(1, size_y - overlap)
    prep = prepared.prep(poly)
    out = []
    for r in _starts(r0, r1, size_y, step_y):
        for c in _starts(c0, c1, size_x, step_x):
            corners = grid.px_to_map(np.array([[c - 0.5, r - 0.5], [c + size_x - 0.5, r + size_y - 0.5]]))
            tb = box(*corners.min(axis=0), *corners.max(axis=0))
            if not prep.intersects(tb):
                continue
            if poly.intersection(tb).area < min_cover * tb.area:
                continue
            out.append((c, r, size_x, size_y))
    return out
