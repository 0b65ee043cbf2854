"""AROSICS (COREG_LOCAL) and `geomreg register` side by side, on the same pairs, against a known truth.

Pairs:
* optical-optical, built from the bundled Landsat-8 sample (public domain): the reference is a 576 px crop
  of band 4 (red); each moving scene is band 4, 3 or 2 resampled (cubic) so that its georeferencing is
  off by a known map transform (translations, and an affine one with rotation and scale);
* optical-SAR, real: ../shared/data/multimodal/opt-sar/cfog_os_geo_utm33n (research data, read only)
  with its moving geotransform shifted by a known amount on top of the pair's own ground truth
  (H_mov_to_ref.txt), as in tests/geo/test_optsar_shared.py.

Both methods get the same search range (max shift, px). AROSICS runs in its own environment
(benchmarks/arosics/setup.sh) through benchmarks/arosics/run_arosics.py; geomreg runs as its CLI
(`geomreg register ... --progress-json`). Each is a fresh process with OMP_NUM_THREADS=1 (AROSICS CPUs=1).

Error: on a 9 x 9 grid of moving pixels over the central 70 % of the moving scene, the corrected map
position each method gives that pixel against the true one, RMSE and max in reference pixels. For
geomreg the fitted transform from its report; for AROSICS the thin-plate spline through the GCPs it
warps its output with (GDAL's GCP transformer, as its DESHIFTER does).

    .venv/bin/python benchmarks/arosics_compare.py            # -> benchmarks/out/arosics_compare.{md,json}
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import cv2
import numpy as np
import rasterio
from rasterio.control import GroundControlPoint
from rasterio.transform import Affine, GCPTransformer

ROOT = Path(__file__).resolve().parents[1]
AROSICS_PY = ROOT / "benchmarks" / "arosics" / ".venv-arosics" / "bin" / "python"
RUNNER = ROOT / "benchmarks" / "arosics" / "run_arosics.py"
OPTSAR = ROOT.parent / "shared" / "data" / "multimodal" / "opt-sar" / "cfog_os_geo_utm33n"
OPTSAR_SHIFT_M = (23.8, -15.4)  # added to the moving geotransform (about 6.8, 4.4 px of 3.5 m)
CROP_MARGIN, CROP_SIZE = 32, 576  # the optical reference: sample pixels [32, 608) in both directions
TILE_ARGS = ["--tile-size", "256", "--overlap", "32"]  # scenes of ~600 px: several tiles to fuse

MapFn = Callable[[np.ndarray], np.ndarray]  # [N, 2] claimed moving map coordinates -> true map coordinates


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    reference: Path
    moving: Path
    truth: MapFn
    max_shift_px: int
    ref_band: int  # band AROSICS matches on (1-based); geomreg uses its automatic choice (luminance)
    mov_band: int


# --------------------------------------------------------------------------------------------------
# scenes
# --------------------------------------------------------------------------------------------------


def _px_to_map(A: Affine, px: np.ndarray) -> np.ndarray:
    """Centre-origin pixel coordinates (x=col, y=row) -> map coordinates."""
    c, r = px[:, 0] + 0.5, px[:, 1] + 0.5
    return np.c_[A.a * c + A.b * r + A.c, A.d * c + A.e * r + A.f]


def _map_to_px(A: Affine, xy: np.ndarray) -> np.ndarray:
    inv = ~A
    c = inv.a * xy[:, 0] + inv.b * xy[:, 1] + inv.c
    r = inv.d * xy[:, 0] + inv.e * xy[:, 1] + inv.f
    return np.c_[c - 0.5, r - 0.5]


def _write(path: Path, data: np.ndarray, crs, transform: Affine, nodata=None) -> Path:
    data = data[None] if data.ndim == 2 else data
    prof = dict(driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0], dtype=data.dtype.name,
                crs=crs, transform=transform, tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    if nodata is not None:
        prof["nodata"] = nodata
    with rasterio.open(path, "w", **prof) as ds:
        ds.write(data)
    return path


def _affine_map_fn(centre: np.ndarray, angle_deg: float, scale: float, shift_px: tuple[float, float], res: float) -> MapFn:
    """Claimed -> true map coordinates: rotation/scale about `centre`, then a shift given in pixels
    (x right, y down) of `res` metres."""
    a = math.radians(angle_deg)
    R = scale * np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]])
    d = np.array([shift_px[0] * res, -shift_px[1] * res])
    return lambda xy: (np.asarray(xy, np.float64) - centre) @ R.T + centre + d


def optical_cases(work: Path) -> list[Case]:
    from geomreg.geo.sample import sample_pair

    sample = sample_pair().reference
    with rasterio.open(sample) as src:
        bands = src.read().astype(np.float32)  # B4 red, B3 green, B2 blue
        tex_A, crs = src.transform, src.crs
    m, n = CROP_MARGIN, CROP_SIZE
    A = tex_A * Affine.translation(m, m)
    res = tex_A.a
    ref = _write(work / "optical_ref_red.tif", np.clip(bands[0, m : m + n, m : m + n], 1, 65535).astype("uint16"), crs, A)
    centre = _px_to_map(A, np.array([[n / 2 - 0.5, n / 2 - 0.5]]))[0]

    def moving(name: str, band: int, T: MapFn) -> Path:
        # Every moving pixel shows the texture at the true position of its claimed map coordinates.
        c, r = np.meshgrid(np.arange(n, dtype=np.float64), np.arange(n, dtype=np.float64))
        claimed = _px_to_map(A, np.c_[c.ravel(), r.ravel()])
        tp = _map_to_px(tex_A, T(claimed)).astype(np.float32)
        mx, my = tp[:, 0].reshape(n, n), tp[:, 1].reshape(n, n)
        img = cv2.remap(bands[band - 1], mx, my, cv2.INTER_CUBIC, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        inside = (mx >= 1) & (my >= 1) & (mx <= bands.shape[2] - 2) & (my <= bands.shape[1] - 2)
        img = np.where(inside, np.clip(img, 1, 65535), 0).astype("uint16")
        return _write(work / f"{name}.tif", img, crs, A, nodata=0)

    names = {1: "red", 2: "green", 3: "blue"}
    specs = [
        ("O1", 1, 0.0, 1.0, (3.4, -2.7), 16, "translation (+3.4, -2.7) px"),
        ("O2", 2, 0.0, 1.0, (-7.25, 4.6), 16, "translation (-7.25, +4.6) px"),
        ("O3", 3, 0.4, 1.003, (5.0, 3.0), 16, "affine: 0.4 deg, scale 1.003, (+5, +3) px"),
        ("O4", 2, 0.0, 1.0, (18.3, -12.6), 32, "translation (+18.3, -12.6) px"),
    ]
    cases = []
    for name, band, ang, sc, shift_px, ms, what in specs:
        T = _affine_map_fn(centre, ang, sc, shift_px, res)
        mov = moving(f"optical_{name}_{names[band]}", band, T)
        cases.append(Case(name, f"Landsat-8 red -> {names[band]}, {what}", ref, mov, T, ms, 1, 1))
    return cases


def optsar_case(work: Path) -> Case | None:
    if not (OPTSAR / "ref.tif").exists():
        print(f"note: {OPTSAR} not found: the optical-SAR pair is left out", file=sys.stderr)
        return None
    with rasterio.open(OPTSAR / "mov.tif") as src:
        data, crs = src.read(), src.crs
        shifted = Affine.translation(*OPTSAR_SHIFT_M) * src.transform
    mov = _write(work / "optsar_mov_shifted.tif", data, crs, shifted)
    with rasterio.open(OPTSAR / "ref.tif") as ref:
        ref_A = ref.transform
    H = np.loadtxt(OPTSAR / "H_mov_to_ref.txt")  # moving px -> reference px (centres at integers)

    def truth(xy: np.ndarray) -> np.ndarray:
        q = _map_to_px(shifted, np.asarray(xy, np.float64))
        p = np.c_[q, np.ones(len(q))] @ H.T
        return _px_to_map(ref_A, p[:, :2] / p[:, 2:3])

    return Case("S1", f"real optical (RGB, band 1 for AROSICS) -> SAR, moving geotransform + ({OPTSAR_SHIFT_M[0]}, "
                f"{OPTSAR_SHIFT_M[1]}) m on top of the pair's own offset", OPTSAR / "ref.tif", mov, truth, 16, 1, 1)


# --------------------------------------------------------------------------------------------------
# evaluation
# --------------------------------------------------------------------------------------------------


def eval_points(moving: Path, n: int = 9, shrink: float = 0.15) -> tuple[np.ndarray, np.ndarray, float]:
    """(centre-origin moving pixels [N, 2], their claimed map coordinates, moving pixel size)."""
    with rasterio.open(moving) as ds:
        A, w, h = ds.transform, ds.width, ds.height
    c, r = np.meshgrid(np.linspace(shrink * w, (1 - shrink) * w, n), np.linspace(shrink * h, (1 - shrink) * h, n))
    px = np.c_[c.ravel(), r.ravel()]
    return px, _px_to_map(A, px), abs(A.a)


def errors_px(estimate: np.ndarray, truth: np.ndarray, ref_res: float) -> tuple[float, float]:
    e = np.hypot(*(estimate - truth).T) / ref_res
    return float(np.sqrt(np.mean(e**2))), float(e.max())


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run_geomreg(case: Case, matcher: str, out: Path, checkpoint: str | None) -> dict:
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "geomreg.cli", "register", str(case.reference), str(case.moving), "-o", str(out),
           "--matcher", matcher, "--transform", "affine", "--max-shift", str(case.max_shift_px), "--device", "cpu",
           "--overwrite", "--progress-json", *TILE_ARGS]
    if checkpoint:
        cmd += ["--checkpoint", checkpoint]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=1800)
    wall = time.perf_counter() - t0
    events = []
    for line in p.stderr.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            pass
    last = events[-1] if events else {"event": "error", "message": p.stderr[-500:]}
    row = {"method": f"geomreg {matcher}", "wall_s": round(wall, 2), "exit": p.returncode}
    if last.get("event") != "result":
        row.update(status="error", note=str(last.get("message")))
        return row
    row.update(status=last["status"], points=last["n_inliers"], note=last.get("reason") or "")
    report = json.loads(Path(last["outputs"]["report"]).read_text())
    t = report["timings_s"]
    # Inside the process: planning, (coarse pass,) tile matching, fusion and writing; the report is
    # written before register() stamps its total, so the parts are added up.
    row["compute_s"] = round(sum(t.get(k, 0.0) for k in ("plan_s", "coarse_s", "match_s", "fuse_s", "write_s")), 3)
    if last["status"] == "registered":
        M = np.asarray(report["transform"]["matrix_map"])
        _, claimed, _ = eval_points(case.moving)
        est = np.c_[claimed, np.ones(len(claimed))] @ M.T
        est = est[:, :2] / est[:, 2:3]
        row["rmse_px"], row["max_px"] = errors_px(est, case.truth(claimed), report["reference"]["pixel_size"])
        row["note"] = f"fit RMSE {last['rmse_px']:.2f} px"
    return row


def run_arosics(case: Case, out: Path, arosics_py: Path, min_reliability: float | None = None) -> dict:
    out.parent.mkdir(parents=True, exist_ok=True)
    result = out.with_suffix(".json")
    cmd = [str(arosics_py), str(RUNNER), str(case.reference), str(case.moving), str(out), str(result),
           "--grid-res", "48", "--window", "256", "--max-shift", str(case.max_shift_px),
           "--r-band", str(case.ref_band), "--s-band", str(case.mov_band), "--cpus", "1"]
    if min_reliability is not None:
        cmd += ["--min-reliability", str(min_reliability)]
    t0 = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=1800)
    wall = time.perf_counter() - t0
    name = "AROSICS COREG_LOCAL" + ("" if min_reliability is None else f" (min_reliability={min_reliability:g})")
    row = {"method": name, "wall_s": round(wall, 2), "exit": p.returncode}
    if not result.exists():
        row.update(status="error", note=(p.stderr or p.stdout)[-400:])
        return row
    res = json.loads(result.read_text())
    row.update(status=res["status"], compute_s=res["total_s"], points=res.get("points_kept"),
               grid_points=res.get("grid_points"), arosics=res)
    notes = [f"{res.get('points_kept', 0)}/{res.get('grid_points', '?')} grid points kept"]
    if res.get("reason"):
        notes.append(res["reason"])
    with rasterio.open(case.reference) as ds:
        ref_res = abs(ds.transform.a)
    raw = np.asarray(res.get("raw_points") or [], np.float64).reshape(-1, len(res.get("raw_points_columns") or [0]))
    if len(raw) and res.get("raw_points_columns", [])[:4] == ["X_MAP", "Y_MAP", "X_SHIFT_M", "Y_SHIFT_M"]:
        # Each measured shift on its own, before AROSICS's filters: is the matching itself right?
        e = np.hypot(*(raw[:, :2] + raw[:, 2:4] - case.truth(raw[:, :2])).T) / ref_res
        row["raw_median_px"] = float(np.median(e))
        notes.append(f"{len(raw)} shifts measured, median error {np.median(e):.2f} px, {int((e <= 1).sum())} within 1 px")
    gcps = res.get("gcps") or []
    if len(gcps) >= 3:
        # GDAL's TPS through AROSICS's GCPs: what its DESHIFTER warps the output with.
        tr = GCPTransformer([GroundControlPoint(row=g[1], col=g[0], x=g[2], y=g[3]) for g in gcps], tps=True)
        px, claimed, _ = eval_points(case.moving)
        xs, ys = tr.xy(px[:, 1], px[:, 0], offset="center")
        est = np.c_[np.asarray(xs, np.float64), np.asarray(ys, np.float64)]
        row["rmse_px"], row["max_px"] = errors_px(est, case.truth(claimed), ref_res)
        ms = res.get("mean_shift_px") or {}
        if ms.get("x") is not None:
            notes.append(f"mean shift ({ms['x']:+.2f}, {ms['y']:+.2f}) px")
    own = [w for w in res.get("warnings") or [] if "deprecated" not in w.lower()]  # AROSICS's own, not its libraries'
    if own:
        notes.append("AROSICS warns: " + "; ".join(w[:160] for w in own[:2]))
    row["note"] = "; ".join(notes)
    return row


def true_offset_px(case: Case) -> float:
    """Size of the correction the truth asks for at the moving scene's centre (reference px)."""
    with rasterio.open(case.moving) as ds:
        c = _px_to_map(ds.transform, np.array([[ds.width / 2, ds.height / 2]]))
    with rasterio.open(case.reference) as ds:
        res = abs(ds.transform.a)
    return float(np.hypot(*(case.truth(c) - c)[0]) / res)


# --------------------------------------------------------------------------------------------------
# report
# --------------------------------------------------------------------------------------------------


def _f(v, fmt: str = "{:.2f}") -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v)


def markdown(rows: list[dict], cases: list[Case], meta: dict) -> str:
    lines = [
        "# AROSICS COREG_LOCAL vs geomreg register",
        "",
        f"{meta['date']}; {meta['machine']}; AROSICS {meta.get('arosics', '?')} (GDAL {meta.get('gdal', '?')}), geomreg "
        f"{meta['geomreg']}. One process per run, OMP_NUM_THREADS=1 (AROSICS CPUs=1).",
        "",
        "Error: corrected position of a 9 x 9 grid of moving pixels (central 70 % of the scene) against the truth, "
        "reference pixels (geomreg: its fitted transform; AROSICS: GDAL's TPS through its GCPs, what its output is "
        "warped with). compute: inside the process (geomreg: plan + match + fuse + write from its report; AROSICS: COREG_LOCAL + correct_shifts); "
        "wall: the whole process, with interpreter start and imports.",
        "",
        "| case | pair | true offset px | method | status | error RMSE px | error max px | points | compute s | wall s | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_case = {c.name: c for c in cases}
    for r in rows:
        c = by_case[r["case"]]
        lines.append(
            f"| {c.name} | {c.description} | {_f(r['true_offset_px'])} | {r['method']} | {r['status']} | {_f(r.get('rmse_px'))} | "
            f"{_f(r.get('max_px'))} | {_f(r.get('points'), '{}')} | {_f(r.get('compute_s'))} | {_f(r.get('wall_s'))} | "
            f"{r.get('note', '').replace('|', '/')} |")
    if meta.get("unavailable"):
        lines += ["", "Not run: " + "; ".join(meta["unavailable"])]
    lines += ["", f"Command: `{meta['command']}`", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "out")
    ap.add_argument("--arosics-python", type=Path, default=AROSICS_PY, help="python of the AROSICS venv (setup.sh)")
    ap.add_argument("--methods", default="arosics,cfog,regnetmamba2",
                    help="comma list of arosics, cfog, regnetmamba2 (left out when its weights are not installed)")
    ap.add_argument("--checkpoint", default=None, help="RegNetMamba-2 checkpoint instead of the packaged weights")
    ap.add_argument("--cases", default=None, help="comma list of case names (O1,O2,O3,O4,S1); default all")
    a = ap.parse_args(argv)

    methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    unavailable: list[str] = []
    if "arosics" in methods and not a.arosics_python.exists():
        print(f"error: {a.arosics_python} not found: run `bash benchmarks/arosics/setup.sh` first", file=sys.stderr)
        return 2
    if "regnetmamba2" in methods:
        from geomreg.api import MatcherUnavailable, resolve_matcher

        try:
            resolve_matcher("regnetmamba2", device="cpu", checkpoint=a.checkpoint)
        except MatcherUnavailable as e:
            unavailable.append(f"geomreg regnetmamba2 ({e})")
            methods.remove("regnetmamba2")

    work = a.out / "arosics_work"
    shutil.rmtree(work, ignore_errors=True)
    (work / "scenes").mkdir(parents=True)
    cases = optical_cases(work / "scenes")
    s1 = optsar_case(work / "scenes")
    if s1 is not None:
        cases.append(s1)
    if a.cases:
        keep = {c.strip() for c in a.cases.split(",")}
        cases = [c for c in cases if c.name in keep]

    rows: list[dict] = []
    meta: dict = {}
    for case in cases:
        off = true_offset_px(case)
        for m in methods:
            out = work / case.name / m / "registered.tif"
            if m == "arosics":
                runs = [run_arosics(case, out, a.arosics_python)]
                if case.name.startswith("S") and runs[0]["status"] != "registered":
                    # What AROSICS's own warning proposes: relax its reliability filter completely.
                    runs.append(run_arosics(case, work / case.name / "arosics_relaxed" / "registered.tif", a.arosics_python, 0))
            else:
                runs = [run_geomreg(case, m, out, a.checkpoint)]
            for row in runs:
                aro = row.pop("arosics", None)
                if aro:
                    meta.setdefault("arosics", aro.get("arosics"))
                    meta.setdefault("gdal", aro.get("gdal"))
                row.update(case=case.name, true_offset_px=off)
                rows.append(row)
                print(f"{case.name} {row['method']:<22} {row['status']:<10} rmse {_f(row.get('rmse_px'))} px  "
                      f"compute {_f(row.get('compute_s'))} s  wall {_f(row.get('wall_s'))} s  {row.get('note', '')}", flush=True)

    import platform

    import geomreg

    meta.update(date=time.strftime("%Y-%m-%d"), geomreg=geomreg.__version__, unavailable=unavailable,
                machine=f"{platform.machine()}, {os.cpu_count()} cores (shared with other jobs)",
                command=" ".join(["python benchmarks/arosics_compare.py", *(argv if argv is not None else sys.argv[1:])]))
    md = markdown(rows, cases, meta)
    a.out.mkdir(parents=True, exist_ok=True)
    for name, text in (("arosics_compare.md", md), ("arosics_compare.json", json.dumps({"meta": meta, "rows": rows}, indent=1, default=str))):
        tmp = a.out / f".{name}.part"
        tmp.write_text(text)
        os.replace(tmp, a.out / name)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
