"""Figures without pyplot: no global state, safe under Agg, in notebooks, tests and worker processes."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

GREY = "gray"
NODATA_COLOUR = "#30343a"  # what NaN (no data) shows as: dark, but distinct from black pixels


def new_figure(ncols: int = 1, figsize: tuple[float, float] | None = None, panel: float = 5.0) -> tuple[Figure, list[Axes]]:
    fig = Figure(figsize=figsize or (panel * ncols + 0.6, panel), layout="constrained")
    axes = fig.subplots(1, ncols, squeeze=False)[0]
    return fig, list(axes)


def show_grey(ax: Axes, img: np.ndarray, extent=None) -> None:
    """A [0, 1] float image in grey, no data shown in NODATA_COLOUR."""
    import matplotlib

    cmap = matplotlib.colormaps[GREY].with_extremes(bad=NODATA_COLOUR)
    ax.imshow(np.ma.masked_invalid(img), cmap=cmap, vmin=0.0, vmax=1.0, extent=extent, interpolation="nearest")


def map_axes(ax: Axes, crs_units: bool = True) -> None:
    ax.set_aspect("equal")
    ax.ticklabel_format(useOffset=False, style="plain")
    ax.tick_params(labelsize=7)
    if crs_units:
        ax.set_xlabel("x (reference CRS)", fontsize=8)
        ax.set_ylabel("y (reference CRS)", fontsize=8)
