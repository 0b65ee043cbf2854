"""Checkerboard and swipe mosaics of the reference and the moving scene, before and after registration."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from geomreg.geo.registration import Registration
from geomreg.viz._figure import map_axes, new_figure, show_grey
from geomreg.viz.images import DisplayImages, Window, display_images


def checkerboard(a: np.ndarray, b: np.ndarray, tiles: int = 8) -> np.ndarray:
    """Alternate square cells of `a` and `b` (same shape); `tiles` cells along the longer side."""
    if a.shape != b.shape:
        raise ValueError(f"checkerboard: images differ in shape {a.shape} vs {b.shape}")
    if tiles < 1:
        raise ValueError(f"tiles must be >= 1, got {tiles}")
    h, w = a.shape[:2]
    cell = max(1, int(np.ceil(max(h, w) / tiles)))
    rows = (np.arange(h) // cell)[:, None]
    cols = (np.arange(w) // cell)[None, :]
    return np.where((rows + cols) % 2 == 0, a, b)


def swipe(a: np.ndarray, b: np.ndarray, position: float = 0.5) -> np.ndarray:
    """`a` left of the split column (position as a fraction of the width), `b` right of it."""
    if a.shape != b.shape:
        raise ValueError(f"swipe: images differ in shape {a.shape} vs {b.shape}")
    if not 0.0 <= position <= 1.0:
        raise ValueError(f"position must be in [0, 1], got {position}")
    split = int(round(position * a.shape[1]))
    out = b.copy()
    out[:, :split] = a[:, :split]
    return out


def _images(source: Registration | DisplayImages, window: Window | None, max_side: int) -> DisplayImages:
    return source if isinstance(source, DisplayImages) else display_images(source, window, max_side)


def _panels(im: DisplayImages) -> list[tuple[str, np.ndarray]]:
    panels = [("before: moving scene as georeferenced", im.before)]
    if im.after is not None:
        panels.append((f"after: {im.title}", im.after))
    return panels


def plot_checkerboard(
    source: Registration | DisplayImages, *, window: Window | None = None, tiles: int = 8, max_side: int = 800,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Checkerboards of reference and moving cells, before and after (only before when registration failed).

    Misregistration shows as features broken at the cell edges. `window` (col, row, width, height in
    reference pixels) zooms in; a zoom at full resolution shows pixel-level offsets best.
    """
    im = _images(source, window, max_side)
    panels = _panels(im)
    fig, axes = new_figure(len(panels), figsize)
    for ax, (title, mov) in zip(axes, panels):
        show_grey(ax, checkerboard(im.reference, mov, tiles), im.extent)
        ax.set_title(title, fontsize=9)
        map_axes(ax)
    if im.after is None:
        fig.suptitle(f"registration {im.title}", fontsize=9, color="firebrick")
    return fig


def plot_swipe(
    source: Registration | DisplayImages, *, position: float = 0.5, window: Window | None = None, max_side: int = 800,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Reference left of a vertical split, moving scene right of it; before and after."""
    im = _images(source, window, max_side)
    panels = _panels(im)
    fig, axes = new_figure(len(panels), figsize)
    left, right, bottom, top = im.extent
    x_split = left + (right - left) * round(position * im.grid.width) / im.grid.width
    for ax, (title, mov) in zip(axes, panels):
        show_grey(ax, swipe(im.reference, mov, position), im.extent)
        ax.axvline(x_split, color="gold", lw=1.2)
        box = dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=0.8)
        ax.text(x_split, top, "reference ", ha="right", va="top", fontsize=7, bbox=box)
        ax.text(x_split, top, " moving", ha="left", va="top", fontsize=7, bbox=box)
        ax.set_title(title, fontsize=9)
        map_axes(ax)
    if im.after is None:
        fig.suptitle(f"registration {im.title}", fontsize=9, color="firebrick")
    return fig
