"""Tie points over the reference image coloured by residual, and their residual vectors (quiver)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

from geomreg.geo.registration import Registration
from geomreg.viz._figure import map_axes, new_figure, show_grey
from geomreg.viz.images import DisplayImages, display_grid, grid_extent, reference_on_grid

if TYPE_CHECKING:
    import geopandas as gpd

TIE_POINT_COLUMNS = ("ref_x", "ref_y", "residual_px", "inlier")


def _tie_points(source: "Registration | gpd.GeoDataFrame"):
    gdf = source.tie_points if isinstance(source, Registration) else source
    missing = [c for c in TIE_POINT_COLUMNS if c not in gdf.columns]
    if missing:
        raise ValueError(f"tie points lack the column(s) {missing} (expected the layer written by geomreg)")
    return gdf


def _background(source, background: bool | DisplayImages, max_side: int):
    """(image, extent) of the reference over the overlap, or None."""
    if isinstance(background, DisplayImages):
        return background.reference, background.extent
    if background and isinstance(source, Registration):
        grid = display_grid(source, None, max_side)
        return reference_on_grid(source, grid), grid_extent(grid)
    return None


def plot_tie_points(
    source: "Registration | gpd.GeoDataFrame", *, background: bool | DisplayImages = True, cmap: str = "viridis",
    vmax: float | None = None, show_outliers: bool = True, max_side: int = 800, figsize: tuple[float, float] | None = None,
) -> Figure:
    """Tie points at their reference positions, inliers coloured by residual (reference px), outliers as red x.

    `source`: a Registration, or the tie-point GeoDataFrame (``reg.tie_points`` or the GeoPackage layer
    written next to an output, read with geopandas). The reference image is drawn underneath when the
    source is a Registration (or pass a DisplayImages as `background`).
    """
    gdf = _tie_points(source)
    fig, (ax,) = new_figure(1, figsize or (7.2, 6.0))
    bg = _background(source, background, max_side)
    if bg is not None:
        show_grey(ax, bg[0], bg[1])
    inl = gdf["inlier"].to_numpy(bool)
    res = gdf["residual_px"].to_numpy(np.float64)
    x, y = gdf["ref_x"].to_numpy(np.float64), gdf["ref_y"].to_numpy(np.float64)
    has_res = inl & np.isfinite(res)
    if has_res.any():
        top = vmax if vmax is not None else max(float(np.percentile(res[has_res], 98)), 1e-3)
        sc = ax.scatter(x[has_res], y[has_res], c=res[has_res], cmap=cmap, vmin=0.0, vmax=top, s=9, linewidths=0, label="inliers")
        fig.colorbar(sc, ax=ax, shrink=0.8, extend="max", label="residual (reference px)")
    other = inl & ~np.isfinite(res)  # inliers without a model cannot happen; points of a failed fit can
    if (~inl).any() and show_outliers:
        ax.scatter(x[~inl], y[~inl], marker="x", c="red", s=12, linewidths=0.8, label="outliers")
    if other.any():
        ax.scatter(x[other], y[other], c="lightgrey", s=6, label="no residual")
    if bg is None:
        ax.set_facecolor("#f4f4f4")
    n, m = len(gdf), int(inl.sum())
    rmse = float(np.sqrt(np.mean(res[has_res] ** 2))) if has_res.any() else float("nan")
    ax.set_title(f"{n} tie points, {m} inliers, inlier RMSE {rmse:.2f} px", fontsize=9)
    if n:
        ax.legend(loc="lower right", fontsize=7, framealpha=0.8)
    map_axes(ax)
    return fig


def residual_vectors(reg: Registration) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(positions [N, 2], vectors [N, 2], inlier [N]) in reference map units: where the fitted transform
    puts each tie point's moving position, minus where the reference found it."""
    if not reg.ok:
        raise ValueError(f"registration failed ({reg.reason}): no transform, so no residuals to plot")
    gdf = reg.tie_points
    ref = gdf[["ref_x", "ref_y"]].to_numpy(np.float64)
    fx, fy = reg.map_to_reference(gdf["mov_x"].to_numpy(np.float64), gdf["mov_y"].to_numpy(np.float64))
    return ref, np.c_[fx, fy] - ref, gdf["inlier"].to_numpy(bool)


def _nice(v: float) -> float:
    """1, 2 or 5 times a power of ten, at most v."""
    e = 10 ** np.floor(np.log10(v))
    return float(max(m * e for m in (1, 2, 5) if m * e <= v))


def plot_residual_vectors(
    reg: Registration, *, exaggeration: float | None = None, show_outliers: bool = False, max_points: int = 4000,
    background: bool | DisplayImages = False, cmap: str = "viridis", seed: int = 0, max_side: int = 800,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Residual vectors of the tie points (inliers; outliers too with show_outliers), exaggerated to be seen.

    Systematic patterns (all arrows alike in a region) mean the transform is too simple there; random
    directions mean noise. `exaggeration` scales the arrows (default: the 95th-percentile residual is
    drawn as 5 % of the plot's width); the key arrow gives the true length in reference pixels.
    """
    pos, vec, inl = residual_vectors(reg)
    keep = np.ones(len(pos), bool) if show_outliers else inl
    idx = np.nonzero(keep)[0]
    if len(idx) > max_points:  # a dense field of arrows reads as a smudge
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_points, replace=False))
    pos, vec, inl = pos[idx], vec[idx], inl[idx]
    res_map = reg.plan.reference.grid.res
    mag_px = np.hypot(vec[:, 0], vec[:, 1]) / res_map
    fig, (ax,) = new_figure(1, figsize or (7.2, 6.0))
    bg = _background(reg, background, max_side)
    if bg is not None:
        show_grey(ax, bg[0], bg[1])
    x0, y0, x1, y1 = reg.plan.overlap.bounds
    width = max(x1 - x0, y1 - y0)
    p95 = float(np.percentile(mag_px, 95)) if len(mag_px) else 1.0
    if exaggeration is None:
        exaggeration = 0.05 * width / max(p95 * res_map, 1e-9)
    if len(pos):
        colours = np.where(inl, mag_px, np.nan)
        q = ax.quiver(pos[:, 0], pos[:, 1], vec[:, 0], vec[:, 1], colours, cmap=cmap, angles="xy", scale_units="xy",
                      scale=1.0 / exaggeration, width=0.003, clim=(0.0, max(p95, 1e-3)))
        if (~inl).any():
            ax.quiver(pos[~inl, 0], pos[~inl, 1], vec[~inl, 0], vec[~inl, 1], color="red", angles="xy", scale_units="xy",
                      scale=1.0 / exaggeration, width=0.002, alpha=0.6)
        key_px = _nice(max(p95, 1e-3))
        ax.quiverkey(q, 0.06, 0.03, key_px * res_map, f"{key_px:g} px", labelpos="E", coordinates="axes", color="black",
                     fontproperties={"size": 8})
        fig.colorbar(q, ax=ax, shrink=0.8, extend="max", label="residual (reference px)")
    ax.set_xlim(x0 - 0.03 * width, x1 + 0.03 * width)
    ax.set_ylim(y0 - 0.08 * width, y1 + 0.03 * width)  # room for the key arrow at the bottom
    ax.set_title(f"residual vectors of {int(inl.sum())} inliers ({reg.transform_kind}), arrows x{exaggeration:.3g}", fontsize=9)
    map_axes(ax)
    return fig
