"""Where a tile's time goes: read, normalise, network, guided pass + consensus, robust fit and fusion, write.

Runs the tiles of a scene pair (default: the bundled sample's optical / SIMULATED SAR pair, mirror-tiled to
2048 x 2048 px by benchmarks/geo_scale.py's builder, cached outside the repository) through the same calls
`geomreg.register` makes, timing each stage with CPU time (process_time: user + sys of all threads, the
figure that a shared machine does not distort) and wall time:

* read: the tile's two windows (geomreg.geo.tiles.load_tile: windowed reads, nodata and structure checks);
* normalise: the matcher's input preparation (percentile stretch, padding; RegNetMamba-2's `_prepare`);
* network: the forward pass (encoder, CMI, MSF, coarse and first fine matching);
* guided: the guided second fine pass and its heatmap consensus (geomreg/matching/guided.py);
* fusion: dedupe, per-tile consistency, robust fits of every candidate model, held-out choice, bootstrap
  uncertainty (geomreg.geo.fusion.fuse on all the tiles' tie points), shared out per tile;
* write: resampling and writing the registered raster with its sidecars, shared out per tile.

    python benchmarks/tile_profile.py --tiles 12 --threads 2
    python benchmarks/tile_profile.py --ref REF.tif --mov MOV.tif --matcher cfog

The stages inside the matcher are timed by wrapping RegNetMamba-2's model and guided pass; other matchers
report their whole match_batch as "network". Prints JSON and a Markdown table (CPU s per tile and share).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


class Clock:
    def __init__(self) -> None:
        self.cpu: dict[str, float] = {}
        self.wall: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str):
        c0, w0 = time.process_time(), time.perf_counter()
        try:
            yield
        finally:
            self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - c0
            self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - w0


def _instrument(matcher, clock: Clock) -> bool:
    """Wrap RegNetMamba-2's stages (the model's forward, the guided pass, the input preparation)."""
    import geomreg.matching.api as mapi

    model = getattr(matcher, "model", None)
    if model is None or not hasattr(mapi, "guided_matches"):
        return False
    fwd = model.forward

    def forward(*a, **k):
        with clock.stage("network"):
            return fwd(*a, **k)

    model.forward = forward
    guided = mapi.guided_matches

    def guided_timed(*a, **k):
        with clock.stage("guided"):
            return guided(*a, **k)

    mapi.guided_matches = guided_timed
    prep = mapi._prepare

    def prepare(*a, **k):
        with clock.stage("normalise"):
            return prep(*a, **k)

    mapi._prepare = prepare
    return True


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ref")
    ap.add_argument("--mov")
    ap.add_argument("--size", type=int, default=2048, help="side of the generated pair when --ref/--mov are not given")
    ap.add_argument("--matcher", default="auto")
    ap.add_argument("--tiles", type=int, default=12, help="tiles to time (a spread sample, as register matches them)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch

    torch.set_num_threads(args.threads)
    import geo_scale

    from geomreg.api import resolve_matcher
    from geomreg.geo.config import RegistrationConfig
    from geomreg.geo.fusion import fuse
    from geomreg.geo.io import open_raster
    from geomreg.geo.plan import plan_registration
    from geomreg.geo.sampling import spread_order
    from geomreg.geo.tiles import TileMatches, _matcher_input, _to_map, load_tile

    if args.ref and args.mov:
        ref, mov = args.ref, args.mov
    else:
        d = geo_scale.CACHE
        d.mkdir(parents=True, exist_ok=True)
        ref, mov = map(str, geo_scale.build(args.size, args.size, d, "optical-sar"))
    clock = Clock()
    plan = plan_registration(ref, mov, RegistrationConfig(tiles="all"))
    matcher = resolve_matcher(args.matcher, device="cpu")
    inner = _instrument(matcher, clock)
    order = spread_order(plan.tasks)[: args.tiles]
    tasks = [plan.tasks[i] for i in order]
    tms: list[TileMatches] = []
    with open_raster(plan.reference) as rds, open_raster(plan.moving) as mds:
        warm = load_tile(tasks[0], rds, mds)
        matcher.match_batch([(_matcher_input(warm.ref), _matcher_input(warm.mov))])  # warm-up
        clock.cpu.clear(), clock.wall.clear()
        for t in tasks:
            with clock.stage("read"):
                loaded = load_tile(t, rds, mds)
            if isinstance(loaded, TileMatches):
                tms.append(loaded)
                continue
            with clock.stage("match_batch"):
                res = matcher.match_batch([(_matcher_input(loaded.ref), _matcher_input(loaded.mov))])[0]
            tms.append(_to_map(loaded, res))
    with clock.stage("fusion"):
        reg = fuse(plan, tms, "auto", matcher_name=getattr(matcher, "name", None))
    with tempfile.TemporaryDirectory() as tmp, clock.stage("write"):
        if reg.status == "registered":
            reg.write(Path(tmp) / "out.tif")
    n = len(tasks)
    inner_names = ("normalise", "network", "guided")
    other = clock.cpu.get("match_batch", 0.0) - sum(clock.cpu.get(k, 0.0) for k in inner_names)
    rows = {"read": clock.cpu.get("read", 0.0)}
    if inner:
        rows.update({k: clock.cpu.get(k, 0.0) for k in inner_names})
        rows["matcher, other"] = max(other, 0.0)
    else:
        rows["network"] = clock.cpu.get("match_batch", 0.0)
    # Fusion and writing are per scene: shared out over the scene's tiles (all of them are written, whichever were matched).
    rows["fusion (per tile of the sample)"] = clock.cpu.get("fusion", 0.0)
    rows["write (whole scene)"] = clock.cpu.get("write", 0.0)
    out = {"pair": [ref, mov], "matcher": getattr(matcher, "name", args.matcher), "threads": args.threads, "tiles": n,
           "scene_tiles": len(plan.tasks), "status": reg.status, "transform": reg.transform_kind,
           "cpu_s": {k: round(v, 3) for k, v in rows.items()}, "wall_s": {k: round(v, 3) for k, v in clock.wall.items()}}
    print(json.dumps(out))
    per_tile = {k: v / n for k, v in rows.items() if "whole scene" not in k}
    total = sum(per_tile.values())
    print(f"\n{n} tiles of {len(plan.tasks)} ({plan.grid.width} x {plan.grid.height} px), matcher {out['matcher']}, "
          f"{args.threads} thread(s); CPU seconds")
    print("| stage | CPU s per tile | share |\n|---|---|---|")
    for k, v in per_tile.items():
        print(f"| {k} | {v:.3f} | {100 * v / total:.1f} % |")
    print(f"| write, whole scene ({plan.grid.width * plan.grid.height / 1e6:.1f} Mpx) | {rows['write (whole scene)']:.2f} | - |")


if __name__ == "__main__":
    main()
