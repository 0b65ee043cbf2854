"""Make the README pictures in docs/img/ from the bundled sample pair.

    .venv/bin/python scripts/make_readme_figures.py [--matcher auto|cfog|regnetmamba2] [--out docs/img]

Registers the sample pair (Landsat-8 reference, SIMULATED SAR-like moving scene) exactly like
notebooks/01_quickstart.ipynb and writes, with geomreg.viz:

* sample_checkerboard.png       before / after checkerboard over the whole overlap
* sample_checkerboard_zoom.png  the same on 160 x 160 reference pixels at full resolution
* sample_tie_points.png         tie points over the reference, coloured by residual
* sample_residuals.png          residual vectors (quiver)
* sample_tile_matches.png       one tile and its search window joined by its tie points
* README_figures.json           what made them: matcher, transform, RMSE, error against the known answer

`auto` uses RegNetMamba-2 when its weights are installed, else the CFOG-style matcher (said in the JSON).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # a script: no display needed

import numpy as np  # noqa: E402

import geomreg  # noqa: E402
import geomreg.viz as viz  # noqa: E402
from geomreg.api import MatcherUnavailable, resolve_matcher  # noqa: E402
from geomreg.geo.sample import sample_pair  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DPI = 100
log = logging.getLogger("make_readme_figures")


def _matcher(name: str):
    if name != "auto":
        return resolve_matcher(name)
    try:
        return resolve_matcher("regnetmamba2")
    except MatcherUnavailable as e:
        log.warning("%s; using the CFOG-style matcher", e)
        return resolve_matcher("cfog")


def _save(fig, path: Path) -> None:
    from PIL import Image

    tmp = path.with_name(f".{path.stem}.part.png")
    try:
        fig.savefig(tmp, dpi=DPI)
        # A 256-colour palette: grey imagery and a few colour maps survive it, the file shrinks 3-4 x.
        with Image.open(tmp) as im:
            im.convert("RGB").quantize(256, method=Image.Quantize.MEDIANCUT).save(tmp, optimize=True)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    print(f"wrote {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--matcher", default="auto", choices=("auto", "cfog", "regnetmamba2"))
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "img")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        matcher = _matcher(args.matcher)
    except MatcherUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)

    pair = sample_pair()
    reg = geomreg.register(pair.reference, pair.moving, matcher=matcher, tile_size=256, overlap=32, progress=False)
    if not reg.ok:
        print(f"error: the sample pair did not register: {reg.reason}", file=sys.stderr)
        return 1
    im = viz.display_images(reg)
    _save(viz.plot_checkerboard(im, figsize=(11, 5.2)), args.out / "sample_checkerboard.png")
    _save(viz.plot_checkerboard(reg, window=(200, 200, 160, 160), tiles=6, figsize=(11, 5.2)), args.out / "sample_checkerboard_zoom.png")
    _save(viz.plot_tie_points(reg, figsize=(7, 5.8)), args.out / "sample_tie_points.png")
    _save(viz.plot_residual_vectors(reg, figsize=(7, 5.8)), args.out / "sample_residuals.png")
    _save(viz.plot_tile_matches(reg, max_lines=120), args.out / "sample_tile_matches.png")

    # The error against the sample's known answer, over the overlap (as `geomreg sample` reports it).
    x0, y0, x1, y1 = reg.plan.overlap.bounds
    gx, gy = np.meshgrid(np.linspace(x0, x1, 11), np.linspace(y0, y1, 11))
    ex, ey = reg.map_to_reference(gx, gy)
    tx, ty = pair.true_map_to_reference(gx, gy)
    err = np.hypot(ex - tx, ey - ty) / pair.truth["pixel_size_m"]
    meta = {
        "command": "python scripts/make_readme_figures.py --matcher " + args.matcher,
        "matcher": getattr(matcher, "name", type(matcher).__name__),
        "tile_size": 256, "overlap": 32,
        "transform": reg.transform_kind, "rmse_px": round(reg.rmse, 3), "ce90_px": round(reg.ce90, 3),
        "tie_points": len(reg.tie_points), "inliers": reg.n_inliers,
        "error_vs_truth_rmse_px": round(float(np.sqrt(np.mean(err**2))), 3), "error_vs_truth_max_px": round(float(err.max()), 3),
        "geomreg": geomreg.__version__,
    }
    p = args.out / "README_figures.json"
    tmp = p.with_name(f".{p.name}.part")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    os.replace(tmp, p)
    print(json.dumps(meta, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
