"""Scene footprints (shapely) in the reference CRS and their intersection."""

from __future__ import annotations

import numpy as np
from rasterio.crs import CRS
from rasterio.warp import transform as warp_transform
from shapely.geometry import Polygon, box
from shapely.validation import make_valid

from geomreg.geo.io import Grid, same_crs


def grid_outline(grid: Grid, n_per_edge: int = 32) -> np.ndarray:
    """Densified outline [N, 2] of a grid's extent in its own map coordinates (pixel corners)."""
    w, h = grid.width, grid.height
    t = np.linspace(0.0, 1.0, n_per_edge, endpoint=False)
    cols = np.concatenate([t * w, np.full_like(t, w), (1 - t) * w, np.zeros_like(t)])
    rows = np.concatenate([np.zeros_like(t), t * h, np.full_like(t, h), (1 - t) * h])
    # Corners, not centres: px_to_map adds half a pixel, so subtract it here.
    return grid.px_to_map(np.stack([cols - 0.5, rows - 0.5], axis=1))


def footprint(grid: Grid, dst_crs: str | None) -> Polygon:
    """The grid's footprint as a polygon in dst_crs (densified, so reprojected edges stay accurate)."""
    xy = grid_outline(grid)
    if not same_crs(grid.crs, dst_crs):
        xs, ys = warp_transform(CRS.from_wkt(grid.crs), CRS.from_wkt(dst_crs), xy[:, 0].tolist(), xy[:, 1].tolist())
        xy = np.stack([xs, ys], axis=1)
    xy = xy[np.isfinite(xy).all(axis=1)]
    if len(xy) < 3:
        return Polygon()
    poly = Polygon(xy)
    return poly if poly.is_valid else make_valid(poly)


def overlap(ref: Grid, mov: Grid) -> Polygon:
    """Intersection of the two footprints, in the reference CRS."""
    a = footprint(ref, ref.crs)
    b = footprint(mov, ref.crs)
    inter = a.intersection(b)
    return inter if not inter.is_empty else Polygon()


def grid_box(grid: Grid) -> Polygon:
    xy = grid_outline(grid, 2)
    return box(xy[:, 0].min(), xy[:, 1].min(), xy[:, 0].max(), xy[:, 1].max())
