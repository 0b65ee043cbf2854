"""Batch throughput: tiles/s of `geomreg batch` with 1, 2, ... LocalCluster worker processes, plus the
sequential seconds per tile the cost model in docs/scaling.md is built from.

    .venv/bin/python benchmarks/batch_throughput.py                    # 4 copies of the bundled sample pair, 1 and 2 workers
    .venv/bin/python benchmarks/batch_throughput.py --pairs 8 --workers 1 2 4 --regnetmamba2

The scene pairs are copies of the bundled sample (Landsat-8 optical -> SIMULATED SAR-like, 640 x 640 px,
real texture), registered with the CFOG-style matcher (the packaged RegNetMamba-2 is not yet validated as usable). With
--regnetmamba2 the network's forward time per tile is measured too, on randomly initialised weights
(the compute does not depend on the weight values; the fine stage may do more work with trained weights,
so treat it as a lower bound). Results go to benchmarks/out/batch_throughput.json and a Markdown table
on stdout. On a shared machine the numbers move with the load: the JSON records the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _load() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def _pairs(tmp: Path, n: int) -> Path:
    """A manifest of n copies of the bundled sample pair (own file names, so own outputs)."""
    from geomreg.geo.sample import sample_pair

    sp = sample_pair()
    lines = ["reference,moving"]
    for i in range(n):
        ref, mov = tmp / f"ref{i}.tif", tmp / f"mov{i}.tif"
        shutil.copy(sp.reference, ref)
        shutil.copy(sp.moving, mov)
        lines.append(f"{ref},{mov}")
    m = tmp / "pairs.csv"
    m.write_text("\n".join(lines) + "\n")
    return m


def sequential_seconds_per_tile(tile_size: int, repeats: int = 2) -> dict:
    """Matching time per tile in this process (geomreg.api.run_tiles: the loop `geomreg register` runs)."""
    from geomreg.api import build_config, run_tiles
    from geomreg.geo.plan import plan_registration
    from geomreg.geo.sample import sample_pair
    from geomreg.matching.cfog import CFOGMatcher

    sp = sample_pair()
    cfg = build_config(tile_size=tile_size, overlap=32)
    m = CFOGMatcher()
    best = None
    for _ in range(repeats):
        plan = plan_registration(str(sp.reference), str(sp.moving), cfg)
        t0 = time.perf_counter()
        plan, _, _ = run_tiles(plan, m)
        dt = time.perf_counter() - t0
        n = len(plan.tasks)
        best = dt / n if best is None else min(best, dt / n)
    return {"matcher": "cfog", "tile_size": tile_size, "tiles": n, "s_per_tile": round(best, 4)}


def regnetmamba2_seconds_per_tile(tile_size: int, max_shift: int = 32, threads: int | None = None) -> dict:
    """Forward time of the RegNetMamba-2 matcher on one tile pair (random weights), best of 2 after a warm-up."""
    import numpy as np
    import torch

    from geomreg.matching.api import Matcher
    from geomreg.matching.config import RegNetMamba2Config
    from geomreg.matching.model import RegNetMamba2

    if threads:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    m = Matcher(RegNetMamba2(RegNetMamba2Config()), device="cpu")
    rng = np.random.default_rng(0)
    margin = max_shift + 4
    ref = rng.random((tile_size, tile_size)).astype(np.float32) + 1
    mov = rng.random((tile_size + 2 * margin, tile_size + 2 * margin)).astype(np.float32) + 1
    m.match_batch([(ref, mov)])
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        m.match_batch([(ref, mov)])
        times.append(time.perf_counter() - t0)
    return {"matcher": "regnetmamba2 (random weights)", "device": "cpu", "torch_threads": torch.get_num_threads(),
            "tile_size": tile_size, "s_per_tile": round(min(times), 3)}


def batch_run(manifest: Path, out: Path, workers: int, tile_size: int) -> dict:
    """One `geomreg batch` run on a fresh LocalCluster; the cluster start and worker warm-up are not timed."""
    from pipelines.cluster import ClusterOptions, open_client
    from pipelines.manifest import BatchDefaults, load_manifest
    from pipelines.runner import run_batch

    defaults = BatchDefaults(matcher="cfog", tile_size=tile_size, overlap=32)
    jobs = load_manifest(manifest, out, defaults)
    with open_client(ClusterOptions(workers=workers, threads_per_worker=1, device="cpu", dashboard_address=None)) as info:
        # Warm-up: every worker imports geomreg and builds its matcher (once per worker, as in a real batch).
        run_batch(info.client, jobs[:1], overwrite=True, progress=False, device="cpu", op_threads=info.op_threads)
        load0 = _load()
        r = run_batch(info.client, jobs, overwrite=True, progress=False, device="cpu", op_threads=info.op_threads)
    bad = [p for p in r.pairs if p.status != "registered"]
    if bad:
        raise SystemExit(f"benchmark pair failed: {bad[0].reason}")
    # Worker seconds per pair by step, from the reports (the per-pair overhead of the cost model).
    steps: dict[str, list[float]] = {}
    for p in r.pairs:
        t = json.loads(Path(p.outputs["report"]).read_text())["timings_s"]
        for k in ("plan_s", "match_s", "fuse_s", "write_s"):
            steps.setdefault(k, []).append(float(t.get(k, 0.0)))
    mean = {k: round(sum(v) / len(v), 3) for k, v in steps.items()}
    return {"workers": workers, "threads_per_worker": 1, "pairs": len(jobs), "tiles": r.tiles, "wall_s": round(r.wall_s, 3),
            "tiles_per_s": round(r.tiles_per_s, 3), "mean_worker_s_per_pair": mean, "load_before": load0, "load_after": _load()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--tile-size", type=int, default=256)
    ap.add_argument("--regnetmamba2", action="store_true", help="also time the RegNetMamba-2 network per tile on CPU (random weights)")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "out" / "batch_throughput.json")
    args = ap.parse_args()

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    res: dict = {"machine": {"cores": cores, "platform": platform.platform(), "python": platform.python_version(),
                             "load_start": _load(), "note": "shared machine: other jobs ran at the same time"}}
    res["sequential"] = [sequential_seconds_per_tile(ts) for ts in sorted({args.tile_size, 512})]
    if args.regnetmamba2:
        res["regnetmamba2_cpu"] = [regnetmamba2_seconds_per_tile(ts, threads=cores) for ts in sorted({args.tile_size, 512})]
    res["batch"] = []
    with tempfile.TemporaryDirectory(prefix="geomreg-bench-") as tmp:
        manifest = _pairs(Path(tmp), args.pairs)
        for w in args.workers:
            res["batch"].append(batch_run(manifest, Path(tmp) / f"out{w}", w, args.tile_size))
            print(f"{w} worker(s): {res['batch'][-1]['tiles_per_s']} tiles/s", file=sys.stderr, flush=True)
    res["machine"]["load_end"] = _load()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2))

    print("| workers | pairs | tiles | wall s | tiles/s | load avg (1 min) before |")
    print("|---|---|---|---|---|---|")
    for b in res["batch"]:
        print(f"| {b['workers']} | {b['pairs']} | {b['tiles']} | {b['wall_s']:.1f} | {b['tiles_per_s']:.2f} | {b['load_before'][:1]} |")
    print()
    for s in res["sequential"] + res.get("regnetmamba2_cpu", []):
        print(f"sequential {s['matcher']}, {s['tile_size']} px tiles: {s['s_per_tile']} s/tile")
    print(f"\n{args.out}")


if __name__ == "__main__":  # LocalCluster starts its workers with spawn: the guard is required
    main()
