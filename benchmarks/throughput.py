"""Matcher throughput against batch size: pairs/s (in memory) and tiles/s (from GeoTIFFs), CPU or CUDA.

    python benchmarks/throughput.py --device cpu  --batch-sizes 1 2 4
    python benchmarks/throughput.py --device cuda --batch-sizes 1 2 4 8 16 32 64 --precision fp32 bf16
    python benchmarks/throughput.py --dry-run      # tiny sizes: checks the script end to end in about a minute

Two figures per batch size B, with the packaged weights and the batched guided pass (GuideConfig(backend="torch"),
geomreg/matching/batched_guide.py; --guide cv2 for the per-tile OpenCV path):

* pairs/s: ``Matcher.match_batch`` on in-memory --size x --size pairs, B per call, end to end (normalisation,
  network, guided pass, coordinates back in numpy): what a worker does with tiles already read.
* tiles/s: ``geomreg.geo.match_tiles`` over every tile of a --scene x --scene GeoTIFF pair (benchmarks/geo_scale.py's
  scene from the bundled Landsat sample), batch B, windows read ahead in a thread (geomreg/geo/prefetch.py):
  reads, matching and map coordinates. Needs rasterio; reported as not measured without it.

Every pair is the same texture shifted by a known sub-pixel offset, so each row also reports the median tie-point
error, which shows whether a batch size or a precision changed the tie points. One warm-up call per setting is
not timed (CUDA start-up, kernel selection). On CUDA the clock stops after torch.cuda.synchronize().
Prints the device model (CPU model and ISA, or the GPU's name) and writes --json (default
benchmarks/out/throughput.json) atomically.
"""

from __future__ import annotations

import argparse
import datetime as dt_
import functools
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

from benchmarks.matcher_speed import cpu_summary, texture  # noqa: E402
from geomreg.matching.api import Matcher, MatcherConfig  # noqa: E402
from geomreg.matching.guided import GuideConfig  # noqa: E402
from geomreg.matching.weights import load_packaged  # noqa: E402

SHIFT = (3.3, -2.6)  # px, the moving image's offset in the in-memory pairs


def device_summary(device: torch.device) -> dict:
    info = {"torch": torch.__version__, **cpu_summary()}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(gpu=p.name, gpu_memory_gib=round(p.total_memory / 2**30, 1), cuda=torch.version.cuda)
    return info


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_pairs(n: int, size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    pairs = []
    for k in range(n):
        img = texture(size + 16, seed=k)[:size, :size]
        mov = cv2.warpAffine(img, np.float32([[1, 0, SHIFT[0]], [0, 1, SHIFT[1]]]), (size, size), flags=cv2.INTER_CUBIC)
        pairs.append((img, mov))
    return pairs


def median_error(results, size: int) -> float | None:
    errs = []
    for r in results:
        inner = np.all((r.ref_xy > 16) & (r.ref_xy < size - 16), axis=1)
        errs.extend(np.linalg.norm(r.mov_xy[inner] - r.ref_xy[inner] - SHIFT, axis=1))
    return round(float(np.median(errs)), 4) if errs else None


def time_pairs(matcher: Matcher, pairs, batch: int, repeats: int) -> dict:
    device = matcher.device
    matcher.match_batch(pairs[:batch])  # warm-up, not timed
    _sync(device)
    times, results = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        results = []
        for s in range(0, len(pairs), batch):
            results.extend(matcher.match_batch(pairs[s : s + batch]))
        _sync(device)
        times.append(time.perf_counter() - t0)
    best = min(times)
    return {"pairs": len(pairs), "seconds_min": round(best, 4), "seconds_median": round(statistics.median(times), 4),
            "pairs_per_s": round(len(pairs) / best, 3), "median_error_px": median_error(results, pairs[0][0].shape[0]),
            "matches_per_pair": round(float(np.mean([len(r) for r in results])), 1)}


@functools.cache
def _scene_tasks(scene: int, tile: int, workdir: Path) -> tuple:
    """The tiles of the scene pair (planned once, whatever the rows that time them)."""
    from benchmarks.geo_scale import build
    from geomreg.geo import plan_registration
    from geomreg.geo.config import RegistrationConfig

    ref, mov = build(scene, scene, workdir)  # benchmarks/geo_scale.py: the red-green pair of the bundled sample
    return tuple(plan_registration(str(ref), str(mov), RegistrationConfig(tile_size=tile)).tasks)


def time_tiles(matcher: Matcher, scene: int, tile: int, batch: int, workdir: Path) -> dict:
    try:
        from geomreg.geo import match_tiles

        tasks = list(_scene_tasks(scene, tile, workdir))
    except ImportError as exc:  # the GPU image may come without rasterio
        return {"status": f"not measured ({exc})"}
    match_tiles(tasks[: min(batch, len(tasks))], matcher, batch_size=batch)  # warm-up
    _sync(matcher.device)
    t0 = time.perf_counter()
    out = match_tiles(tasks, matcher, batch_size=batch)
    _sync(matcher.device)
    wall = time.perf_counter() - t0
    matched = sum(1 for t in out if t.skipped is None)
    return {"status": "ok", "tiles": len(tasks), "tiles_matched": matched, "seconds": round(wall, 3),
            "tiles_per_s": round(len(tasks) / wall, 3)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=None, help="default: 1 2 4 on CPU, 1 2 4 8 16 32 64 on CUDA")
    ap.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16", "fp16"])
    ap.add_argument("--guide", default="torch", choices=["torch", "cv2"], help="guided-pass backend (torch: the batched path)")
    ap.add_argument("--size", type=int, default=512, help="side of the in-memory pairs (px)")
    ap.add_argument("--pairs", type=int, default=None, help="pairs per measurement (default: the batch size, at least 4)")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--scene", type=int, default=2048, help="side of the GeoTIFF scene for tiles/s (0: skip)")
    ap.add_argument("--tile", type=int, default=512)
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    ap.add_argument("--json", type=Path, default=_REPO / "benchmarks" / "out" / "throughput.json")
    ap.add_argument("--dry-run", action="store_true", help="tiny sizes (128 px pairs, a 512 px scene of 256 px tiles, batches 1 2)")
    args = ap.parse_args(argv)
    if args.dry_run:
        args.size, args.tile, args.repeats = 128, 256, 1
        args.scene = min(args.scene, 512)  # --scene 0 still skips it
        args.batch_sizes = args.batch_sizes or [1, 2]
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("CUDA requested but not available", file=sys.stderr)
        return 2
    batches = args.batch_sizes or ([1, 2, 4, 8, 16, 32, 64] if device.type == "cuda" else [1, 2, 4])
    info = device_summary(device)
    print(json.dumps(info), flush=True)

    def write_report() -> None:  # after every row: a step cut short by a timeout keeps what it measured
        report = {
            "date": dt_.date.today().isoformat(),
            "command": "python " + " ".join([str(Path(__file__).relative_to(_REPO))] + (argv if argv is not None else sys.argv[1:])),
            "commit": _git_commit(),
            "device": str(device),
            "device_info": info,
            "python": platform.python_version(),
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "rows": rows,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp_json = args.json.with_suffix(".json.tmp")
        tmp_json.write_text(json.dumps(report, indent=2))
        tmp_json.replace(args.json)  # never a half-written report

    model = load_packaged()
    pairs_all = make_pairs(max(max(batches), args.pairs or 4), args.size)
    rows = []
    with tempfile.TemporaryDirectory(prefix="geomreg_throughput_") as tmp:
        for precision in args.precision:
            for b in batches:
                cfg = MatcherConfig(batch_size=b, precision=precision, guide=GuideConfig(backend=args.guide))
                matcher = Matcher(model, device, cfg)
                n = args.pairs or max(b, 4)
                row = {"batch": b, "precision": precision, "guide": args.guide, "size": args.size}
                try:
                    row.update(time_pairs(matcher, pairs_all[:n], b, args.repeats))
                    if args.scene:
                        row["scene"] = {"side": args.scene, "tile": args.tile, **time_tiles(matcher, args.scene, args.tile, b, Path(tmp))}
                except torch.cuda.OutOfMemoryError as exc:
                    row["status"] = f"out of memory: {str(exc).splitlines()[0]}"
                    torch.cuda.empty_cache()
                if device.type == "cuda":
                    row["cuda_max_allocated_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
                    torch.cuda.reset_peak_memory_stats(device)
                rows.append(row)
                tiles = row.get("scene", {}).get("tiles_per_s", "-")
                print(f"{precision:5s} batch {b:3d}: {row.get('pairs_per_s', '-')} pairs/s, {tiles} tiles/s, "
                      f"median error {row.get('median_error_px', '-')} px {row.get('status', '')}", flush=True)
                write_report()

    print(f"wrote {args.json}")
    return 0


def _git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=_REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


if __name__ == "__main__":
    sys.exit(main())
