"""How many of a method's 3 px misses an independent method shares: the ground truth's part of the error.

    .venv/bin/python benchmarks/gt_agreement.py --data ../shared/data/train --split val \\
        --gt-fixes data_audit/train_gt_fixes.csv --max-pairs 25 --seed 0 \\
        --subject regnetmamba2 --peers cfog,disk_lightglue,sift --out benchmarks/out/gt_agreement

The instances are the accuracy benchmark's (same split, caps, seeds and warps). Every method's matches are
fitted with MAGSAC (3 px) as there; a miss of the subject is *shared* when some peer's homography lies within
--agree-px (grid RMSE between the two fits) of the subject's: the images point where the subject went and the
truth disagrees with both (geomreg/evaluation/agreement.py). Writes gt_agreement.md and
gt_agreement_instances.csv under --out. Exit status: 0 done, 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

from tqdm import tqdm  # noqa: E402

from benchmarks.accuracy import METHODS, UsageError, _csv_list, _seeds, _set_threads, exit_status, method_specs  # noqa: E402
from geomreg.data.manifest import read_dataset  # noqa: E402
from geomreg.evaluation import methods as own  # noqa: E402
from geomreg.evaluation.agreement import OWN_MISS, SHARED_MISS, Agreement, classify, fitted_homography, summarize_agreement  # noqa: E402
from geomreg.evaluation.runner import EvalConfig, iter_instances, select_pairs, validate_pairs  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True, type=Path, help="dataset directory with MANIFEST.csv")
    ap.add_argument("--split", choices=("all", "val", "train"), default="val")
    ap.add_argument("--modalities", default=None, help="comma-separated modalities (default: all in the split)")
    ap.add_argument("--max-pairs", type=int, default=None, help="at most this many pairs per modality")
    ap.add_argument("--seed", default="0", help="warp seed(s), comma-separated, as in benchmarks/accuracy.py")
    ap.add_argument("--gt-fixes", type=Path, default=None, help="audited ground truth (scripts/audit_ground_truth.py)")
    ap.add_argument("--subject", default="regnetmamba2", help=f"the method whose misses are examined, from {', '.join(METHODS)}")
    ap.add_argument("--peers", default="cfog,disk_lightglue,sift", help="independent methods, comma-separated")
    ap.add_argument("--miss-px", type=float, default=3.0, help="a fit further than this from the truth is a miss")
    ap.add_argument("--agree-px", type=float, default=1.5, help="two fits closer than this (grid RMSE) agree")
    ap.add_argument("--checkpoint", type=Path, default=None, help="RegNetMamba-2 checkpoint (default: packaged weights)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--torch-home", default=None, help="TORCH_HOME holding the offline DISK/LightGlue weights")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--no-progress", action="store_true")
    return ap.parse_args(argv)


def summary_table(rows: list[Agreement], miss_px: float) -> str:
    lines = [
        f"| modality | instances | hits (<= {miss_px:g} px) | shared misses | own misses | of which a peer registered |",
        "|---|---|---|---|---|---|",
    ]
    for mod, c in summarize_agreement(rows, miss_px).items():
        lines.append(f"| {mod} | {c['instances']} | {c['hit']} | {c[SHARED_MISS]} | {c[OWN_MISS]} | {c['own_miss_peer_hit']} |")
    return "\n".join(lines) + "\n"


def misses_table(rows: list[Agreement]) -> str:
    lines = ["| pair | seed | subject px | agreeing peers (px to the subject; px to the truth) |", "|---|---|---|---|"]
    for r in rows:
        if r.verdict == SHARED_MISS:
            peers = ", ".join(f"{m} ({r.peer_to_subject[m]:.2f}; {r.peer_rmse[m]:.2f})" for m in r.agreeing)
            lines.append(f"| {r.pair_id} | {r.seed} | {r.subject_rmse:.2f} | {peers} |")
    return "\n".join(lines) + "\n"


def write_outputs(out: Path, text: str, rows: list[Agreement], peers: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tmp = out / "gt_agreement.md.tmp"
    tmp.write_text(text)
    tmp.replace(out / "gt_agreement.md")
    tmp = out / "gt_agreement_instances.csv.tmp"
    with tmp.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["pair_id", "modality", "seed", "instance", "verdict", "subject_rmse"]
                   + [f"{m}_rmse" for m in peers] + [f"{m}_to_subject" for m in peers])
        for r in rows:
            w.writerow([r.pair_id, r.modality, r.seed, r.index, r.verdict, f"{r.subject_rmse:.4f}"]
                       + [f"{r.peer_rmse[m]:.4f}" for m in peers] + [f"{r.peer_to_subject[m]:.4f}" for m in peers])
    tmp.replace(out / "gt_agreement_instances.csv")


def run(args: argparse.Namespace) -> int:
    peers = _csv_list(args.peers)
    names = [args.subject, *peers]
    bad = [n for n in names if n not in METHODS]
    if bad or not peers or args.subject in peers:
        raise UsageError(f"--subject/--peers: one subject and one or more other methods from {', '.join(METHODS)} (bad: {bad})")
    _set_threads(args.threads)
    records = read_dataset(args.data, args.gt_fixes)
    selected = select_pairs(records, split=args.split, modalities=_csv_list(args.modalities) or None, max_pairs=args.max_pairs)
    if not selected:
        raise UsageError(f"no pairs selected from {args.data}")
    validate_pairs(selected, progress=not args.no_progress)
    ready, unavailable = own.build_methods(method_specs(names, args))
    if args.subject not in ready:
        raise UsageError(f"the subject {args.subject} could not be loaded: {unavailable.get(args.subject)}")
    peers = [m for m in peers if m in ready]
    rows: list[Agreement] = []
    seeds = _seeds(args.seed)
    for seed in seeds:
        cfg = EvalConfig(seed=seed)
        for inst in tqdm(iter_instances(selected, cfg), total=len(selected), desc=f"seed {seed}", disable=args.no_progress):
            fits = {m: fitted_homography(ready[m], inst) for m in [args.subject, *peers]}
            rows.append(classify(inst, fits, args.subject, miss_px=args.miss_px, agree_px=args.agree_px))
    head = (f"{args.subject} against {', '.join(peers)} on {len(selected)} pairs of {args.data} (split {args.split}, "
            f"seeds {', '.join(map(str, seeds))}); miss: > {args.miss_px:g} px from the truth; shared: a peer's fit within "
            f"{args.agree_px:g} px of the subject's." + (f" Not loaded: {unavailable}." if unavailable else ""))
    text = f"# Ground-truth agreement\n\n{head}\n\n{summary_table(rows, args.miss_px)}\nShared misses:\n\n{misses_table(rows)}"
    print(text, end="")
    if args.out is not None:
        write_outputs(args.out, text, rows, peers)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    return exit_status(run, args)

if __name__ == "__main__":
    sys.exit(main())
