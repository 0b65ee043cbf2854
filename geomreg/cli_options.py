"""What every geomreg command shares: exit codes, the registration options and their validation.

`geomreg register` (geomreg.cli) and commands that other packages add through the `geomreg.commands`
entry-point group (`geomreg batch`, from pipelines) both import this module; it imports neither of them.
"""

from __future__ import annotations

from typing import Callable, TypeVar

import click

from geomreg.geo.config import TRANSFORM_CHOICES

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2

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
    )
