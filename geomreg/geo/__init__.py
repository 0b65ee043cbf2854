"""Georeferenced co-registration of whole scenes: plan -> tiles -> fusion -> outputs.

The steps are separate, picklable and callable on their own (a Dask pipeline distributes the tiles):

    plan = plan_registration(reference, moving, RegistrationConfig())   # paths in, small picklable plan out
    if plan.needs_coarse:                                # offsets larger than a tile: downsampled pass first
        plan = refine_plan(plan, match_tiles(plan.coarse_tasks, matcher))
    matches = match_tiles(plan.tasks, matcher)          # any subset of tasks, in any process
    reg = fuse(plan, matches)                           # -> Registration (status, rmse, report, tie_points)
    reg.write("out.tif")                                # + out_report.json, out_tiepoints.gpkg, out.points

geomreg.api.run_tiles does the two matching steps with batches and a progress bar.
"""

from geomreg.geo.config import RegistrationConfig
from geomreg.geo.errors import InputError, OutputError
from geomreg.geo.fusion import fuse
from geomreg.geo.plan import RegistrationPlan, TileTask, plan_registration, refine_plan
from geomreg.geo.registration import Registration
from geomreg.geo.tiles import TileMatches, match_tiles

__all__ = [
    "RegistrationConfig", "InputError", "OutputError", "RegistrationPlan", "TileTask", "TileMatches", "Registration",
    "plan_registration", "refine_plan", "match_tiles", "fuse",
]
