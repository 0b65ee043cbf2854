"""Runs AROSICS COREG_LOCAL on one pair and writes what it did as JSON (for benchmarks/arosics_compare.py).

Runs in the AROSICS environment (benchmarks/arosics/setup.sh), not in the project's .venv:

    benchmarks/arosics/.venv-arosics/bin/python benchmarks/arosics/run_arosics.py REF TGT OUT.tif RESULT.json \
        --grid-res 48 --window 256 --max-shift 16 --r-band 1 --s-band 1

RESULT.json: status ("registered" when AROSICS kept tie points and wrote OUT.tif, "failed" otherwise),
timings, tie-point counts, the GCPs it warps with (target pixel, GDAL's corner-origin convention ->
corrected map coordinates: the output is a thin-plate-spline warp through them), its mean shift, and
the warnings / error it raised, and every shift it measured before its outlier filters (raw_points).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
import warnings


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("reference")
    ap.add_argument("target")
    ap.add_argument("output")
    ap.add_argument("result")
    ap.add_argument("--grid-res", type=int, default=48, help="tie-point grid spacing in target pixels")
    ap.add_argument("--window", type=int, default=256, help="matching window side (px)")
    ap.add_argument("--max-shift", type=int, default=5, help="largest shift searched (target px)")
    ap.add_argument("--r-band", type=int, default=1, help="reference band used for matching (1-based)")
    ap.add_argument("--s-band", type=int, default=1, help="target band used for matching (1-based)")
    ap.add_argument("--min-reliability", type=float, default=60, help="AROSICS' own default: 60 (percent)")
    ap.add_argument("--cpus", type=int, default=1)
    a = ap.parse_args(argv)

    import arosics
    from arosics import COREG_LOCAL
    from osgeo import gdal

    res: dict = {"arosics": arosics.__version__, "gdal": gdal.__version__, "status": "failed", "params": vars(a)}
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            cr = COREG_LOCAL(a.reference, a.target, grid_res=a.grid_res, window_size=(a.window, a.window),
                             max_shift=a.max_shift, r_b4match=a.r_band, s_b4match=a.s_band, path_out=a.output,
                             fmt_out="GTIFF", min_reliability=a.min_reliability, CPUs=a.cpus, progress=False, q=True,
                             ignore_errors=True)
            cr.calculate_spatial_shifts()
            res["tiepoints_s"] = round(time.perf_counter() - t0, 3)
            table = cr.CoRegPoints_table
            fill = cr.outFillVal
            valid = table[table.ABS_SHIFT != fill] if "ABS_SHIFT" in table else table.iloc[:0]
            kept = valid[~valid.OUTLIER.astype(bool)] if "OUTLIER" in valid else valid
            res["grid_points"] = int(len(table))
            res["points_with_shift"] = int(len(valid))
            res["points_kept"] = int(len(kept))
            # Every shift AROSICS measured, kept or not: claimed map position, shift (map units), reliability.
            cols = [c for c in ("X_MAP", "Y_MAP", "X_SHIFT_M", "Y_SHIFT_M", "RELIABILITY") if c in valid]
            res["raw_points_columns"] = cols
            res["raw_points"] = valid[cols].astype(float).values.tolist()
            res["success"] = bool(cr.success)
            gcps = cr.coreg_info.get("GCPList") or []
            res["gcps"] = [[g.GCPPixel, g.GCPLine, g.GCPX, g.GCPY] for g in gcps]
            info = cr.coreg_info
            res["mean_shift_px"] = info.get("mean_shifts_px")
            res["mean_shift_map"] = info.get("mean_shifts_map")
            if cr.success:
                t1 = time.perf_counter()
                cr.correct_shifts()
                res["warp_s"] = round(time.perf_counter() - t1, 3)
                res["status"] = "registered"
            else:
                res["reason"] = "no valid tie points (all failed or were filtered as outliers); no output written"
        except Exception as e:  # noqa: BLE001 - what AROSICS raises is the result here
            res["reason"] = f"{type(e).__name__}: {e}"
            res["traceback"] = traceback.format_exc()
    res["total_s"] = round(time.perf_counter() - t0, 3)
    res["warnings"] = sorted({str(w.message).strip().splitlines()[0][:300] for w in caught})
    with open(a.result, "w") as fh:
        json.dump(res, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
