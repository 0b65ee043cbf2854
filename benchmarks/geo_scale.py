"""Scale benchmark of whole-scene registration: time, CPU time, tiles and peak RSS against scene size.

Two scene pairs, both built from the bundled sample (public-domain Landsat-8, geomreg/data/sample) into
--workdir (a cache outside the repository; nothing generated is committed), mirror-tiled so that no seam is
an artificial edge, the moving geotransform shifted by a known sub-pixel offset:

* red-green (default): the reference crop's red band as reference, its green band as moving.
* optical-sar: the part the sample's two scenes share (568 x 536 px): the Landsat red band as reference and
  the SIMULATED SAR-like scene as moving (a cross-modal pair; its no-data stripe is mirrored along).

The registration runs in a fresh child process so its peak RSS and CPU time are its own. The error is the
RMS and the largest distance, over a 9 x 9 grid on the overlap, between the fitted correction and the known
shift, in reference pixels.

    python benchmarks/geo_scale.py --sizes 10000 --matcher cfog          # the CFOG path at 10,000^2
    python benchmarks/geo_scale.py --sizes 4096 10000 20000 --matcher auto --threads 2
    python benchmarks/geo_scale.py --sizes 8640x8592 --pair optical-sar --matcher auto --threads 2   # 74 Mpx

Targets: peak RSS < 2 GB at 20,000 x 20,000 with the default matcher (issue 29; < 2 GB at 10,000^2 with
CFOG, issue 4); the 74 Mpx pair in <= 300 s on 2 cores, error <= 0.5 px. On a shared machine read cpu_s
and peak_rss_mb (wall_s depends on the load). Results go to benchmarks/out/geo_scale.json and are printed
as a Markdown table.
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
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "geomreg" / "geo_scale"
SHIFT_PX = (2.37, -1.61)  # moving georeferencing error, pixels


def _mirror_index(n: int, period: int) -> np.ndarray:
    i = np.arange(n) % (2 * period)
    return np.where(i < period, i, 2 * period - 1 - i)


def _write_mosaic(ref_img: np.ndarray, mov_img: np.ndarray, width: int, height: int, ref_p: Path, mov_p: Path,
                  base, crs, nodata: float | None) -> None:
    import rasterio
    from rasterio.transform import Affine
    from rasterio.windows import Window

    prof = dict(driver="GTiff", width=width, height=height, count=1, dtype="uint16", crs=crs, tiled=True,
                blockxsize=512, blockysize=512, compress="deflate", BIGTIFF="IF_SAFER")
    res = base.a
    shifted = Affine.translation(SHIFT_PX[0] * res, -SHIFT_PX[1] * res) @ base
    h, w = ref_img.shape
    block = 1024
    tmp_r, tmp_m = ref_p.with_suffix(".part.tif"), mov_p.with_suffix(".part.tif")
    with rasterio.open(tmp_r, "w", transform=base, **prof) as r, \
            rasterio.open(tmp_m, "w", transform=shifted, nodata=nodata, **prof) as m:
        for row in range(0, height, block):
            rows = _mirror_index(height, h)[row : row + block]
            for col in range(0, width, block):
                cols = _mirror_index(width, w)[col : col + block]
                win = Window(col, row, len(cols), len(rows))
                r.write(ref_img[np.ix_(rows, cols)], 1, window=win)
                m.write(mov_img[np.ix_(rows, cols)], 1, window=win)
    tmp_r.replace(ref_p)
    tmp_m.replace(mov_p)


def build(width: int, height: int, d: Path, pair: str = "red-green") -> tuple[Path, Path]:
    import rasterio

    from geomreg.geo.sample import sample_pair

    ref_p, mov_p = d / f"{pair}_ref_{width}x{height}.tif", d / f"{pair}_mov_{width}x{height}.tif"
    if ref_p.exists() and mov_p.exists():
        return ref_p, mov_p
    sp = sample_pair()
    with rasterio.open(sp.reference) as src:
        red, green = src.read(1), src.read(2)
        base, crs = src.transform, src.crs
    if pair == "red-green":
        _write_mosaic(red, green, width, height, ref_p, mov_p, base, crs, None)
    elif pair == "optical-sar":
        with rasterio.open(sp.moving) as src:
            sar, nodata = src.read(1), src.nodata
            # The moving scene's true origin (its geotransform minus the known error), in reference pixels.
            dx, dy = sp.truth["georef_error_m"]["dx"], sp.truth["georef_error_m"]["dy"]
            c0 = round((src.transform.c - dx - base.c) / base.a)
            r0 = round((src.transform.f - dy - base.f) / base.e)
        h = min(red.shape[0] - r0, sar.shape[0])
        w = min(red.shape[1] - c0, sar.shape[1])
        shared_base = base * rasterio.Affine.translation(c0, r0)
        _write_mosaic(red[r0 : r0 + h, c0 : c0 + w], sar[:h, :w], width, height, ref_p, mov_p, shared_base, crs, nodata)
    else:
        raise SystemExit(f"unknown pair {pair!r}")
    return ref_p, mov_p


def run_one(ref: str, mov: str, matcher: str, tile: int, tiles: str, max_memory: str | None, write: bool) -> dict:
    """Registration in this (fresh) process; reports its own peak RSS and CPU time."""
    import geomreg

    t0 = time.perf_counter()
    out = Path(mov).with_name(Path(mov).stem + "_registered.tif") if write else None
    reg = geomreg.register(ref, mov, out, matcher=matcher, tile_size=tile, progress=False, overwrite=True, tiles=tiles,
                           max_memory=max_memory)
    wall = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    res = reg.plan.reference.grid.res
    x0, y0, x1, y1 = reg.plan.overlap.bounds
    gx, gy = np.meshgrid(np.linspace(x0, x1, 9), np.linspace(y0, y1, 9))
    err = np.full(gx.shape, np.nan)
    if reg.status == "registered":
        x, y = reg.map_to_reference(gx, gy)
        err = np.hypot(x - (gx - SHIFT_PX[0] * res), y - (gy + SHIFT_PX[1] * res)) / res
    sampled = (reg.sampling or {}).get("tiles_processed", len(reg.plan.tasks))
    return {
        "status": reg.status, "transform": reg.transform_kind, "tiles": len(reg.plan.tasks), "tiles_matched": sampled,
        "wall_s": round(wall, 2), "cpu_s": round(ru.ru_utime + ru.ru_stime, 1),
        "tiles_per_s": round(sampled / max(reg.timings.get("match_s", 0.0), 1e-9), 3), "timings_s": reg.timings,
        "peak_rss_mb": round(ru.ru_maxrss / 1024, 1),
        "error_rms_px": round(float(np.sqrt(np.nanmean(err**2))), 4), "error_max_px": round(float(np.nanmax(err)), 4),
        "uncertainty": reg.uncertainty, "sampling_stopped": (reg.sampling or {}).get("stopped"),
        "rmse_px": round(reg.rmse, 4), "inliers": reg.n_inliers,
    }


def _shape(text: str) -> tuple[int, int]:
    w, _, h = text.lower().partition("x")
    return int(w), int(h or w)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=["10000"], help="N (N x N px) or WxH")
    ap.add_argument("--pair", choices=("red-green", "optical-sar"), default="red-green")
    ap.add_argument("--matcher", default="cfog", help="cfog, regnetmamba2, auto (what `geomreg register` resolves it to)")
    ap.add_argument("--tile-size", type=int, default=512)
    ap.add_argument("--tiles", choices=("auto", "all"), default="auto")
    ap.add_argument("--max-memory", default=None, help="the registration's memory budget (default: geomreg's)")
    ap.add_argument("--threads", type=int, default=1, help="OMP/torch threads of the registration process")
    ap.add_argument("--no-write", action="store_true", help="skip writing the registered raster")
    ap.add_argument("--workdir", type=Path, default=CACHE, help="where the generated scenes are cached (default %(default)s)")
    ap.add_argument("--child", nargs=2, metavar=("REF", "MOV"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_one(args.child[0], args.child[1], args.matcher, args.tile_size, args.tiles, args.max_memory,
                                 not args.no_write)))
        return
    args.workdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for text in args.sizes:
        w, h = _shape(text)
        ref, mov = build(w, h, args.workdir, args.pair)
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
        cmd = [sys.executable, __file__, "--child", str(ref), str(mov), "--matcher", args.matcher, "--tile-size",
               str(args.tile_size), "--tiles", args.tiles] + (["--max-memory", args.max_memory] if args.max_memory else []) \
            + (["--no-write"] if args.no_write else [])
        p = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if p.returncode:
            raise SystemExit(f"registration of {w}x{h} failed:\n{p.stderr[-4000:]}")
        r = json.loads(p.stdout.strip().splitlines()[-1])
        mpx = w * h / 1e6
        r.update(size=f"{w}x{h}", pair=args.pair, matcher=args.matcher, threads=args.threads, megapixels=round(mpx, 2),
                 cpu_s_per_megapixel=round(r["cpu_s"] / mpx, 3))
        rows.append(r)
        print(json.dumps(r), flush=True)
    OUT.mkdir(exist_ok=True)
    (OUT / "geo_scale.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("\n| size (px) | pair | matcher | tiles matched / all | CPU (s) | wall (s) | peak RSS (MB) | error RMS / max (px) | model std max (px) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        std = (r.get("uncertainty") or {}).get("max_std_px")
        print(f"| {r['size']} | {r['pair']} | {r['matcher']} | {r['tiles_matched']} / {r['tiles']} | {r['cpu_s']} | {r['wall_s']} | "
              f"{r['peak_rss_mb']} | {r['error_rms_px']} / {r['error_max_px']} | {std} |")


if __name__ == "__main__":
    main()
