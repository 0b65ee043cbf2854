"""The result of a registration: status, transform, tie points, statistics, report, and its outputs."""

from __future__ import annotations

import logging
import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from geomreg.geo.io import to_crs
from geomreg.geo.models import Model, describe, rotation_scale
from geomreg.geo.plan import RegistrationPlan

log = logging.getLogger(__name__)

WRITE_MODES = ("resample", "georef", "gcps")


def sidecar_paths(path: str | Path) -> dict[str, Path]:
    """The files written next to the raster `path`: report, tie points (GeoPackage) and QGIS .points."""
    p = Path(path)
    return {"report": p.with_name(p.stem + "_report.json"), "tie_points": p.with_name(p.stem + "_tiepoints.gpkg"),
            "qgis_points": p.with_name(p.stem + ".points")}


def recover_outputs(path: str | Path) -> list[str]:
    """Roll back a replacement of the output set at `path` that a crash interrupted (see OutputSet)."""
    from geomreg.geo.outputs import recover_output_set

    p = Path(path).expanduser()
    return recover_output_set(p, tuple(q.name for q in (p, *sidecar_paths(p).values())))


@dataclass(frozen=True)
class TiePoints:
    """Deduplicated tie points. Working-grid pixels are where models are fitted; file pixels are those of
    each input raster (centre origin); map coordinates are in the reference CRS."""

    ref_px: np.ndarray  # [N, 2] working grid
    mov_px: np.ndarray  # [N, 2] working grid (moving georeferencing)
    ref_map: np.ndarray
    mov_map: np.ndarray  # moving scene's map coordinates, in the reference CRS
    ref_file_px: np.ndarray
    mov_file_px: np.ndarray
    confidence: np.ndarray
    tile_id: np.ndarray
    residual_vec_px: np.ndarray  # [N, 2] model(mov) - ref, in reference pixels (NaN without a model)
    inlier: np.ndarray

    def __len__(self) -> int:
        return len(self.confidence)

    @property
    def residual_px(self) -> np.ndarray:
        return np.hypot(self.residual_vec_px[:, 0], self.residual_vec_px[:, 1])

    @classmethod
    def build(cls, plan: RegistrationPlan, ref_px, mov_px, conf, tid, model: Model | None, inlier) -> "TiePoints":
        g = plan.grid
        ref_map, mov_map = g.px_to_map(ref_px), g.px_to_map(mov_px)
        ref_file = plan.reference.grid.map_to_px(ref_map)
        mov_file = plan.moving.grid.map_to_px(to_crs(mov_map, g.crs, plan.moving.grid.crs))
        scale = g.res / plan.reference.grid.res  # working px -> reference px
        if model is not None and len(ref_px):
            rv = (model.apply(mov_px) - ref_px) * scale
        else:
            rv = np.full((len(ref_px), 2), np.nan)
        return cls(ref_px, mov_px, ref_map, mov_map, ref_file, mov_file, np.asarray(conf, np.float64),
                   np.asarray(tid, np.int64), rv, np.asarray(inlier, bool))


class Registration:
    """What `geomreg.register` and `geomreg.geo.fusion.fuse` return.

    status: "registered" or "failed" (reason says why); rmse: inlier RMSE in reference pixels;
    report: JSON-ready dict; tie_points: GeoDataFrame; map_to_reference(x, y); write(path).
    """

    def __init__(self, plan: RegistrationPlan, status: str, reason: str | None, model: Model | None, tie_points: TiePoints,
                 counts: dict, cv_scores: dict, timings: dict, matcher_name: str | None = None) -> None:
        self.plan = plan
        self.status = status
        self.reason = reason
        self.model = model
        self._tie_points = tie_points
        self.counts = counts
        self.cv_scores = cv_scores
        self.timings = dict(timings)
        self.matcher_name = matcher_name
        self.outputs: dict[str, str] = {}
        # Predicted std of the fitted model over the overlap (geomreg/geo/uncertainty.py), None for a spline or a failure.
        self.uncertainty: dict | None = None
        # How many tiles were matched and why matching stopped (geomreg/geo/sampling.py); None when not sampled.
        self.sampling: dict | None = None

    def __getstate__(self) -> dict:
        # Temporary copies of in-memory inputs stay with the process that made them.
        return {k: v for k, v in self.__dict__.items() if k != "_tmpdir"}

    def __repr__(self) -> str:
        kind = self.model.kind if self.model else None
        return f"<Registration {self.status} transform={kind} rmse={self.rmse:.3f}px inliers={self.n_inliers}>"

    # --- statistics ------------------------------------------------------------------------------
    @property
    def ok(self) -> bool:
        return self.status == "registered"

    @property
    def transform_kind(self) -> str | None:
        return None if self.model is None else self.model.kind

    @property
    def n_inliers(self) -> int:
        return int(self._tie_points.inlier.sum())

    def _inlier_residuals(self) -> np.ndarray:
        r = self._tie_points.residual_px[self._tie_points.inlier]
        return r[np.isfinite(r)]

    @property
    def rmse(self) -> float:
        """Inlier RMSE in reference pixels (NaN without inliers)."""
        r = self._inlier_residuals()
        return float(np.sqrt(np.mean(r**2))) if len(r) else float("nan")

    @property
    def rmse_map(self) -> float:
        return self.rmse * self.plan.reference.grid.res

    @property
    def ce90(self) -> float:
        """90th percentile of the inlier radial residuals, reference pixels."""
        r = self._inlier_residuals()
        return float(np.percentile(r, 90)) if len(r) else float("nan")

    # --- mapping -------------------------------------------------------------------------------
    def _require_model(self) -> Model:
        if self.model is None or self.status != "registered":
            raise RuntimeError(f"registration failed: {self.reason}")
        return self.model

    def _map_forward(self, xy: np.ndarray) -> np.ndarray:
        g = self.plan.grid
        return g.px_to_map(self._require_model().apply(g.map_to_px(xy)))

    def map_to_reference(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """Map coordinates of the moving scene (in the reference CRS) -> the reference's map coordinates."""
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
        out = self._map_forward(np.c_[x.ravel(), y.ravel()])
        return out[:, 0].reshape(x.shape), out[:, 1].reshape(y.shape)

    def reference_to_moving(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        """The inverse of map_to_reference."""
        g = self.plan.grid
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
        out = g.px_to_map(self._require_model().apply_inverse(g.map_to_px(np.c_[x.ravel(), y.ravel()])))
        return out[:, 0].reshape(x.shape), out[:, 1].reshape(y.shape)

    # --- tie points ------------------------------------------------------------------------------
    @property
    def tie_points(self):
        """GeoDataFrame: one point per tie point (reference CRS), with map and pixel coordinates on both
        sides, confidence, residual (reference px and map units), inlier flag and tile id."""
        import geopandas as gpd
        import pandas as pd

        tp = self._tie_points
        res = self.plan.reference.grid.res
        df = pd.DataFrame({
            "ref_x": tp.ref_map[:, 0], "ref_y": tp.ref_map[:, 1],
            "ref_col": tp.ref_file_px[:, 0], "ref_row": tp.ref_file_px[:, 1],
            "mov_x": tp.mov_map[:, 0], "mov_y": tp.mov_map[:, 1],
            "mov_col": tp.mov_file_px[:, 0], "mov_row": tp.mov_file_px[:, 1],
            "confidence": tp.confidence,
            "residual_px": tp.residual_px, "residual_map": tp.residual_px * res,
            "inlier": tp.inlier, "tile_id": tp.tile_id,
        })
        crs = self.plan.grid.crs
        return gpd.GeoDataFrame(df, geometry=gpd.points_from_xy(df.ref_x, df.ref_y), crs=crs)

    # --- report ----------------------------------------------------------------------------------
    def _tile_stats(self) -> list[dict]:
        tp = self._tie_points
        out = []
        for t in np.unique(tp.tile_id):
            sel = tp.tile_id == t
            r = tp.residual_px[sel]
            inl = tp.inlier[sel]
            d = {"tile_id": int(t), "tie_points": int(sel.sum()), "inliers": int(inl.sum())}
            if np.isfinite(r).any():
                d["median_residual_px"] = round(float(np.nanmedian(r)), 4)
                d["mean_residual_vec_px"] = [round(float(v), 4) for v in np.nanmean(tp.residual_vec_px[sel], axis=0)]
                d["consistent"] = bool(inl.mean() >= 0.5 and np.nanmedian(r) <= self.plan.config.inlier_threshold)
            out.append(d)
        return out

    @property
    def report(self) -> dict:
        import cv2
        import rasterio
        import shapely

        from geomreg._version import __version__

        plan = self.plan
        ref, mov = plan.reference, plan.moving

        def src(s):
            return {"path": s.path, "crs": s.grid.crs, "size": [s.grid.width, s.grid.height], "pixel_size": s.grid.res,
                    "bands": s.count, "dtype": s.dtype, "nodata": s.nodata, "bands_used": list(s.bands), "band_combination": s.combine,
                    "log_scaled": bool(s.stretch.log) if s.stretch else None}

        tr = None
        if self.model is not None:
            tr = describe(self.model, plan.grid.transform)
            M = self.model.matrix()
            if M is not None:
                rot, scale = rotation_scale(M)
                tr["rotation_deg"], tr["scale"] = rot, scale
            # The correction at the overlap's centre, in map units: what most users want to read first.
            c = np.asarray(plan.overlap.centroid.coords[0])
            if self.status == "registered":
                cx, cy = self.map_to_reference(c[0], c[1])
                tr["shift_at_centre_map"] = [float(cx - c[0]), float(cy - c[1])]
        return {
            "status": self.status,
            "reason": self.reason,
            "reference": src(ref),
            "moving": src(mov),
            "working_grid": {"crs": plan.grid.crs, "transform": list(plan.grid.transform), "size": [plan.grid.width, plan.grid.height],
                             "pixel_size": plan.grid.res},
            "matcher": self.matcher_name,
            "config": {k: getattr(plan.config, k) for k in plan.config.field_names()},
            "plan_notes": list(plan.notes),
            "transform": tr,
            "auto_selection_cv_rmse_px": self.cv_scores,
            "uncertainty": getattr(self, "uncertainty", None),
            "tile_sampling": getattr(self, "sampling", None),
            "counts": self.counts,
            "rmse_px": self.rmse, "rmse_map": self.rmse_map, "ce90_px": self.ce90, "ce90_map": self.ce90 * ref.grid.res,
            "n_inliers": self.n_inliers,
            "tiles": self._tile_stats(),
            "timings_s": self.timings,
            "outputs": self.outputs,
            "versions": {"geomreg": __version__, "numpy": np.__version__, "rasterio": rasterio.__version__,
                         "gdal": rasterio.__gdal_version__, "opencv": cv2.__version__, "shapely": shapely.__version__,
                         "python": platform.python_version()},
        }

    # --- outputs ---------------------------------------------------------------------------------
    def sidecar_paths(self, path: str | Path) -> dict[str, Path]:
        return sidecar_paths(path)

    def write(self, path: str | Path, overwrite: bool = False, *, mode: str = "resample", sidecars: bool = True,
              progress: bool = False, before_commit: Callable[[], None] | None = None) -> dict[str, str]:
        """Write the registered raster (and, with sidecars, the report, tie points and .points next to it).

        mode: "resample" (onto the reference grid, default), "georef" (pixels unchanged, corrected affine
        geotransform) or "gcps" (pixels unchanged, embedded GCPs). A failed registration writes no raster:
        only its report, then raises RuntimeError.

        All or nothing: every file is first written under a temporary name beside its final one, and the
        set is swapped in only once all are complete (geomreg.geo.outputs.OutputSet), so a failure or an
        interrupt at any point leaves what was there before as it was - with overwrite, the previous set
        whole. `before_commit` runs between the two (a GUI's last chance to cancel). A fault of the machine
        (no space left, permission denied, read-only file system, a folder that vanished) raises
        geomreg.OutputError naming the output and the cause; bad output paths raise InputError.
        """
        from geomreg.geo import outputs

        if mode not in WRITE_MODES:
            raise ValueError(f"mode must be one of {WRITE_MODES}, got {mode!r}")
        inputs = (self.plan.reference.path, self.plan.moving.path)
        p = Path(path).expanduser()
        side = self.sidecar_paths(p) if sidecars else {}
        recover_outputs(p)
        p = outputs.check_output_path(p, inputs, overwrite)
        for q in side.values():
            outputs.check_output_path(q, inputs, overwrite)
        t0 = time.perf_counter()
        if self.status != "registered":
            if "report" in side:
                self.outputs = {"report": str(side["report"])}
                with outputs.OutputSet({"report": side["report"]}, overwrite) as oset:
                    outputs.write_json(self.report, oset.staged["report"])
                    if before_commit is not None:
                        before_commit()
                    oset.commit()
            raise RuntimeError(f"registration failed: {self.reason}; no raster written")
        # The report goes last: an output set with its report in place is complete.
        finals = {"raster": p, **{k: side[k] for k in ("tie_points", "qgis_points", "report") if k in side}}
        self.outputs = {}
        try:
            with outputs.OutputSet(finals, overwrite) as oset:
                staged = oset.staged
                if mode == "resample":
                    from geomreg.geo.memory import bounded_gdal_cache

                    # GDAL's block cache defaults to 5 % of the machine's memory and fills with the output's dirty
                    # blocks: bound it so that writing a large scene stays within the memory budget.
                    with bounded_gdal_cache(self.plan.config.max_memory):
                        outputs.write_resampled(self, staged["raster"], progress=progress)
                elif mode == "georef":
                    outputs.write_georef(self, staged["raster"])
                else:
                    outputs.write_gcps(self, staged["raster"])
                if side:
                    outputs.write_geopackage(self.tie_points, staged["tie_points"])
                    outputs.write_qgis_points(self, staged["qgis_points"])
                    self.timings["write_s"] = round(time.perf_counter() - t0, 4)
                    self.outputs = {k: str(v) for k, v in finals.items()}  # the report lists the final names
                    outputs.write_json(self.report, staged["report"])
                if before_commit is not None:
                    before_commit()
                oset.commit()
        except BaseException:
            self.outputs = {}
            raise
        self.timings["write_s"] = round(time.perf_counter() - t0, 4)
        self.outputs = {k: str(v) for k, v in finals.items()}
        return dict(self.outputs)

    def write_report(self, path: str | Path, overwrite: bool = False) -> None:
        from geomreg.geo import outputs

        p = outputs.check_output_path(path, (self.plan.reference.path, self.plan.moving.path), overwrite)
        outputs.write_json(self.report, p)
