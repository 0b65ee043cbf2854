"""Configuration of a scene registration (frozen: it travels inside plans to Dask workers)."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields

from geomreg.geo.errors import InputError

TRANSFORMS = ("translation", "affine", "homography", "poly2", "poly3", "tps")
TRANSFORM_CHOICES = ("auto",) + TRANSFORMS
RESAMPLINGS = ("nearest", "bilinear", "cubic")
TILE_MODES = ("auto", "all")


@dataclass(frozen=True)
class RegistrationConfig:
    """Everything that steers plan -> tile matching -> fusion -> output.

    Pixel quantities are in pixels of the working grid (the reference grid, or a coarser one when the
    moving scene is coarser or ``resolution`` asks for it).
    """

    transform: str = "auto"  # one of TRANSFORM_CHOICES; auto = chosen by held-out residuals
    tile_size: int = 512  # side of the square reference tiles
    overlap: int = 64  # pixels shared by neighbouring tiles (tie points near tile borders are found twice)
    max_shift: float = 32.0  # largest offset expected between the scenes (see max_shift_unit)
    max_shift_unit: str = "px"  # "px" (working pixels) or "map" (reference CRS units, e.g. metres)
    resolution: float | None = None  # working pixel size in reference CRS units; None = coarser of the two scenes
    ref_band: int | str = "auto"  # "auto", "luminance", "mean" or a 1-based band index
    mov_band: int | str = "auto"
    pixel_mode: bool = False  # accept rasters without a CRS: pixel grids (their geotransforms) are compared directly
    max_nodata_fraction: float = 0.5  # tiles with more nodata than this are skipped
    min_structure: float = 0.03  # tiles whose stretched intensities vary less than this (std) are skipped
    coarse: str = "auto"  # "auto" (when max_shift exceeds coarse_trigger * tile_size), "always", "never"
    coarse_trigger: float = 0.25
    batch_size: int = 8  # most tiles handed to the matcher at once (fewer when max_memory says so)
    max_memory: int | None = None  # bytes of RSS tile matching may reach; None = geomreg.geo.memory.default_budget()
    tiles: str = "auto"  # "auto": global models match a spread sample until max_uncertainty is met; "all": every tile
    max_uncertainty: float = 0.1  # px: largest predicted std of the model over the overlap at which "auto" stops
    inlier_threshold: float = 3.0  # px: residual above which a tie point is an outlier of the fitted transform
    min_inliers: int = 8  # fewer consistent tie points -> status "failed"
    cv_folds: int = 5  # held-out folds used by transform="auto"
    seed: int = 0
    resampling: str = "bilinear"  # output resampling: nearest, bilinear, cubic
    write_block: int = 1024  # output rows/cols resampled at once (bounds memory)
    cog: bool = True  # write a Cloud Optimized GeoTIFF (else a tiled GeoTIFF)

    def __post_init__(self) -> None:
        if self.transform not in TRANSFORM_CHOICES:
            raise InputError(f"unsupported transform {self.transform!r}; choose one of {', '.join(TRANSFORM_CHOICES)}")
        if not isinstance(self.tile_size, int) or self.tile_size < 64:
            raise InputError(f"tile_size must be an integer >= 64, got {self.tile_size!r}")
        if not isinstance(self.overlap, int) or not 0 <= self.overlap < self.tile_size // 2:
            raise InputError(f"overlap must be an integer in [0, tile_size/2), got {self.overlap!r}")
        if not self.max_shift > 0:
            raise InputError(f"max_shift must be positive, got {self.max_shift!r}")
        if self.max_shift_unit not in ("px", "map"):
            raise InputError(f"max_shift_unit must be 'px' or 'map', got {self.max_shift_unit!r}")
        if self.resolution is not None and not self.resolution > 0:
            raise InputError(f"resolution must be positive, got {self.resolution!r}")
        if self.coarse not in ("auto", "always", "never"):
            raise InputError(f"coarse must be auto, always or never, got {self.coarse!r}")
        if not 0.0 <= self.max_nodata_fraction < 1.0:
            raise InputError(f"max_nodata_fraction must be in [0, 1), got {self.max_nodata_fraction!r}")
        if self.batch_size < 1 or self.min_inliers < 3 or self.cv_folds < 2 or self.inlier_threshold <= 0:
            raise InputError("batch_size >= 1, min_inliers >= 3, cv_folds >= 2 and inlier_threshold > 0 are required")
        if self.resampling not in RESAMPLINGS:
            raise InputError(f"resampling must be one of {', '.join(RESAMPLINGS)}, got {self.resampling!r}")
        if self.max_memory is not None and (not isinstance(self.max_memory, int) or self.max_memory < 256 * 2**20):
            raise InputError(f"max_memory must be a number of bytes >= 256 MB (e.g. 1.5G), got {self.max_memory!r}")
        if self.tiles not in TILE_MODES:
            raise InputError(f"tiles must be one of {', '.join(TILE_MODES)}, got {self.tiles!r}")
        if not self.max_uncertainty > 0:
            raise InputError(f"max_uncertainty must be positive (px), got {self.max_uncertainty!r}")
        if self.write_block < 64:
            raise InputError(f"write_block must be >= 64, got {self.write_block!r}")

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))


_SHIFT_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(px|m|map)?\s*$")


def parse_max_shift(value: float | int | str) -> tuple[float, str]:
    """'40' or 40 -> (40, 'px'); '300m' -> (300, 'map'); '12px' -> (12, 'px')."""
    if isinstance(value, (int, float)):
        return float(value), "px"
    m = _SHIFT_RE.match(str(value))
    if not m:
        raise InputError(f"cannot read max_shift {value!r}: give pixels (e.g. 40 or 40px) or map units (e.g. 300m)")
    unit = m.group(2) or "px"
    return float(m.group(1)), ("px" if unit == "px" else "map")
