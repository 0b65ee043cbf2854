"""Accuracy benchmark: RegNetMamba-2 vs CFOG, SIFT and DISK + LightGlue on a MANIFEST.csv dataset.

Protocol (see geomreg/evaluation/): every moving image is put onto its reference with the pair's
ground truth, then warped by seeded random homographies (rotation +-10 deg, scale +-10 %, translation
+-8 %, mild perspective); each method matches (reference, warped moving image), a homography is fitted
to its matches with MAGSAC (3 px) and scored by its RMSE on a grid of valid reference pixels.
``--mode raw`` scores the pairs with their own geometry instead (a robustness figure).

    python benchmarks/accuracy.py --data ../shared/data/train --split val --max-pairs 10 \
        --methods cfog,sift,disk_lightglue --out benchmarks/out

Exit status: 0 done, 2 bad input (dataset, checkpoint, option), 130 interrupted.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import logging
import os
import platform
import sys
from dataclasses import asdict, replace
from pathlib import Path

# Runnable as a script (python benchmarks/accuracy.py) as well as a module (python -m benchmarks.accuracy).
_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

from geomreg.data.manifest import DatasetError, read_dataset  # noqa: E402
from geomreg.evaluation import methods as own  # noqa: E402
from geomreg.evaluation.metrics import SUCCESS_THRESHOLDS_PX  # noqa: E402
from geomreg.evaluation.paired import paired_counts, paired_table  # noqa: E402
from geomreg.evaluation.report import markdown_table, summarize, write_reports  # noqa: E402
from geomreg.evaluation.runner import EvalConfig, evaluate, select_pairs, validate_pairs  # noqa: E402
from benchmarks import peers  # noqa: E402

log = logging.getLogger("benchmarks.accuracy")

METHODS = ("regnetmamba2", "regnetmamba2+polish", "regnetmamba2+cfog", "cfog", "sift", "disk_lightglue")


class UsageError(ValueError):
    pass


def _disk_lightglue(device: str, torch_home: str | None) -> object:
    from benchmarks.peers.lightglue_weights import WeightsUnavailable

    try:
        from benchmarks.peers.disk_lightglue import DiskLightGlueConfig, DiskLightGlueMatcher

        return DiskLightGlueMatcher(DiskLightGlueConfig(device=device), torch_home=torch_home)
    except WeightsUnavailable as exc:
        raise own.MethodUnavailable(str(exc)) from exc
    except ImportError as exc:
        raise own.MethodUnavailable(f"kornia is needed (pip install 'geomreg[bench]'): {exc}") from exc


def method_specs(names: list[str], args: argparse.Namespace) -> list[own.MethodSpec]:
    # One network for every method built on it, run once per instance: the s/pair of "+polish" and "+cfog" is
    # then their extra time only.
    builders = {
        **own.network_family(lambda: own.regnetmamba2(args.checkpoint, args.device)),
        "cfog": own.cfog,
        "sift": peers.sift,
        "disk_lightglue": lambda: _disk_lightglue(args.device, args.torch_home),
    }
    return [own.MethodSpec(n, builders[n]) for n in names]


def _csv_list(value: str | None) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()] if value else []


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path, help="dataset directory with MANIFEST.csv")
    ap.add_argument("--split", choices=("all", "val", "train"), default="val", help="val = the validation split training uses (default)")
    ap.add_argument("--modalities", default=None, help="comma-separated modalities (default: all in the split)")
    ap.add_argument("--max-pairs", type=int, default=None, help="at most this many pairs per modality")
    ap.add_argument("--instances-per-pair", type=int, default=1, help="random warps per pair (warped mode)")
    ap.add_argument("--seed", default="0",
                    help="warp seed, or several comma-separated (0,1): each seed's instances are scored and reported together")
    ap.add_argument("--gt-fixes", type=Path, default=None,
                    help="audited ground truth (scripts/audit_ground_truth.py): corrected pairs use it, unverified pairs are left out")
    ap.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated, from {', '.join(METHODS)}")
    ap.add_argument("--checkpoint", type=Path, default=None, help="RegNetMamba-2 checkpoint (default: packaged weights)")
    ap.add_argument("--device", default="auto", help="torch device for the deep methods: auto, cpu, cuda")
    ap.add_argument("--mode", choices=("warped", "raw"), default="warped")
    ap.add_argument("--out", type=Path, default=None, help="directory for accuracy_<mode>.md / _instances.csv / .json")
    ap.add_argument("--torch-home", default=None, help="TORCH_HOME holding the offline DISK/LightGlue weights")
    ap.add_argument("--threads", type=int, default=None, help="torch / OpenCV threads (default: leave as configured)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bars")
    ap.add_argument("-v", "--verbose", action="store_true")
    return ap.parse_args(argv)


def _seeds(value: str) -> tuple[int, ...]:
    try:
        seeds = tuple(int(v) for v in _csv_list(str(value)))
    except ValueError:
        raise UsageError(f"--seed: expected integers separated by commas, got {value!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise UsageError(f"--seed: expected one or more distinct integers, got {value!r}")
    return seeds


def _set_threads(n: int | None) -> None:
    if n is None:
        return
    import cv2
    import torch

    torch.set_num_threads(n)
    cv2.setNumThreads(n)


def _meta(args: argparse.Namespace, n_pairs: int, cfg: EvalConfig, methods: list[str], seeds: tuple[int, ...]) -> dict:
    import cv2
    import torch

    return {
        "data": str(args.data),
        "gt_fixes": str(args.gt_fixes) if args.gt_fixes else None,
        "split": args.split,
        "mode": args.mode,
        "modalities": args.modalities,
        "max_pairs": args.max_pairs,
        "pairs": n_pairs,
        "instances_per_pair": cfg.instances_per_pair if cfg.mode == "warped" else 1,
        "seed": cfg.seed if len(seeds) == 1 else list(seeds),
        "warp": asdict(cfg.warp),
        "ransac": f"USAC_MAGSAC {cfg.ransac_threshold_px} px",
        "ncm_threshold_px": cfg.ncm_threshold_px,
        "methods": methods,
        "checkpoint": str(args.checkpoint) if args.checkpoint else "packaged",
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "cv2_threads": cv2.getNumThreads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "opencv": cv2.__version__,
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def run(args: argparse.Namespace) -> int:
    names = _csv_list(args.methods)
    bad = [n for n in names if n not in METHODS]
    if bad or not names:
        raise UsageError(f"--methods: unknown {bad or 'empty list'}; choose from {', '.join(METHODS)}")
    if args.max_pairs is not None and args.max_pairs < 1:
        raise UsageError("--max-pairs must be >= 1")
    if args.instances_per_pair < 1:
        raise UsageError("--instances-per-pair must be >= 1")
    seeds = _seeds(args.seed)
    _set_threads(args.threads)

    records = read_dataset(args.data, args.gt_fixes)
    mods = _csv_list(args.modalities)
    unknown = sorted(set(mods) - {r.modality for r in records})
    if unknown:
        raise UsageError(f"--modalities: {unknown} not in {args.data} (has {sorted({r.modality for r in records})})")
    selected = select_pairs(records, split=args.split, modalities=mods or None, max_pairs=args.max_pairs)
    if not selected:
        raise UsageError(f"no pairs selected from {args.data} (split {args.split}, modalities {mods or 'all'})")
    cfg = EvalConfig(mode=args.mode, instances_per_pair=args.instances_per_pair, seed=seeds[0])
    progress = not args.no_progress
    validate_pairs(selected, progress=progress)  # a broken pair fails here, before minutes of matching

    ready, unavailable = own.build_methods(method_specs(names, args))
    if not ready:
        log.warning("none of the methods %s could be loaded; nothing to measure", names)
    # The raw pairs have no warp: one pass whatever the seeds.
    runs = [replace(cfg, seed=s) for s in (seeds if cfg.mode == "warped" else seeds[:1])]
    records_out = [r for c in runs for r in evaluate(selected, ready, c, progress=progress)] if ready else []
    summaries = summarize(records_out)
    meta = _meta(args, len(selected), cfg, names, tuple(c.seed for c in runs))
    seed_text = f"seed {runs[0].seed}" if len(runs) == 1 else f"seeds {', '.join(str(c.seed) for c in runs)}"
    head = (
        f"Accuracy ({args.mode}) on {args.data} split={args.split}: {len(selected)} pairs x "
        f"{meta['instances_per_pair'] * len(runs)} instance(s) ({seed_text}); success = grid RMSE <= 3/5/10 px after MAGSAC (3 px); "
        f"NCM = matches within {cfg.ncm_threshold_px:g} px; s/pair = one match call "
        f"({meta['torch_threads']} torch threads, {meta['cpu_count']} CPUs)."
    )
    table = markdown_table(summaries, unavailable)
    measured = list(dict.fromkeys(r.method for r in records_out))
    if len(measured) > 1:  # the first method named against each other one, instance by instance
        table += "\n" + paired_table(paired_counts(records_out, measured[0], SUCCESS_THRESHOLDS_PX[0]))
    print(head + "\n\n" + table, end="")
    if args.out is not None:
        md = f"# Accuracy benchmark ({args.mode})\n\n{head}\n\n{table}"
        paths = write_reports(args.out, f"accuracy_{args.mode}", md, meta, summaries, records_out, unavailable)
        log.info("wrote %s", ", ".join(str(p) for p in paths))
    return 0


def exit_status(run_fn, args: argparse.Namespace) -> int:
    """run_fn(args) with the benchmarks' exit statuses: 2 and a one-line message for bad input, 130 when interrupted."""
    try:
        return run_fn(args)
    except (DatasetError, own.CheckpointError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; no report written", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return exit_status(run, args)


if __name__ == "__main__":
    sys.exit(main())
