"""Planning a registration: inputs validated, working grid, footprint overlap, tile tasks.

The plan is small and picklable (paths, grids, windows; no pixel arrays), so that tiles can be
matched anywhere (a Dask worker reads its own windows). Offsets larger than a tile need a coarse
pass first: the plan then holds coarse tasks only, and `refine_plan` turns their matches into the
full-resolution tasks, each moving window centred where the coarse estimate puts it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field, replace

import numpy as np
from rasterio.enums import Resampling
from shapely import wkt as shapely_wkt
from shapely.geometry import Polygon

from geomreg.geo.config import RegistrationConfig
from geomreg.geo.errors import InputError
from geomreg.geo.footprint import overlap as footprint_overlap
from geomreg.geo.io import Grid, RasterSource, Stretch, inspect_raster, integer_offset, open_raster, read_window, same_crs
from geomreg.geo.tiepoints import coarse_estimate
from geomreg.geo.tiling import polygon_px_bounds, tile_windows
from geomreg.matching.preprocess import normalize_intensity

log = logging.getLogger(__name__)

_OVERVIEW_SIZE = 512  # long side (px) of the overview used for intensity statistics and the nodata check
_MIN_COARSE_SIDE = 96  # a coarse grid smaller than this has too little structure to match


@dataclass(frozen=True)
class TileTask:
    """One tile to match: a reference window and a (larger) moving window on the same grid."""

    tile_id: int
    level: str  # "fine" or "coarse"
    reference: RasterSource
    moving: RasterSource
    grid: Grid  # the grid both windows refer to (reference CRS)
    ref_window: tuple[int, int, int, int]  # col, row, width, height
    mov_window: tuple[int, int, int, int]
    resampling: str = "bilinear"  # how the windows are resampled onto the grid when not read directly
    max_nodata_fraction: float = 0.5
    min_structure: float = 0.03


@dataclass(frozen=True)
class RegistrationPlan:
    reference: RasterSource
    moving: RasterSource
    config: RegistrationConfig
    grid: Grid  # the fine working grid (reference CRS); tie points and fitted models live in its pixels
    overlap_wkt: str  # footprint intersection, reference CRS
    max_shift_px: float  # in working pixels
    tasks: tuple[TileTask, ...] = ()
    coarse_tasks: tuple[TileTask, ...] = ()
    coarse_factor: int = 1
    initial_affine: tuple[float, ...] | None = None  # 2x3, working px moving -> reference, from the coarse pass
    notes: tuple[str, ...] = field(default=())

    @property
    def needs_coarse(self) -> bool:
        return bool(self.coarse_tasks) and not self.tasks

    @property
    def overlap(self) -> Polygon:
        return shapely_wkt.loads(self.overlap_wkt)

    @property
    def pixel_mode(self) -> bool:
        return self.grid.crs is None


def _strip_crs(src: RasterSource) -> RasterSource:
    return replace(src, grid=replace(src.grid, crs=None))


def _moving_res_in_ref(mov: Grid, ref_crs: str | None) -> float:
    """Pixel size of the moving grid, measured in reference CRS units at its centre."""
    if same_crs(mov.crs, ref_crs):
        return mov.res
    from rasterio.crs import CRS
    from rasterio.warp import transform as warp_transform

    c = np.array([[mov.width / 2, mov.height / 2], [mov.width / 2 + 1, mov.height / 2], [mov.width / 2, mov.height / 2 + 1]])
    xy = mov.px_to_map(c)
    xs, ys = warp_transform(CRS.from_wkt(mov.crs), CRS.from_wkt(ref_crs), xy[:, 0].tolist(), xy[:, 1].tolist())
    p = np.stack([xs, ys], axis=1)
    u, v = p[1] - p[0], p[2] - p[0]
    return float(math.sqrt(abs(u[0] * v[1] - u[1] * v[0])))


def _working_grid(ref: Grid, mov_res: float, resolution: float | None) -> Grid:
    res = resolution if resolution is not None else max(ref.res, mov_res)
    if abs(res - ref.res) <= 1e-6 * ref.res:
        return ref
    return ref.scaled(res / ref.res)


def _scene_stretch(src: RasterSource, img: np.ndarray, valid: np.ndarray) -> Stretch:
    vals = img[valid]
    if vals.size < 16:
        return Stretch(False, 0.0, 1.0)
    is_log = normalize_intensity(img, valid=valid).log_scaled
    if is_log:
        vals = np.log(np.maximum(vals, 1e-12))
        floor = np.percentile(vals, 0.5)
        vals = np.maximum(vals, floor)
    lo, hi = np.percentile(vals, [1.0, 99.0])
    if hi - lo < 1e-12:
        hi = lo + 1.0
    log.debug("%s: stretch log=%s [%g, %g]", src.path, is_log, lo, hi)
    return Stretch(bool(is_log), float(lo), float(hi))


def _overview(ref: RasterSource, mov: RasterSource, grid: Grid, poly: Polygon) -> tuple[Stretch, Stretch, float]:
    """Read both scenes coarsely over the overlap: intensity stretches and the shared valid fraction."""
    b = polygon_px_bounds(grid, poly)
    assert b is not None
    c0, r0, c1, r1 = b
    f = max(1.0, max(c1 - c0, r1 - r0) / _OVERVIEW_SIZE)
    sub = grid.window_grid((c0, r0, c1 - c0, r1 - r0)).scaled(f)
    win = (0, 0, sub.width, sub.height)
    with open_raster(ref) as ds:
        ri, rv = read_window(ds, ref, sub, win, Resampling.average)
    with open_raster(mov) as ds:
        mi, mv = read_window(ds, mov, sub, win, Resampling.average)
    # Restrict to the footprint intersection (the bounding box also holds pixels outside it).
    shared = float((rv & mv).mean()) if rv.size else 0.0
    return _scene_stretch(ref, ri, rv), _scene_stretch(mov, mi, mv), shared


def plan_registration(reference, moving, config: RegistrationConfig | None = None) -> RegistrationPlan:
    """Validate the inputs and lay out the tiles. Raises InputError naming the file and the problem."""
    cfg = config or RegistrationConfig()
    ref = inspect_raster(reference, "reference", cfg.ref_band, cfg.pixel_mode)
    mov = inspect_raster(moving, "moving", cfg.mov_band, cfg.pixel_mode)
    if cfg.pixel_mode:
        # Pixel mode: CRSs are ignored, the geotransforms (often the identity) are compared directly.
        ref, mov = _strip_crs(ref), _strip_crs(mov)
        if abs(ref.grid.res - mov.grid.res) > 1e-6 * ref.grid.res:
            raise InputError(
                f"pixel mode needs both rasters on the same pixel size ({ref.grid.res:g} vs {mov.grid.res:g}): "
                "without a CRS they cannot be resampled onto each other",
                mov.path,
            )
    mov_res = _moving_res_in_ref(mov.grid, ref.grid.crs)
    grid = _working_grid(ref.grid, mov_res, cfg.resolution)
    if cfg.pixel_mode:
        grid = ref.grid  # no resampling without a CRS
        if integer_offset(mov.grid, grid) is None:
            raise InputError(
                "pixel mode needs the moving geotransform to differ from the reference one by whole pixels only "
                "(same pixel size and orientation)",
                mov.path,
            )

    poly = footprint_overlap(ref.grid, mov.grid)
    if poly.is_empty or poly.area <= 0:
        raise InputError(f"the footprints of the reference ({ref.path}) and the moving scene ({mov.path}) do not overlap")
    if polygon_px_bounds(grid, poly) is None:
        raise InputError(f"the footprints of {ref.path} and {mov.path} do not overlap on the reference grid")

    ref_stretch, mov_stretch, shared = _overview(ref, mov, grid, poly)
    if shared <= 0.0:
        raise InputError(
            f"the overlap of {ref.path} and {mov.path} holds no pixel that is valid in both (all nodata)"
        )
    ref, mov = ref.with_stretch(ref_stretch), mov.with_stretch(mov_stretch)

    max_shift_px = cfg.max_shift / grid.res if cfg.max_shift_unit == "map" else float(cfg.max_shift)
    plan = RegistrationPlan(reference=ref, moving=mov, config=cfg, grid=grid, overlap_wkt=poly.wkt, max_shift_px=max_shift_px)
    notes = [f"working grid {grid.width}x{grid.height} px of {grid.res:g} units"]

    need_coarse = cfg.coarse == "always" or (cfg.coarse == "auto" and max_shift_px > cfg.coarse_trigger * cfg.tile_size)
    if need_coarse:
        b = polygon_px_bounds(grid, poly)
        side = min(b[2] - b[0], b[3] - b[1])
        f = max(2, math.ceil(max_shift_px / (cfg.coarse_trigger * cfg.tile_size)))
        f = min(f, max(1, side // _MIN_COARSE_SIDE))
        if f >= 2:
            cgrid = grid.scaled(f)
            margin = math.ceil(max_shift_px / f) + 4
            tasks = _tasks(ref, mov, cgrid, poly, cfg, "coarse", margin, "average")
            notes.append(f"coarse pass at 1/{f} ({len(tasks)} tiles, margin {margin} px) for max_shift {max_shift_px:.1f} px")
            return replace(plan, coarse_tasks=tuple(tasks), coarse_factor=f, notes=tuple(notes))
        notes.append("overlap too small for a coarse pass: full-resolution tiles with a wide margin")
    margin = math.ceil(max_shift_px) + 4
    tasks = _tasks(ref, mov, grid, poly, cfg, "fine", margin, _fine_resampling(cfg, grid, min(ref.grid.res, mov_res)))
    notes.append(f"{len(tasks)} tiles of {cfg.tile_size} px, overlap {cfg.overlap} px, moving margin {margin} px")
    return replace(plan, tasks=tuple(tasks), notes=tuple(notes))


def _fine_resampling(cfg: RegistrationConfig, grid: Grid, finest_res: float) -> str:
    """How tiles are resampled onto the working grid: averaging when a scene is much finer (bilinear
    would alias), else the configured kernel (nearest would quantise the sub-pixel offsets away)."""
    if finest_res < grid.res / 1.5:
        return "average"
    return cfg.resampling if cfg.resampling != "nearest" else "bilinear"


def _tasks(
    ref: RasterSource, mov: RasterSource, grid: Grid, poly: Polygon, cfg: RegistrationConfig, level: str, margin: int,
    resampling: str, offset_fn=None,
) -> list[TileTask]:
    tasks = []
    for i, (c, r, w, h) in enumerate(tile_windows(grid, poly, cfg.tile_size, cfg.overlap)):
        dx, dy = (0, 0) if offset_fn is None else offset_fn(c + w / 2 - 0.5, r + h / 2 - 0.5)
        mw = (c + dx - margin, r + dy - margin, w + 2 * margin, h + 2 * margin)
        tasks.append(
            TileTask(
                tile_id=i, level=level, reference=ref, moving=mov, grid=grid, ref_window=(c, r, w, h), mov_window=mw,
                resampling=resampling, max_nodata_fraction=cfg.max_nodata_fraction, min_structure=cfg.min_structure,
            )
        )
    return tasks


def refine_plan(plan: RegistrationPlan, coarse_matches) -> RegistrationPlan:
    """Full-resolution tasks from the coarse pass: each moving window is centred on the predicted offset."""
    cfg = plan.config
    if not plan.coarse_tasks:
        return plan
    A, n_inl, note = coarse_estimate(plan, coarse_matches)
    f = plan.coarse_factor
    notes = list(plan.notes) + [note]
    if A is None:
        # The coarse pass failed: search the widest window a tile allows rather than giving up.
        margin = min(math.ceil(plan.max_shift_px), cfg.tile_size // 2) + 4
        offset_fn = None
        notes.append(f"coarse pass found no consistent offset; full-resolution margin {margin} px")
    else:
        margin = 2 * f + 8  # the coarse estimate is good to about a coarse pixel

        def offset_fn(x: float, y: float) -> tuple[int, int]:
            # A maps moving -> reference; the moving window sits where the inverse puts the tile centre.
            M = np.vstack([np.asarray(A).reshape(2, 3), [0, 0, 1]])
            px, py, _ = np.linalg.solve(M, [x, y, 1.0])
            return int(round(px - x)), int(round(py - y))

    finest = min(plan.reference.grid.res, _moving_res_in_ref(plan.moving.grid, plan.grid.crs))
    tasks = _tasks(plan.reference, plan.moving, plan.grid, plan.overlap, cfg, "fine", margin,
                   _fine_resampling(cfg, plan.grid, finest), offset_fn)
    notes.append(f"{len(tasks)} full-resolution tiles, moving margin {margin} px")
    return replace(plan, tasks=tuple(tasks), initial_affine=None if A is None else tuple(np.asarray(A).ravel()), notes=tuple(notes))
