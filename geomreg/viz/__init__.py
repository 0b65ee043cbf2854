"""Pictures of a registration with matplotlib (no pyplot state: safe under Agg, in notebooks and workers).

    import geomreg.viz as viz
    reg = geomreg.register(ref, mov, matcher="cfog")
    viz.plot_checkerboard(reg)          # before / after checkerboards of reference and moving cells
    viz.plot_swipe(reg)                 # reference left of a split, moving right of it
    viz.plot_tie_points(reg)            # tie points over the reference, coloured by residual
    viz.plot_residual_vectors(reg)      # residual vectors (quiver), exaggerated
    viz.plot_tile_matches(reg)          # one tile and its search window joined by tie points
    viz.plot_matches(ref_img, mov_img, matcher.match(ref_img, mov_img))

Every function returns a matplotlib Figure (save it with fig.savefig(path)).
"""

from geomreg.viz.images import DisplayImages, display_grid, display_images, moving_on_grid, reference_on_grid, stretch
from geomreg.viz.matches import plot_matches, plot_tile_matches, side_by_side, tile_images
from geomreg.viz.mosaic import checkerboard, plot_checkerboard, plot_swipe, swipe
from geomreg.viz.tiepoints import plot_residual_vectors, plot_tie_points, residual_vectors

__all__ = [
    "DisplayImages", "display_grid", "display_images", "moving_on_grid", "reference_on_grid", "stretch",
    "checkerboard", "swipe", "plot_checkerboard", "plot_swipe",
    "plot_tie_points", "plot_residual_vectors", "residual_vectors",
    "plot_matches", "plot_tile_matches", "side_by_side", "tile_images",
]
