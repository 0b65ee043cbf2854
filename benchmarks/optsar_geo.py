"""Register the real optical-SAR GeoTIFF pair with each matcher and measure the error against its ground truth.

    .venv/bin/python benchmarks/optsar_geo.py [--matchers regnetmamba2,regnetmamba2+cfog,cfog] [--out benchmarks/out/optsar_geo.json]

The pair is ../shared/data/multimodal/opt-sar/cfog_os_geo_utm33n (research data: read here, never bundled).
Its moving geotransform is shifted by a known amount on top of the pair's own ground truth (H_mov_to_ref.txt,
an affine fit to 164 control points), as in tests/geo/test_optsar_shared.py. Printed per matcher: the error of
the registered transform on a 9 x 9 grid over the overlap (reference pixels), the tie points and inliers,
and how the inliers' own errors grow across the scene (slope in px per px: a matcher whose tie points follow
only the translation leaves the pair's 0.75 % scale and 0.9 % shear in them).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import rasterio
from rasterio.transform import Affine

REPO = Path(__file__).resolve().parents[1]
PAIR = REPO.parent / "shared" / "data" / "multimodal" / "opt-sar" / "cfog_os_geo_utm33n"
SHIFT_M = (23.8, -15.4)  # added to the moving geotransform: about (6.8, 4.4) px of 3.5 m

Truth = Callable[[np.ndarray], np.ndarray]  # claimed moving map (x, y) [N, 2] -> true reference map [N, 2]


def shifted_pair(pair: Path, out_dir: Path, shift_m: tuple[float, float] = SHIFT_M) -> tuple[Path, Path, Truth]:
    """Write the moving scene with its geotransform shifted; return (ref, shifted mov, truth)."""
    from geomreg.geo.io import Grid

    with rasterio.open(pair / "mov.tif") as src:
        prof = src.profile.copy()
        data = src.read()
        true_grid = Grid.of_dataset(src)
    prof["transform"] = Affine.translation(*shift_m) @ src.transform
    mov = out_dir / "mov_shifted.tif"
    with rasterio.open(mov, "w", **prof) as dst:
        dst.write(data)
    H = np.loadtxt(pair / "H_mov_to_ref.txt")
    with rasterio.open(pair / "ref.tif") as ref:
        ref_grid = Grid.of_dataset(ref)
    shifted_grid = Grid(true_grid.crs, tuple(prof["transform"][:6]), true_grid.width, true_grid.height)

    def truth(xy: np.ndarray) -> np.ndarray:
        q = shifted_grid.map_to_px(xy)  # claimed map -> moving pixel
        p = np.c_[q, np.ones(len(q))] @ H.T
        return ref_grid.px_to_map(p[:, :2] / p[:, 2:3])  # -> reference pixel -> reference map

    return pair / "ref.tif", mov, truth


def error_px(reg, truth: Truth, margin_m: float = 100.0) -> float:
    """RMS error of reg.map_to_reference against the truth on a 9 x 9 grid over the overlap, in reference pixels."""
    x0, y0, x1, y1 = reg.plan.overlap.bounds
    gx, gy = np.meshgrid(np.linspace(x0 + margin_m, x1 - margin_m, 9), np.linspace(y0 + margin_m, y1 - margin_m, 9))
    ex, ey = reg.map_to_reference(gx, gy)
    t = truth(np.c_[gx.ravel(), gy.ravel()])
    return float(np.sqrt(np.mean((ex.ravel() - t[:, 0]) ** 2 + (ey.ravel() - t[:, 1]) ** 2)) / reg.plan.reference.grid.res)


def inlier_error_slopes(reg, truth: Truth) -> dict[str, float]:
    """Least-squares slopes of the inliers' errors (px) against their reference column and row (px per px)."""
    tp = reg.tie_points[reg.tie_points["inlier"]]
    err = (np.c_[tp["ref_x"], tp["ref_y"]] - truth(np.c_[tp["mov_x"], tp["mov_y"]])) / reg.plan.reference.grid.res
    out = {}
    for j, name in enumerate(("dx", "dy")):
        out[f"{name}_per_col"] = float(np.polyfit(tp["ref_col"], err[:, j], 1)[0])
        out[f"{name}_per_row"] = float(np.polyfit(tp["ref_row"], err[:, j], 1)[0])
    out["within_3px"] = float(np.mean(np.hypot(err[:, 0], err[:, 1]) < 3.0))
    return out


def run(matcher: str, ref: Path, mov: Path, truth: Truth) -> dict:
    import geomreg

    t0 = time.perf_counter()
    reg = geomreg.register(ref, mov, matcher=matcher, tile_size=320, overlap=32, transform="affine", device="cpu", progress=False)
    row = {"matcher": matcher, "status": reg.status, "seconds": round(time.perf_counter() - t0, 2)}
    if reg.status != "registered":
        return row | {"reason": reg.reason}
    return row | {"error_px": error_px(reg, truth), "fit_rmse_px": reg.rmse, "tie_points": len(reg.tie_points),
                  "inliers": int(reg.tie_points["inlier"].sum()), **inlier_error_slopes(reg, truth)}


def repass_errors(matcher: str, ref: Path, mov: Path, truth: Truth, passes: int, work: Path) -> list[float]:
    """Error after each pass when every pass re-registers the moving scene re-georeferenced by the previous one.

    Tells a bias of the matcher's own (it stays) from one that depends on where the matcher starts (it shrinks).
    """
    import geomreg

    kw = dict(matcher=matcher, tile_size=320, overlap=32, transform="affine", device="cpu", progress=False)
    regs = [geomreg.register(ref, mov, **kw)]
    errors = [error_px(regs[0], truth)]
    x0, y0, x1, y1 = regs[0].plan.overlap.bounds
    gx, gy = np.meshgrid(np.linspace(x0 + 100, x1 - 100, 9), np.linspace(y0 + 100, y1 - 100, 9))
    t = truth(np.c_[gx.ravel(), gy.ravel()])
    for k in range(1, passes):
        nxt = work / f"repass_{k}.tif"
        regs[-1].write(nxt, mode="georef", sidecars=False)
        regs.append(geomreg.register(ref, nxt, **kw))
        px, py = gx, gy
        for r in regs:  # claimed map -> each pass's correction in turn
            px, py = r.map_to_reference(px, py)
        errors.append(float(np.sqrt(np.mean((px.ravel() - t[:, 0]) ** 2 + (py.ravel() - t[:, 1]) ** 2)) / regs[0].plan.reference.grid.res))
    return errors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--matchers", default="regnetmamba2,regnetmamba2+cfog,cfog")
    ap.add_argument("--pair", type=Path, default=PAIR)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "optsar_geo.json")
    ap.add_argument("--repasses", type=int, default=0,
                    help="instead: register the first matcher this many times, each pass on the scene re-georeferenced by the last")
    args = ap.parse_args()
    if not (args.pair / "ref.tif").exists():
        sys.exit(f"{args.pair}: the optical-SAR GeoTIFF pair is not there (../shared/data is research data, not bundled)")
    with tempfile.TemporaryDirectory() as tmp:
        ref, mov, truth = shifted_pair(args.pair, Path(tmp))
        if args.repasses:
            matcher = args.matchers.split(",")[0]
            errors = repass_errors(matcher, ref, mov, truth, args.repasses, Path(tmp))
            print(f"{matcher}: error px after each pass: " + ", ".join(f"{e:.2f}" for e in errors))
            return
        rows = [run(m, ref, mov, truth) for m in args.matchers.split(",")]
    print(f"{'matcher':<20} {'error px':>8} {'fit rmse':>8} {'ties':>5} {'inliers':>7} {'dx/col':>8} {'dx/row':>8} {'s':>6}")
    for r in rows:
        if r["status"] != "registered":
            print(f"{r['matcher']:<20} {r['status']}: {r['reason']}")
            continue
        print(f"{r['matcher']:<20} {r['error_px']:8.2f} {r['fit_rmse_px']:8.2f} {r['tie_points']:5d} {r['inliers']:7d} "
              f"{r['dx_per_col']:8.4f} {r['dx_per_row']:8.4f} {r['seconds']:6.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
