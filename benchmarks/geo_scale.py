"""Scale benchmark of whole-scene registration: wall time, tiles/s and peak RSS against scene size.

A scene pair of N x N pixels is built from real imagery: the bundled Landsat-8 sample (public domain),
mirror-tiled (so no seam is an artificial edge), red band as reference and green band as moving, the
moving geotransform shifted by a known sub-pixel offset. Both are written window by window, and the
registration runs in a fresh child process so its peak RSS is its own.

    python benchmarks/geo_scale.py --sizes 10000            # the 10,000 x 10,000 px target
    python benchmarks/geo_scale.py --sizes 1024 2048 4096   # time should grow linearly with the area

Targets (issue 4): peak RSS < 2 GB at 10,000 x 10,000, time linear in area. Results go to
benchmarks/out/geo_scale.json and are printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parent / "out"
SHIFT_PX = (2.37, -1.61)  # moving georeferencing error, pixels


def _mirror_index(n: int, period: int) -> np.ndarray:
    i = np.arange(n) % (2 * period)
    return np.where(i < period, i, 2 * period - 1 - i)


def build(size: int, d: Path) -> tuple[Path, Path]:
    import rasterio
    from rasterio.transform import Affine
    from rasterio.windows import Window

    from geomreg.geo.sample import sample_pair

    ref_p, mov_p = d / f"ref_{size}.tif", d / f"mov_{size}.tif"
    if ref_p.exists() and mov_p.exists():
        return ref_p, mov_p
    with rasterio.open(sample_pair().reference) as src:
        red, green = src.read(1), src.read(2)
        base = src.transform
        crs = src.crs
    h, w = red.shape
    prof = dict(driver="GTiff", width=size, height=size, count=1, dtype="uint16", crs=crs, tiled=True,
                blockxsize=512, blockysize=512, compress="deflate", BIGTIFF="IF_SAFER")
    res = base.a
    shifted = Affine.translation(SHIFT_PX[0] * res, -SHIFT_PX[1] * res) @ base
    block = 1024
    with rasterio.open(ref_p, "w", transform=base, **prof) as r, rasterio.open(mov_p, "w", transform=shifted, **prof) as m:
        for row in range(0, size, block):
            rows = _mirror_index(size, h)[row : row + block]
            for col in range(0, size, block):
                cols = _mirror_index(size, w)[col : col + block]
                win = Window(col, row, len(cols), len(rows))
                r.write(red[np.ix_(rows, cols)], 1, window=win)
                m.write(green[np.ix_(rows, cols)], 1, window=win)
    return ref_p, mov_p


def run_one(ref: str, mov: str, matcher: str, tile: int) -> dict:
    """Registration in this (fresh) process; reports its own peak RSS."""
    import geomreg

    t0 = time.perf_counter()
    reg = geomreg.register(ref, mov, Path(mov).with_name(Path(mov).stem + "_registered.tif"), matcher=matcher,
                           tile_size=tile, progress=False, overwrite=True)
    wall = time.perf_counter() - t0
    res = reg.plan.reference.grid.res
    cx, cy = reg.plan.overlap.centroid.coords[0]
    x, y = reg.map_to_reference(np.array([cx]), np.array([cy]))
    err = np.hypot(x[0] - (cx - SHIFT_PX[0] * res), y[0] - (cy + SHIFT_PX[1] * res)) / res
    return {
        "status": reg.status, "transform": reg.transform_kind, "tiles": len(reg.plan.tasks), "wall_s": round(wall, 2),
        "tiles_per_s": round(len(reg.plan.tasks) / reg.timings["match_s"], 3), "timings_s": reg.timings,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "error_at_centre_px": round(float(err), 4), "rmse_px": round(reg.rmse, 4), "inliers": reg.n_inliers,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10000])
    ap.add_argument("--matcher", default="cfog")
    ap.add_argument("--tile-size", type=int, default=512)
    ap.add_argument("--workdir", type=Path, default=OUT / "geo_scale_data")
    ap.add_argument("--child", nargs=2, metavar=("REF", "MOV"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child[0], args.child[1], args.matcher, args.tile_size)))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.sizes:
        ref, mov = build(n, args.workdir)
        env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
        p = subprocess.run([sys.executable, __file__, "--child", str(ref), str(mov), "--matcher", args.matcher,
                            "--tile-size", str(args.tile_size)], capture_output=True, text=True, env=env, check=True)
        r = json.loads(p.stdout.strip().splitlines()[-1])
        r.update(size=n, megapixels=round(n * n / 1e6, 2), s_per_megapixel=round(r["wall_s"] / (n * n / 1e6), 2))
        rows.append(r)
        print(json.dumps(r), flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "geo_scale.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("\n| size (px) | tiles | wall (s) | s / Mpx | tiles/s | peak RSS (MB) | error (px) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['size']} | {r['tiles']} | {r['wall_s']} | {r['s_per_megapixel']} | {r['tiles_per_s']} | {r['peak_rss_mb']} | {r['error_at_centre_px']} |")


if __name__ == "__main__":
    main()
