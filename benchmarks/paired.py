"""Paired comparison from an accuracy run's per-instance CSV: which instances one method registers and another
does not, per modality, with an exact sign test (geomreg/evaluation/paired.py).

    python benchmarks/paired.py benchmarks/out/s15_acc4/accuracy_warped_instances.csv --method regnetmamba2

benchmarks/accuracy.py appends the same table to its report; this reads a run that already exists.
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
from geomreg.evaluation.report import read_records_csv  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("instances_csv", type=Path, help="accuracy_<mode>_instances.csv of benchmarks/accuracy.py")
    ap.add_argument("--method", default="regnetmamba2", help="the method compared against every other one in the file")
    ap.add_argument("--threshold", type=float, default=3.0, help="success threshold, px of grid RMSE (default 3)")
    args = ap.parse_args(argv)
    try:
        rows = paired_counts(read_records_csv(args.instances_csv), args.method, args.threshold)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(paired_table(rows), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
