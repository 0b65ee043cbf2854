"""What every geomreg command shares: exit codes, the registration options and their validation.

`geomreg register` (geomreg.cli) and commands that other packages add through the `geomreg.commands`
entry-point group (`geomreg batch`, from pipelines) both import this module; it imports neither of them.
"""

from __future__ import annotations

from typing import Callable, TypeVar

import click

from geomreg.geo.config import TRANSFORM_CHOICES

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2
# The machine could not take the outputs: no space left, permission denied, read-only file system, a folder
# that vanished. One line names the output and the cause; what was there before is kept (docs/failure_modes.md).
EXIT_OUTPUT = 3
# `geomreg batch`: the Dask scheduler went away in the middle of the batch; complete outputs are kept.
EXIT_CLUSTER_LOST = 4

# The help epilogs (\b keeps click from re-flowing the lines).
EXIT_CODES_REGISTER = """\b
Exit codes:
  0  registered
  1  registration failed (the report says why), or interrupted
  2  bad input: a missing or corrupt raster, bad options, an output clash (the message names the file)
  3  the outputs could not be written: no space left, permission denied, read-only file system, the output
     folder vanished (one line: <path>: <cause>); what was there before is kept, nothing half-written
See docs/failure_modes.md."""

EXIT_CODES_BATCH = """\b
Exit codes:
  0  every pair registered (or complete already)
  1  some pair failed or had bad input (the summary table says which and why), or interrupted
  2  bad manifest or options
  3  some pair's outputs, or the batch summary, could not be written (no space left, read-only, ...)
  4  the Dask scheduler was lost mid-batch: complete outputs are kept; rerun the same command to do the rest
See docs/failure_modes.md."""

F = TypeVar("F", bound=Callable)


def registration_options(f: F) -> F:
    """Options shared by every command that registers scenes (register, batch)."""
    opts = [
        click.option("--transform", type=click.Choice(TRANSFORM_CHOICES), default="auto", show_default=True,
                     help="Geometric model; auto chooses by held-out residuals."),
        click.option("--matcher", default="auto", show_default=True, help="Matcher: auto (RegNetMamba-2 with its tie points polished to sub-pixel, or CFOG when no validated weights are installed), regnetmamba2, regnetmamba2+polish, regnetmamba2+cfog (the network's model, CFOG's tie points), or cfog."),
        click.option("--checkpoint", type=click.Path(dir_okay=False), default=None, help="RegNetMamba-2 checkpoint instead of the packaged weights."),
        click.option("--tile-size", type=click.IntRange(min=64), default=512, show_default=True, help="Tile side in working pixels."),
        click.option("--overlap", type=click.IntRange(min=0), default=64, show_default=True, help="Pixels shared by neighbouring tiles."),
        click.option("--max-shift", default="32", show_default=True, help="Largest expected offset: pixels (40, 40px) or map units (300m)."),
        click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N."),
        click.option("--ref-band", default="auto", show_default=True, help="Reference band: auto, luminance, mean or a band number."),
        click.option("--mov-band", default="auto", show_default=True, help="Moving band: auto, luminance, mean or a band number."),
        click.option("--resolution", type=float, default=None, help="Working pixel size in reference CRS units (default: the coarser scene's)."),
        click.option("--pixel-mode", is_flag=True, help="Accept rasters without a CRS (their pixel grids are compared directly)."),
        click.option("--max-memory", default=None,
                     help="Memory (RSS) tile matching may use, e.g. 1.5G or 1500MB; the matcher's batches shrink to fit "
                          "[default: 1.5G, or half the machine's memory when less]."),
        click.option("--tiles", "tiles", type=click.Choice(["auto", "all"]), default="auto", show_default=True,
                     help="auto: match a spread sample of tiles until a global model's predicted std is under "
                          "--max-uncertainty; all: every tile (a thin-plate spline always uses all)."),
        click.option("--max-uncertainty", type=click.FloatRange(min=0, min_open=True), default=0.1, show_default=True,
                     help="px: largest predicted std of the model over the overlap at which --tiles auto stops."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def config_from_options(**kw):
    """The RegistrationConfig of the registration options' values (InputError when one is invalid)."""
    from geomreg.api import build_config

    return build_config(
        transform=kw["transform"], tile_size=kw["tile_size"], overlap=kw["overlap"], max_shift=kw["max_shift"],
        ref_band=kw["ref_band"], mov_band=kw["mov_band"], resolution=kw["resolution"], pixel_mode=kw["pixel_mode"] or None,
        max_memory=kw.get("max_memory"), tiles=kw.get("tiles"), max_uncertainty=kw.get("max_uncertainty"),
    )
