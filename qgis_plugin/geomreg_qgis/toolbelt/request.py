"""What the user asked for (one registration), its checks and its translation to the CLI / API.

The option names mirror `geomreg register` (issue 4): the dialog, the Processing algorithm and the
subprocess runner all go through `RegistrationRequest`, so the three cannot drift apart.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from qgis.core import QgsRasterLayer

# Values accepted by `geomreg register --transform/--matcher/--device`.
TRANSFORMS = ("auto", "translation", "affine", "homography", "poly2", "poly3", "tps")
TRANSFORM_LABELS = {
    "auto": "Automatic (best held-out residuals)",
    "translation": "Translation",
    "affine": "Affine",
    "homography": "Homography",
    "poly2": "Polynomial, order 2",
    "poly3": "Polynomial, order 3",
    "tps": "Thin-plate spline",
}
MATCHERS = ("regnetmamba2", "cfog", "regnetmamba2+cfog", "regnetmamba2+polish", "auto")  # Processing stores the index: append only
MATCHER_LABELS = {
    "regnetmamba2": "RegNetMamba-2 (deep, multimodal)",
    "cfog": "CFOG (classical structural, fast)",
    "regnetmamba2+cfog": "RegNetMamba-2, tie points polished by CFOG",
    "regnetmamba2+polish": "RegNetMamba-2, each tie point polished to sub-pixel",
    "auto": "Automatic (RegNetMamba-2 polished to sub-pixel; CFOG without weights)",
}
DEVICES = ("auto", "cpu", "cuda")
SHIFT_UNITS = ("px", "map")
BAND_CHOICES = ("auto", "luminance", "mean")
WRITE_MODES = ("resample", "georef", "gcps")
WRITE_MODE_LABELS = {
    "resample": "Resample onto the reference grid",
    "georef": "Corrected georeferencing only (affine, no resampling)",
    "gcps": "Embedded GCPs (no resampling)",
}
RASTER_SUFFIXES = (".tif", ".tiff")
TILE_SIZE_RANGE = (64, 8192)
_DRIVER_PREFIX = re.compile(r"^[A-Za-z][A-Za-z0-9_]+:")


@dataclass(frozen=True)
class RegistrationRequest:
    reference: str  # GDAL dataset name of the reference scene (usually a file path)
    moving: str
    output: str  # GeoTIFF/COG path of the registered moving scene
    transform: str = "auto"
    matcher: str = "auto"
    tile_size: int = 0  # 0: the engine's default
    max_shift: float = 0.0  # 0: the engine's default
    max_shift_unit: str = "px"  # "px" (working pixels) or "map" (reference CRS units, e.g. metres)
    device: str = "auto"
    overwrite: bool = False
    overlap: int = -1  # pixels shared by neighbouring tiles; -1: the engine's default
    ref_band: str = "auto"  # "auto", "luminance", "mean" or a 1-based band number
    mov_band: str = "auto"
    resolution: float = 0.0  # working pixel size in reference CRS units; 0: the coarser scene's
    pixel_mode: bool = False  # rasters without a CRS: their pixel grids are compared directly
    write_mode: str = "resample"  # "resample" onto the reference grid, "georef" or "gcps" (no resampling)
    checkpoint: str = ""  # a RegNetMamba-2 checkpoint instead of the packaged weights
    tiles: str = "auto"  # "auto": a spread sample of tiles until the model is certain enough; "all": every tile
    max_uncertainty: float = 0.0  # px at which tiles="auto" stops; 0: the engine's default
    max_memory: str = ""  # RSS budget of tile matching, e.g. "1.5G"; "": the engine's default

    def cli_args(self, output: str | None = None) -> list[str]:
        """Arguments after `geomreg`, e.g. ["register", REF, MOV, "-o", OUT, ...].

        `output` replaces the final path (the task writes into a staging folder first).
        """
        args = ["register", self.reference, self.moving, "-o", output or self.output]
        args += ["--transform", self.transform, "--matcher", self.matcher, "--device", self.device]
        if self.tile_size:
            args += ["--tile-size", str(int(self.tile_size))]
        if self.max_shift:
            args += ["--max-shift", self.max_shift_text()]
        if self.overlap >= 0:
            args += ["--overlap", str(int(self.overlap))]
        if self.ref_band != "auto":
            args += ["--ref-band", self.ref_band]
        if self.mov_band != "auto":
            args += ["--mov-band", self.mov_band]
        if self.resolution:
            args += ["--resolution", _format_number(self.resolution)]
        if self.pixel_mode:
            args.append("--pixel-mode")
        if self.write_mode != "resample":
            args += ["--mode", self.write_mode]
        if self.checkpoint:
            args += ["--checkpoint", self.checkpoint]
        if self.tiles != "auto":
            args += ["--tiles", self.tiles]
        if self.max_uncertainty:
            args += ["--max-uncertainty", _format_number(self.max_uncertainty)]
        if self.max_memory:
            args += ["--max-memory", self.max_memory]
        if self.overwrite:
            args.append("--overwrite")
        return args

    def api_kwargs(self) -> dict:
        """Keyword arguments of `geomreg.register` (reference, moving and output excluded)."""
        kwargs: dict = {"transform": self.transform, "matcher": self.matcher, "device": self.device}
        if self.tile_size:
            kwargs["tile_size"] = int(self.tile_size)
        if self.max_shift:
            kwargs["max_shift"] = float(self.max_shift) if self.max_shift_unit == "px" else self.max_shift_text()
        if self.overlap >= 0:
            kwargs["overlap"] = int(self.overlap)
        if self.ref_band != "auto":
            kwargs["ref_band"] = _band_value(self.ref_band)
        if self.mov_band != "auto":
            kwargs["mov_band"] = _band_value(self.mov_band)
        if self.resolution:
            kwargs["resolution"] = float(self.resolution)
        if self.pixel_mode:
            kwargs["pixel_mode"] = True
        if self.checkpoint:
            kwargs["checkpoint"] = self.checkpoint
        if self.tiles != "auto":
            kwargs["tiles"] = self.tiles
        if self.max_uncertainty:
            kwargs["max_uncertainty"] = float(self.max_uncertainty)
        if self.max_memory:
            kwargs["max_memory"] = self.max_memory
        return kwargs

    def max_shift_text(self) -> str:
        """The CLI's notation: "40px" (working pixels) or "300m" (map units of the reference CRS)."""
        return _format_number(self.max_shift) + ("px" if self.max_shift_unit == "px" else "m")


@dataclass(frozen=True)
class InputProblem:
    field: str  # "reference", "moving", "output", "tile_size", ...
    message: str


def _band_value(band: str) -> int | str:
    return int(band) if band.isdigit() else band


def _format_number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _looks_like_file(source: str) -> bool:
    # GDAL also opens "/vsicurl/...", "NETCDF:file:var", ...: only plain paths can be checked on disk.
    # (Two letters or more before the colon, so that Windows drive letters still count as paths.)
    return not (source.startswith("/vsi") or _DRIVER_PREFIX.match(source))


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.exists(a) and os.path.exists(b) and os.path.samefile(a, b)
    except OSError:
        return False


def check_raster(source: str, role: str, *, pixel_mode: bool = False, band: str = "auto") -> InputProblem | None:
    """Can the engine read `source`? Checked before a run so that mistakes show at once."""
    if not source:
        return InputProblem(role, f"No {role} raster chosen.")
    if _looks_like_file(source) and not os.path.exists(source):
        return InputProblem(role, f"{role.capitalize()} raster '{source}' does not exist.")
    if _looks_like_file(source) and os.path.isdir(source):
        return InputProblem(role, f"{role.capitalize()} raster '{source}' is a folder, not a raster file.")
    layer = QgsRasterLayer(source, "check", "gdal", QgsRasterLayer.LayerOptions(loadDefaultStyle=False))
    if not layer.isValid():
        reason = layer.error().summary().strip() or "GDAL cannot open it"
        return InputProblem(role, f"{role.capitalize()} raster '{source}' cannot be read as a raster: {reason}")
    if not layer.crs().isValid() and not pixel_mode:
        return InputProblem(
            role,
            f"{role.capitalize()} raster '{source}' has no coordinate reference system "
            "(georeference it first, or tick 'Pixel mode').",
        )
    if band not in BAND_CHOICES and not (band.isdigit() and 1 <= int(band) <= layer.bandCount()):
        return InputProblem(
            role, f"Band '{band}' of the {role} raster '{source}' does not exist (it has {layer.bandCount()} band(s))."
        )
    return None


def validate_request(request: RegistrationRequest) -> list[InputProblem]:
    """Every problem found in `request`, in the order the dialog shows its fields (empty list: runnable)."""
    problems: list[InputProblem] = []
    for role, source, band in (("reference", request.reference, request.ref_band), ("moving", request.moving, request.mov_band)):
        problem = check_raster(source, role, pixel_mode=request.pixel_mode, band=band)
        if problem:
            problems.append(problem)
    if request.reference and _same_file(request.reference, request.moving):
        problems.append(InputProblem("moving", f"Reference and moving rasters are the same file ('{request.moving}')."))
    problems += _check_output(request)
    if request.transform not in TRANSFORMS:
        problems.append(InputProblem("transform", f"Unknown transform '{request.transform}' (one of {', '.join(TRANSFORMS)})."))
    if request.matcher not in MATCHERS:
        problems.append(InputProblem("matcher", f"Unknown matcher '{request.matcher}' (one of {', '.join(MATCHERS)})."))
    if request.device not in DEVICES:
        problems.append(InputProblem("device", f"Unknown device '{request.device}' (one of {', '.join(DEVICES)})."))
    lo, hi = TILE_SIZE_RANGE
    if request.tile_size and not lo <= request.tile_size <= hi:
        problems.append(InputProblem("tile_size", f"Tile size {request.tile_size} px is outside {lo}..{hi} px."))
    if request.write_mode not in WRITE_MODES:
        problems.append(InputProblem("write_mode", f"Unknown output mode '{request.write_mode}' (one of {', '.join(WRITE_MODES)})."))
    if request.overlap >= 0 and request.tile_size and request.overlap * 2 >= request.tile_size:
        problems.append(InputProblem("overlap", f"Overlap {request.overlap} px must be less than half the tile size."))
    if request.resolution < 0:
        problems.append(InputProblem("resolution", f"Working resolution {request.resolution} must not be negative."))
    if request.checkpoint and not os.path.isfile(request.checkpoint):
        problems.append(InputProblem("checkpoint", f"Checkpoint '{request.checkpoint}' does not exist."))
    if request.max_shift_unit not in SHIFT_UNITS:
        problems.append(InputProblem("max_shift", f"Unknown shift unit '{request.max_shift_unit}' (px or map)."))
    if request.max_shift < 0:
        problems.append(InputProblem("max_shift", f"Maximum shift {request.max_shift} must not be negative."))
    return problems


def _check_output(request: RegistrationRequest) -> list[InputProblem]:
    out = request.output
    if not out:
        return [InputProblem("output", "No output file chosen.")]
    if Path(out).suffix.lower() not in RASTER_SUFFIXES:
        return [InputProblem("output", f"Output '{out}' must be a GeoTIFF (.tif or .tiff).")]
    for role, source in (("reference", request.reference), ("moving", request.moving)):
        if source and (os.path.abspath(out) == os.path.abspath(source) or _same_file(out, source)):
            return [InputProblem("output", f"Output '{out}' is the {role} raster itself: choose another file.")]
    folder = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(folder):
        return [InputProblem("output", f"Output folder '{folder}' does not exist.")]
    if not os.access(folder, os.W_OK):
        return [InputProblem("output", f"Output folder '{folder}' is not writable.")]
    if os.path.exists(out) and not request.overwrite:
        return [InputProblem("output", f"Output '{out}' already exists (tick 'Overwrite' to replace it).")]
    return []
