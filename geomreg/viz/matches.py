"""Matches between two images side by side, joined by lines; and the tie points of one registration tile."""

from __future__ import annotations

import numpy as np
import rasterio
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from rasterio.enums import Resampling

from geomreg.geo.io import apply_stretch, read_window
from geomreg.geo.plan import TileTask
from geomreg.geo.registration import Registration
from geomreg.matching.types import MatchResult
from geomreg.viz._figure import new_figure, show_grey
from geomreg.viz.images import stretch

_GAP = 8  # px between the two images


def side_by_side(ref: np.ndarray, mov: np.ndarray, gap: int = _GAP) -> tuple[np.ndarray, float]:
    """One canvas (NaN padding) holding ref then mov; returns it and the x offset of mov."""
    h = max(ref.shape[0], mov.shape[0])
    canvas = np.full((h, ref.shape[1] + gap + mov.shape[1]), np.nan, np.float32)
    canvas[: ref.shape[0], : ref.shape[1]] = ref
    canvas[: mov.shape[0], ref.shape[1] + gap :] = mov
    return canvas, float(ref.shape[1] + gap)


def _subset(n: int, max_lines: int, seed: int) -> np.ndarray:
    if n <= max_lines:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, max_lines, replace=False))


def plot_matches(
    ref: np.ndarray, mov: np.ndarray, matches: MatchResult | tuple[np.ndarray, np.ndarray], *, inlier: np.ndarray | None = None,
    max_lines: int = 200, seed: int = 0, title: str | None = None, figsize: tuple[float, float] | None = None,
) -> Figure:
    """Reference (left) and moving image (right) with a line per match (x = column, y = row, centre origin).

    Lines are green for inliers and red for outliers when `inlier` is given, else coloured by the
    matches' confidence. At most `max_lines` (a seeded random subset) are drawn.
    """
    if isinstance(matches, MatchResult):
        ref_xy, mov_xy, conf = matches.ref_xy, matches.mov_xy, matches.confidence
    else:
        ref_xy, mov_xy = matches
        conf = None
    ref_xy = np.asarray(ref_xy, np.float64).reshape(-1, 2)
    mov_xy = np.asarray(mov_xy, np.float64).reshape(-1, 2)
    if len(ref_xy) != len(mov_xy):
        raise ValueError(f"plot_matches: {len(ref_xy)} reference points but {len(mov_xy)} moving points")
    if inlier is not None:
        inlier = np.asarray(inlier, bool)
        if inlier.shape != (len(ref_xy),):
            raise ValueError(f"plot_matches: inlier has shape {inlier.shape}, expected ({len(ref_xy)},)")
    a, b = stretch(ref, "reference"), stretch(mov, "moving")
    canvas, dx = side_by_side(a, b)
    w = 6.0 * canvas.shape[1] / max(canvas.shape[0], 1)
    fig, (ax,) = new_figure(1, figsize or (min(max(w, 6.0), 14.0), 6.0))
    show_grey(ax, canvas)
    idx = _subset(len(ref_xy), max_lines, seed)
    segs = np.stack([ref_xy[idx], mov_xy[idx] + [dx, 0.0]], axis=1)
    if inlier is not None:
        colours = np.where(inlier[idx, None], [[0.1, 0.8, 0.2, 0.8]], [[0.9, 0.1, 0.1, 0.8]])
        lc = LineCollection(segs, colors=colours, linewidths=0.8)
    else:
        lc = LineCollection(segs, cmap="plasma", linewidths=0.8, alpha=0.8)
        lc.set_array(np.ones(len(idx)) if conf is None else np.asarray(conf, np.float64)[idx])
        lc.set_clim(0.0, 1.0)
    ax.add_collection(lc)
    ax.scatter(segs[:, :, 0].ravel(), segs[:, :, 1].ravel(), s=4, c="yellow", linewidths=0)
    if inlier is None and conf is not None and len(idx):
        fig.colorbar(lc, ax=ax, shrink=0.7, label="confidence")
    ax.set_xlim(-0.5, canvas.shape[1] - 0.5)
    ax.set_ylim(canvas.shape[0] - 0.5, -0.5)
    ax.set_axis_off()
    shown = f" ({len(idx)} shown)" if len(idx) < len(ref_xy) else ""
    extra = f", {int(inlier.sum())} inliers" if inlier is not None else ""
    ax.set_title(title or f"{len(ref_xy)} matches{extra}{shown}", fontsize=9)
    return fig


def _task(reg: Registration, tile_id: int) -> TileTask:
    for t in reg.plan.tasks:
        if t.tile_id == tile_id:
            return t
    raise ValueError(f"no tile {tile_id} in this registration (tiles 0..{len(reg.plan.tasks) - 1})")


def tile_images(task: TileTask) -> tuple[np.ndarray, np.ndarray]:
    """A tile's reference and moving windows as the matcher saw them (stretched, NaN = no data)."""
    rs = Resampling[task.resampling]
    with rasterio.open(task.reference.path) as ds:
        ri, rv = read_window(ds, task.reference, task.grid, task.ref_window, rs)
    with rasterio.open(task.moving.path) as ds:
        mi, mv = read_window(ds, task.moving, task.grid, task.mov_window, rs)
    return apply_stretch(ri, rv, task.reference.stretch), apply_stretch(mi, mv, task.moving.stretch)


def plot_tile_matches(reg: Registration, tile_id: int | None = None, *, max_lines: int = 200, seed: int = 0,
                      figsize: tuple[float, float] | None = None) -> Figure:
    """The reference tile and its (larger) moving search window, joined by the tile's tie points.

    Default tile: the one with the most tie points. Green lines agree with the fitted transform.
    """
    gdf = reg.tie_points
    if len(gdf) == 0:
        raise ValueError("this registration has no tie points to show")
    if tile_id is None:
        tile_id = int(gdf["tile_id"].value_counts().idxmax())
    task = _task(reg, tile_id)
    sel = gdf[gdf["tile_id"] == tile_id]
    g = task.grid
    ref_xy = g.map_to_px(sel[["ref_x", "ref_y"]].to_numpy(np.float64)) - task.ref_window[:2]
    mov_xy = g.map_to_px(sel[["mov_x", "mov_y"]].to_numpy(np.float64)) - task.mov_window[:2]
    ref, mov = tile_images(task)
    inl = sel["inlier"].to_numpy(bool)
    title = (f"tile {tile_id}: reference {task.ref_window[2]}x{task.ref_window[3]} px | moving search window "
             f"{task.mov_window[2]}x{task.mov_window[3]} px; {len(sel)} tie points, {int(inl.sum())} inliers")
    return plot_matches(ref, mov, (ref_xy, mov_xy), inlier=inl, max_lines=max_lines, seed=seed, title=title, figsize=figsize)
