"""Write the notebooks in notebooks/ from the cell sources below (without outputs).

The notebooks are generated so that they stay easy to review and maintain: edit this file, run

    .venv/bin/python scripts/make_notebooks.py          # rewrite notebooks/*.ipynb
    .venv/bin/python scripts/make_notebooks.py --check  # exit 1 when a notebook differs from this file

and commit both. CI runs every notebook top to bottom (`pytest --nbmake notebooks`); the outputs are
never committed (scripts/strip_notebooks.py checks and strips them).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"

KERNEL = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
          "language_info": {"name": "python"}}


def md(text: str):
    return new_markdown_cell(textwrap.dedent(text).strip("\n"))


def code(*parts: str):
    """A code cell from one or more source parts (each dedented on its own)."""
    return new_code_cell("\n".join(textwrap.dedent(p).strip("\n") for p in parts))


# A cell shared by the notebooks: the repository root (notebooks run from notebooks/ or the root).
FIND_REPO = '''
from pathlib import Path

REPO = next(p for p in (Path.cwd(), *Path.cwd().parents) if (p / "pyproject.toml").is_file())
'''

# ------------------------------------------------------------------------------------------------
# 01 quickstart
# ------------------------------------------------------------------------------------------------

QUICKSTART = [
    md("""
    # geomreg quickstart: register a scene pair with the Python API

    This notebook registers the **sample scene pair bundled with geomreg**, looks at the result before and
    after, inspects the tie points as a GeoDataFrame and writes the outputs.

    * reference: a 640 x 640 px crop of a real Landsat-8 scene (bands 4/3/2, 30 m, UTM 21N; USGS, public domain);
    * moving: a **simulated** SAR-like image (speckle, remapped contrast) made from an overlapping crop of the
      same scene, **not a real SAR acquisition**. Its georeferencing is deliberately wrong by a known offset
      (`truth.json`), so we can check the answer.

    The same thing from a terminal: `geomreg sample` (or `geomreg register REF MOV -o OUT.tif`).
    """),
    code("""
    %matplotlib inline
    import logging
    import os
    import tempfile
    from pathlib import Path

    import matplotlib.pyplot as plt
    import numpy as np
    import rasterio
    from rasterio.plot import plotting_extent

    import geomreg
    import geomreg.viz as viz
    from geomreg.api import MatcherUnavailable, resolve_matcher
    from geomreg.matching.api import auto_matcher_name
    from geomreg.geo.sample import sample_pair

    logging.basicConfig(level=logging.WARNING)
    print("geomreg", geomreg.__version__)
    """),
    md("""
    ## The matcher

    geomreg's default matcher is the deep network **RegNetMamba-2**. The automatic choice uses it once its packaged
    weights are validated as usable (see docs/MODEL_CARD.md), and the classical **CFOG-style** structural matcher
    otherwise, which handles this optical / SAR-like pair too; `regnetmamba2+cfog` keeps the network's model and lets
    CFOG template matching place the tie points. Set `GEOMREG_NOTEBOOK_MATCHER` to `cfog`, `regnetmamba2` or `regnetmamba2+cfog` to choose.
    """),
    code("""
    choice = os.environ.get("GEOMREG_NOTEBOOK_MATCHER", "auto")
    if choice == "auto":
        chosen, why = auto_matcher_name()  # RegNetMamba-2 only once its own validation says it registers
        try:
            if chosen == "cfog":
                raise MatcherUnavailable(why)
            matcher = resolve_matcher(chosen)
        except MatcherUnavailable as e:
            print(f"note: {e}\\n  -> falling back to the CFOG-style matcher")
            matcher = resolve_matcher("cfog")
    else:
        matcher = resolve_matcher(choice)
    print("matcher:", matcher.name)
    """),
    md("## The sample pair"),
    code("""
    pair = sample_pair()
    for role, path in (("reference", pair.reference), ("moving", pair.moving)):
        with rasterio.open(path) as ds:
            print(f"{role:9s} {path.name}: {ds.width} x {ds.height} px, {ds.count} band(s) {ds.dtypes[0]}, "
                  f"{ds.res[0]:g} m pixels, {ds.crs}, nodata={ds.nodata}")
    print("known georeferencing error of the moving scene (m):", pair.truth["georef_error_m"])
    """),
    code("""
    # Each scene where its own georeferencing puts it (the moving one is off by about 5 x 3 pixels).
    fig, axes = plt.subplots(1, 2, figsize=(11, 5), layout="constrained")
    with rasterio.open(pair.reference) as ds:
        rgb = ds.read([1, 2, 3]).astype(float)
        lo, hi = np.percentile(rgb, [2, 98], axis=(1, 2))
        axes[0].imshow(np.clip((rgb.transpose(1, 2, 0) - lo) / (hi - lo), 0, 1), extent=plotting_extent(ds))
    with rasterio.open(pair.moving) as ds:
        axes[1].imshow(viz.stretch(ds.read(1, masked=True).astype(float).filled(np.nan)), cmap="gray", extent=plotting_extent(ds))
    axes[0].set_title("reference: Landsat-8 (true colour)")
    axes[1].set_title("moving: SIMULATED SAR-like amplitude")
    for ax in axes:
        ax.ticklabel_format(useOffset=False, style="plain")
    """),
    md("""
    ## Register

    `geomreg.register` plans overlapping tiles over the footprint intersection, matches them in batches, fuses the
    tie points into a transform (`auto` chooses translation, affine, homography, polynomial or thin-plate spline
    by held-out residuals) and returns a `Registration`. The sample is small, so 256 px tiles give several tiles.
    """),
    code("""
    reg = geomreg.register(pair.reference, pair.moving, matcher=matcher, tile_size=256, overlap=32)
    reg
    """),
    code("""
    print(f"status {reg.status}: {reg.transform_kind}, RMSE {reg.rmse:.3f} px ({reg.rmse_map:.1f} m), "
          f"CE90 {reg.ce90:.3f} px, {reg.n_inliers} inlier tie points")
    rep = reg.report
    print("correction at the overlap's centre (m):", np.round(rep["transform"]["shift_at_centre_map"], 2))
    print("held-out RMSE of the candidate transforms (px):",
          {k: round(v, 3) for k, v in rep["auto_selection_cv_rmse_px"].items()})
    rep["counts"]
    """),
    md("""
    The sample's answer is known, so compare the recovered correction with it over the whole overlap
    (`map_to_reference` maps the moving scene's map coordinates to the reference's).
    """),
    code("""
    x0, y0, x1, y1 = reg.plan.overlap.bounds
    gx, gy = np.meshgrid(np.linspace(x0, x1, 11), np.linspace(y0, y1, 11))
    ex, ey = reg.map_to_reference(gx, gy)
    tx, ty = pair.true_map_to_reference(gx, gy)
    err_px = np.hypot(ex - tx, ey - ty) / pair.truth["pixel_size_m"]
    print(f"error against the known answer: RMSE {np.sqrt(np.mean(err_px ** 2)):.3f} px, max {err_px.max():.3f} px")
    assert reg.ok and err_px.max() < 1.0, "the sample pair should register to better than a pixel"
    """),
    md("""
    ## Before and after

    `geomreg.viz` reads windows of the reference and of the moving scene brought onto the reference grid, once with
    the moving scene's own georeferencing (before) and once with the fitted correction (after; the same mapping as
    the written output). In a checkerboard, misregistration shows as roads and shores broken at the cell edges.
    """),
    code("""
    im = viz.display_images(reg)  # reference, moving before, moving after on one display grid
    viz.plot_checkerboard(im)
    """),
    code("""
    # Zoom on 160 x 160 reference pixels at full resolution: the 5 x 3 px offset is plain to see before.
    viz.plot_checkerboard(reg, window=(200, 200, 160, 160), tiles=6)
    """),
    code("""
    viz.plot_swipe(im, position=0.5)
    """),
    md("""
    ## Tie points as a GeoDataFrame

    One point per tie point in the reference CRS, with map and pixel coordinates on both sides, the matcher's
    confidence, the residual to the fitted transform (reference pixels and metres), the inlier flag and the tile.
    """),
    code("""
    tp = reg.tie_points
    print(type(tp).__name__, len(tp), "points, CRS EPSG:", tp.crs.to_epsg())
    tp.head()
    """),
    code("""
    tp.groupby("tile_id").agg(tie_points=("inlier", "size"), inliers=("inlier", "sum"),
                              median_residual_px=("residual_px", "median"), mean_confidence=("confidence", "mean")).round(3)
    """),
    code("""
    tp.to_crs(4326).geometry.head(3)  # any GeoPandas operation works: reprojection, spatial joins, ...
    """),
    code("""
    viz.plot_tie_points(reg)
    """),
    code("""
    # Residual vectors, exaggerated: a systematic pattern would mean the transform is too simple.
    viz.plot_residual_vectors(reg)
    """),
    code("""
    # One tile and its moving search window, joined by the tile's tie points (green: inliers).
    viz.plot_tile_matches(reg)
    """),
    md("""
    ## Write the outputs

    `reg.write` writes the moving scene resampled onto the reference grid (a COG; every band, same dtype, nodata
    kept) and, next to it, the tie points (GeoPackage), a QGIS Georeferencer `.points` file and the JSON report.
    Every file is written to a temporary name and renamed when complete.
    """),
    code("""
    out_dir = Path(tempfile.mkdtemp(prefix="geomreg-quickstart-"))
    written = reg.write(out_dir / "moving_registered.tif")
    for kind, path in written.items():
        print(f"{kind:12s} {Path(path).name:36s} {Path(path).stat().st_size / 1e3:8.1f} kB")
    """),
    code("""
    import geopandas as gpd
    import rioxarray

    out = rioxarray.open_rasterio(written["raster"])
    ref = rioxarray.open_rasterio(pair.reference)
    print("on the reference grid:", out.rio.crs == ref.rio.crs and out.rio.transform() == ref.rio.transform()
          and out.shape[1:] == ref.shape[1:])
    layer = gpd.read_file(written["tie_points"])
    print("GeoPackage layer:", len(layer), "points;", ", ".join(layer.columns[:8]), "...")
    print(*(line[:110] for line in Path(written["qgis_points"]).read_text().splitlines()[:3]), sep="\\n")
    out
    """),
]

# ------------------------------------------------------------------------------------------------
# 02 batch on Dask
# ------------------------------------------------------------------------------------------------

BATCH = [
    md("""
    # Batch co-registration on Dask

    The `pipelines` package registers every pair of a manifest on a **Dask distributed** cluster. The tiles of
    all pairs are the tasks, so one large scene spreads over all workers; each pair is fused and written as soon
    as its tiles are done, with exactly the steps of `geomreg register`.

    Here: a small manifest of sub-scenes cut from the bundled sample pair (one of them deliberately bad), a
    `LocalCluster` of two worker processes on 127.0.0.1, its dashboard link, a progress bar and the summary table.
    The same from a terminal: `geomreg batch MANIFEST.csv --out DIR [--workers N | --scheduler tcp://HOST:PORT]`.

    **Processes in a notebook.** A `LocalCluster` starts its workers as new processes (spawn). In a *script* the
    code that starts it must sit under `if __name__ == "__main__":`, since each spawned process imports the main
    module. A notebook needs no guard: the functions the workers run live in the importable `pipelines` and
    `geomreg` modules, so a worker process needs nothing from the notebook.
    """),
    code("""
    %matplotlib inline
    import contextlib
    import csv
    import os
    import tempfile
    from pathlib import Path

    import geopandas as gpd
    import pandas as pd
    import rasterio
    from rasterio.windows import Window, from_bounds

    import geomreg.viz as viz
    from geomreg.api import MatcherUnavailable, resolve_matcher
    from geomreg.matching.api import auto_matcher_name
    from geomreg.geo.sample import sample_pair
    from pipelines import BatchDefaults, ClusterOptions, format_table, load_manifest, open_client, run_batch, write_summary
    from pipelines.cluster import describe
    from pipelines.report import rows
    """),
    md("""
    CPU workers use the fast CFOG-style matcher here (set `GEOMREG_NOTEBOOK_MATCHER=auto` to use RegNetMamba-2
    when its weights are installed; on GPU workers each worker loads the model once).
    """),
    code("""
    MATCHER = os.environ.get("GEOMREG_NOTEBOOK_MATCHER", "cfog")
    if MATCHER == "auto":
        try:
            chosen, why = auto_matcher_name()
            if chosen == "cfog":
                raise MatcherUnavailable(why)
            resolve_matcher(chosen)
            MATCHER = chosen
        except MatcherUnavailable as e:
            print(f"note: {e}\\n  -> falling back to the CFOG-style matcher")
            MATCHER = "cfog"
    print("matcher:", MATCHER)
    """),
    md("""
    ## A small manifest

    Three overlapping sub-scenes of the sample pair (each a real georeferenced GeoTIFF: the same pixels with the
    window's own geotransform), and one pair whose footprints do not overlap, to show how a bad pair is reported.
    """),
    code("""
    work = Path(tempfile.mkdtemp(prefix="geomreg-batch-"))
    scenes, out_dir = work / "scenes", work / "out"
    scenes.mkdir()
    pair = sample_pair()


    def crop(src_path: Path, window: Window, dst: Path) -> Path:
        \"\"\"A georeferenced sub-scene: the window's pixels with the window's own geotransform.\"\"\"
        with rasterio.open(src_path) as src:
            window = window.intersection(Window(0, 0, src.width, src.height)).round_offsets().round_lengths()
            profile = src.profile | {"width": window.width, "height": window.height, "transform": src.window_transform(window),
                                     "tiled": True, "blockxsize": 128, "blockysize": 128, "compress": "deflate"}
            with rasterio.open(dst, "w", **profile) as out:
                out.write(src.read(window=window))
        return dst


    def moving_window(ref_window: Window) -> Window:
        \"\"\"The moving scene's window over the same map area as a reference window (by its own georeferencing).\"\"\"
        with rasterio.open(pair.reference) as ref, rasterio.open(pair.moving) as mov:
            return from_bounds(*rasterio.windows.bounds(ref_window, ref.transform), transform=mov.transform)


    manifest_rows = []
    for name, (col, row) in {"a": (120, 90), "b": (300, 300), "c": (300, 100)}.items():
        w = Window(col, row, 320, 320)
        crop(pair.reference, w, scenes / f"ref_{name}.tif")
        crop(pair.moving, moving_window(w), scenes / f"mov_{name}.tif")
        manifest_rows.append({"reference": f"scenes/ref_{name}.tif", "moving": f"scenes/mov_{name}.tif"})
    # A bad pair: this moving sub-scene lies outside the reference window a.
    crop(pair.moving, Window(420, 420, 200, 200), scenes / "mov_far.tif")
    manifest_rows.append({"reference": "scenes/ref_a.tif", "moving": "scenes/mov_far.tif"})

    manifest = work / "pairs.csv"
    with manifest.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["reference", "moving", "output", "tile_size", "overlap"])
        writer.writeheader()
        for r in manifest_rows:
            writer.writerow(r | {"output": "", "tile_size": 192, "overlap": 32})  # empty output: DIR/<moving>_registered.tif
    print(manifest.read_text())
    """),
    code("""
    jobs = load_manifest(manifest, out_dir, BatchDefaults(matcher=MATCHER))
    pd.DataFrame([{"#": j.index, "reference": Path(j.reference).name, "moving": Path(j.moving).name,
                   "output": Path(j.output).name, "tile_size": j.config.tile_size, "matcher": j.matcher} for j in jobs])
    """),
    md("""
    ## The cluster

    `open_client` starts a `LocalCluster` of worker processes sized to the machine (here: two, single-threaded),
    listening on 127.0.0.1 only, dashboard included (port 0: any free port). From a remote Jupyter, forward the
    dashboard's port over SSH. With `ClusterOptions(scheduler="tcp://HOST:PORT")` the same code runs on an existing
    cluster (dask-jobqueue, dask-kubernetes, Dask Gateway, ...), honouring Dask's TLS settings.
    """),
    code("""
    stack = contextlib.ExitStack()  # keeps the cluster open across cells; stack.close() shuts it down
    cluster = stack.enter_context(open_client(ClusterOptions(workers=2, threads_per_worker=1, device="cpu",
                                                             dashboard_address="127.0.0.1:0")))
    print(describe(cluster))
    print("dashboard:", cluster.dashboard)
    """),
    md("## Run the batch (progress bar: tiles done; the dashboard shows the tasks live)"),
    code("""
    result = run_batch(cluster.client, jobs, device="cpu", gpu=cluster.gpu, op_threads=cluster.op_threads)
    print(format_table(result))
    """),
    code("""
    summary = pd.DataFrame(rows(result))
    summary[["pair", "status", "transform", "tie_points", "inliers", "rmse_px", "tiles", "seconds", "reason"]]
    """),
    code("""
    statuses = [p.status for p in result.pairs]
    assert statuses[:3] == ["registered"] * 3 and statuses[3] != "registered", statuses
    print("summary files:", {k: v.name for k, v in write_summary(result, out_dir).items()})
    sorted(p.name for p in out_dir.iterdir())
    """),
    md("""
    Every sub-scene carries the sample's known georeferencing error, so each pair's correction (from its JSON
    report, at the centre of the overlap) can be checked against it.
    """),
    code("""
    import json

    import numpy as np

    true_shift = np.array(pair.truth["moving_to_reference_affine"])[[2, 5]]  # a pure translation, in metres
    checks = []
    for p in result.pairs:
        if p.status == "registered":
            rep = json.loads(Path(p.outputs["report"]).read_text())
            shift = np.array(rep["transform"]["shift_at_centre_map"])
            err_px = float(np.hypot(*(shift - true_shift))) / pair.truth["pixel_size_m"]
            checks.append({"pair": p.name, "transform": p.transform, "shift_x_m": shift[0], "shift_y_m": shift[1],
                           "error_px": err_px})
    checks = pd.DataFrame(checks).round(3)
    assert (checks["error_px"] < 1.0).all()
    print("true correction (m):", true_shift)
    checks
    """),
    md("""
    Running the same manifest again skips the pairs whose outputs are complete (outputs are written atomically, so
    a half-written one never counts) and retries the rest: an interrupted batch is finished by running it again.
    """),
    code("""
    again = run_batch(cluster.client, jobs, device="cpu", gpu=cluster.gpu, op_threads=cluster.op_threads, progress=False)
    print(format_table(again))
    assert [p.status for p in again.pairs][:3] == ["skipped"] * 3
    """),
    code("""
    stack.close()  # shuts the workers and the scheduler down
    """),
    md("The outputs are those of `geomreg register`, e.g. the tie points of pair 1 from its GeoPackage:"),
    code("""
    first = Path(result.pairs[0].outputs["tie_points"])
    viz.plot_tie_points(gpd.read_file(first))
    """),
]

# ------------------------------------------------------------------------------------------------
# 03 accuracy
# ------------------------------------------------------------------------------------------------

ACCURACY = [
    md("""
    # Accuracy benchmark on a dataset directory

    `benchmarks/accuracy.py` measures matchers on a dataset directory laid out as `MANIFEST.csv` +
    `<modality>/<pair>/{ref,mov}.*` + `H_mov_to_ref.txt`. Protocol: each moving image is put onto its reference
    with the ground truth, then warped by a seeded random homography (rotation +-10 deg, scale +-10 %, translation
    +-8 %, mild perspective); each method matches the pair, a homography is fitted to its matches with MAGSAC
    (3 px) and scored by its RMSE on a grid of valid reference pixels. Success = RMSE <= 3 / 5 / 10 px.

    This notebook runs a **tiny** version so that it runs in CI within a few minutes: the validation split of
    `../shared/data/train` (2 pairs per modality, CFOG and SIFT only). That data is research-only: it is read,
    never bundled. Without it, the notebook builds a small **synthetic** dataset from the bundled public-domain
    Landsat-8 crop instead. Set `GEOMREG_ACCURACY_DATA` to use another dataset directory. The full benchmark
    (all methods, the held-out evaluation set) is a command, see the end.
    """),
    code(FIND_REPO, """
    %matplotlib inline
    import json
    import os
    import sys
    import tempfile

    import cv2
    import matplotlib.pyplot as plt
    import numpy as np
    import pandas as pd
    import rasterio
    from IPython.display import Markdown, display

    sys.path.insert(0, str(REPO))  # benchmarks/ is a folder of scripts, not an installed package
    from benchmarks import accuracy

    import geomreg.viz as viz
    from geomreg.data.manifest import read_manifest
    from geomreg.evaluation.runner import EvalConfig, pair_instances
    from geomreg.geo.sample import sample_pair
    from geomreg.matching.cfog import CFOGMatcher
    """),
    md("""
    ## The dataset

    The synthetic fallback (used only when no dataset directory is found): 256 x 256 px crops of the Landsat-8
    sample with **simulated** modality changes (another band, inverted contrast, SAR-like speckle) and a known
    random similarity between reference and moving image.
    """),
    code("""
    def synthetic_dataset(root: Path, pairs_per_modality: int = 2, size: int = 256, seed: int = 0) -> Path:
        \"\"\"A tiny MANIFEST.csv dataset from the bundled Landsat-8 crop, with SYNTHETIC modality changes.\"\"\"
        import csv

        from PIL import Image

        rng = np.random.default_rng(seed)
        with rasterio.open(sample_pair().reference) as ds:
            red, green, blue = ds.read().astype(np.float64)

        def u8(a):
            lo, hi = np.percentile(a, [1, 99])
            return np.clip(255 * (a - lo) / (hi - lo + 1e-9), 0, 255).astype(np.uint8)

        modalities = {
            "opt-opt": lambda r, g, b: (u8(r), u8(b)),
            "vis-ir": lambda r, g, b: (u8(g), 255 - u8(r)),
            "opt-sar": lambda r, g, b: (u8(r), u8(g * rng.gamma(4.0, 0.25, g.shape))),
        }
        rows, c = [], (size - 1) / 2
        for mod, make in modalities.items():
            for k in range(pairs_per_modality):
                y, x = rng.integers(0, red.shape[0] - size, 2)
                ref, mov_on_ref = make(*(b[y : y + size, x : x + size] for b in (red, green, blue)))
                a, s = np.deg2rad(rng.uniform(-5, 5)), rng.uniform(0.95, 1.05)
                tx, ty = rng.uniform(-8, 8, 2)
                H = np.array([[s * np.cos(a), -s * np.sin(a), 0], [s * np.sin(a), s * np.cos(a), 0], [0, 0, 1]])
                H[:2, 2] = [c + tx, c + ty] - H[:2, :2] @ [c, c]  # moving pixel -> reference pixel
                mov = cv2.warpPerspective(mov_on_ref, np.linalg.inv(H), (size, size), flags=cv2.INTER_LINEAR)
                d = root / mod / f"syn_{mod}_{k}"
                d.mkdir(parents=True, exist_ok=True)
                Image.fromarray(ref).save(d / "ref.png")
                Image.fromarray(mov).save(d / "mov.png")
                np.savetxt(d / "H_mov_to_ref.txt", H, header="mov -> ref (SYNTHETIC)")
                rel = f"{mod}/syn_{mod}_{k}"
                rows.append({"pair_id": f"syn_{mod}_{k}", "modality": mod, "ref_path": f"{rel}/ref.png", "mov_path": f"{rel}/mov.png",
                             "aligned": "no", "gt": f"{rel}/H_mov_to_ref.txt", "width": size, "height": size})
        with (root / "MANIFEST.csv").open("w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        return root


    work = Path(tempfile.mkdtemp(prefix="geomreg-accuracy-"))
    DATA = Path(os.environ.get("GEOMREG_ACCURACY_DATA", REPO.parent / "shared" / "data" / "train"))
    if (DATA / "MANIFEST.csv").is_file():
        SPLIT = "val"  # the validation split training uses
    else:
        print(f"note: no dataset at {DATA}; using a small SYNTHETIC dataset built from the bundled sample")
        DATA, SPLIT = synthetic_dataset(work / "synthetic"), "all"
    records = read_manifest(DATA)
    print(f"{DATA}: {len(records)} pairs;", pd.Series([r.modality for r in records]).value_counts().to_dict())
    """),
    md("## Run the benchmark (the same code as the command line)"),
    code("""
    OUT = work / "report"
    args = ["--data", str(DATA), "--split", SPLIT, "--max-pairs", "2", "--methods", "cfog,sift",
            "--out", str(OUT), "--seed", "0", "--no-progress"]
    print("python benchmarks/accuracy.py " + " ".join(args), end="\\n\\n")
    assert accuracy.main(args) == 0
    """),
    code("""
    display(Markdown((OUT / "accuracy_warped.md").read_text()))
    """),
    code("""
    inst = pd.read_csv(OUT / "accuracy_warped_instances.csv")
    doc = json.loads((OUT / "accuracy_warped.json").read_text())
    thresholds = doc["success_thresholds_px"]
    summ = pd.DataFrame(doc["summaries"])
    for i, t in enumerate(thresholds):
        summ[f"ok@{t:g}px"] = summ["success"].str[i]
    summ = summ.drop(columns="success")
    inst.head()
    """),
    md("## Plots"),
    code("""
    methods = list(dict.fromkeys(inst["method"]))
    mods = sorted(inst["modality"].unique())
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), layout="constrained")

    # Success rate at the strictest and the loosest threshold, per modality and method.
    per_mod = summ[summ["modality"] != "all"]
    width = 0.8 / len(methods)
    for k, m in enumerate(methods):
        s = per_mod[per_mod["method"] == m].set_index("modality").reindex(mods)
        x = np.arange(len(mods)) + k * width
        axes[0].bar(x, s[f"ok@{thresholds[-1]:g}px"], width, alpha=0.35, color=f"C{k}")
        axes[0].bar(x, s[f"ok@{thresholds[0]:g}px"], width, color=f"C{k}", label=m)
    axes[0].set_xticks(np.arange(len(mods)) + 0.4 - width / 2, mods, rotation=30)
    axes[0].set_ylim(0, 1)
    axes[0].set_ylabel(f"success rate (solid: <= {thresholds[0]:g} px, light: <= {thresholds[-1]:g} px)")
    axes[0].legend()

    # Grid RMSE of every instance; failed fits (no homography) drawn at the top.
    cap = 200.0
    for k, m in enumerate(methods):
        d = inst[inst["method"] == m]
        x = d["modality"].map({mod: i for i, mod in enumerate(mods)}) + k * width
        r = d["grid_rmse"].replace(np.inf, np.nan).astype(float)
        axes[1].scatter(x, r.clip(upper=cap).fillna(cap), color=f"C{k}", label=m,
                        marker="o", s=np.where(r.isna() | (r > cap), 40, 25))
    for t in thresholds:
        axes[1].axhline(t, color="grey", lw=0.8, ls="--")
    axes[1].set_yscale("log")
    axes[1].set_xticks(np.arange(len(mods)) + 0.4 - width / 2, mods, rotation=30)
    axes[1].set_ylabel(f"grid RMSE per instance (px; failures at {cap:g})")
    axes[1].legend();
    """),
    code("""
    fig, ax = plt.subplots(figsize=(6, 3), layout="constrained")
    inst.groupby("method")["seconds"].mean().plot.barh(ax=ax)
    ax.set_xlabel("seconds per match call (mean)");
    """),
    md("""
    ## Matches of one instance

    The instance on which CFOG did best, with its matches: green lines are correct (within 3 px of the ground
    truth), red ones are not.
    """),
    code("""
    best = inst[inst["method"] == "cfog"].sort_values("grid_rmse").iloc[0]
    rec = next(r for r in records if r.pair_id == best["pair_id"])
    example = pair_instances(rec, EvalConfig(seed=0))[int(best["instance"])]
    res = CFOGMatcher().match(example.ref, example.mov)
    proj = cv2.perspectiveTransform(res.ref_xy.reshape(-1, 1, 2), example.H_ref_to_mov).reshape(-1, 2)
    correct = np.hypot(*(proj - res.mov_xy).T) <= 3.0
    viz.plot_matches(example.ref, example.mov, res, inlier=correct,
                     title=f"{rec.modality} {rec.pair_id}: {correct.sum()} of {len(res)} CFOG matches correct")
    """),
    md("""
    ## The full benchmark

    The numbers above come from a few pairs and say little. The benchmark tables are made by the command (all four
    methods; RegNetMamba-2 needs its weights, DISK + LightGlue needs `geomreg[bench]` and its weights):

    ```
    python benchmarks/accuracy.py --data ../shared/data/train --split val --max-pairs 10 \\
        --methods regnetmamba2,cfog,sift,disk_lightglue --out benchmarks/out
    ```

    and the same with `--data ../shared/data/multimodal --split all` on the held-out evaluation set (for
    reporting only; it is never used for tuning). `--mode raw` scores the pairs with their own geometry instead.
    """),
]

NOTEBOOKS_SPEC = {
    "01_quickstart.ipynb": QUICKSTART,
    "02_batch_dask.ipynb": BATCH,
    "03_accuracy.ipynb": ACCURACY,
}


def build(cells: list) -> nbformat.NotebookNode:
    nb = new_notebook(cells=cells, metadata=KERNEL)
    # Stable cell ids: regenerating an unchanged notebook gives the same bytes (clean diffs).
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"cell-{i:02d}"
    nbformat.validate(nb)
    return nb


def render(nb: nbformat.NotebookNode) -> str:
    return nbformat.writes(nb) + "\n"


def build_all() -> dict[Path, str]:
    return {NOTEBOOKS / name: render(build(cells)) for name, cells in NOTEBOOKS_SPEC.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="exit 1 if a notebook differs from this generator")
    args = ap.parse_args(argv)
    stale = []
    for path, text in build_all().items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(path)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.part")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)  # never a half-written notebook
        print(f"wrote {path.relative_to(REPO)}")
    if stale:
        print("out of date (run scripts/make_notebooks.py): " + ", ".join(str(p.relative_to(REPO)) for p in stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
