"""Re-report accuracy runs from their per-instance CSVs: the summary table and the paired comparison
(geomreg/evaluation/paired.py: which instances one method registers and another does not, per modality, with
an exact sign test).

    python benchmarks/paired.py benchmarks/out/s15_acc4/accuracy_warped_instances.csv --method regnetmamba2

Several CSVs combine into one report; a method found in more than one takes its records from the last
(e.g. the network re-run after a change beside the peers of an earlier run on the same instances).
--seeds-apart: the CSVs are runs of other warp seeds, and their records are pooled instead (--modalities keeps some).
benchmarks/accuracy.py prints both tables itself; this reads runs that already exist.
Exit status: 0 done, 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

_REPO = Path(__file__).resolve().parents[1]
if str(_REPO) not in sys.path:
    sys.path.insert(0, str(_REPO))

from geomreg.evaluation.paired import paired_counts, paired_table  # noqa: E402
from geomreg.evaluation.report import markdown_table, read_records_csv, summarize  # noqa: E402
from geomreg.evaluation.runner import InstanceRecord  # noqa: E402


def combine(runs: list[list[InstanceRecord]]) -> list[InstanceRecord]:
    """Records of several runs; each method's come from the last run that has it."""
    owner = {r.method: k for k, run in enumerate(runs) for r in run}
    return [r for k, run in enumerate(runs) for r in run if owner[r.method] == k]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("instances_csv", type=Path, nargs="+", help="accuracy_<mode>_instances.csv of benchmarks/accuracy.py")
    ap.add_argument("--method", default="regnetmamba2", help="the method compared against every other one")
    ap.add_argument("--threshold", type=float, default=3.0, help="success threshold of the paired table, px of grid RMSE (default 3)")
    ap.add_argument("--seeds-apart", action="store_true", help="pool every CSV's records (runs of other warp seeds)")
    ap.add_argument("--modalities", default="", help="comma-separated modalities to report (default: all)")
    args = ap.parse_args(argv)
    try:
        runs = [read_records_csv(p) for p in args.instances_csv]
        records = [r for run in runs for r in run] if args.seeds_apart else combine(runs)
        if args.modalities:
            wanted = set(args.modalities.split(","))
            records = [r for r in records if r.modality in wanted]
        rows = paired_counts(records, args.method, args.threshold)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(markdown_table(summarize(records)) + "\n" + paired_table(rows), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
