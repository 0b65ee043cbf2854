"""Two training legs' losses, step by step, where both trained on the same crops.

    .venv/bin/python scripts/compare_train_logs.py runs/grow21/train_log.csv runs/cpu19/train_log.csv [--until 14608]

Legs that start at the same step with the same config seed draw the same crops (the data stream is seeded by
seed + start step), so at each logged step both saw the same pair. The count of positive coarse cells is the
check: only steps where it is equal in both logs are compared (a leg resumed later starts a new stream).
--until cuts the second log where it was resumed. Prints each loss's mean in both legs with the paired
difference and its standard error, and each leg's median seconds per step.
"""

from __future__ import annotations

import argparse
import csv
import math
import statistics
import sys
from pathlib import Path

LOSSES = ("loss", "coarse", "fine", "fine_ce")


def read_log(path: Path, until: int | None = None) -> dict[int, dict[str, float]]:
    """step -> row of a train_log.csv (the first row of a step logged twice, as after a resume)."""
    rows: dict[int, dict[str, float]] = {}
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            step = int(row["step"])
            if (until is None or step <= until) and step not in rows:
                rows[step] = {k: float(v) for k, v in row.items() if v not in ("", None)}
    return rows


def paired(a: dict[int, dict[str, float]], b: dict[int, dict[str, float]]) -> list[int]:
    """Steps logged in both with the same number of positives (the same crop)."""
    return sorted(s for s in a.keys() & b.keys() if a[s].get("positives") == b[s].get("positives"))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("log_a", type=Path)
    ap.add_argument("log_b", type=Path)
    ap.add_argument("--until", type=int, default=None, help="ignore the second log's steps after this one")
    args = ap.parse_args(argv)
    try:
        a, b = read_log(args.log_a), read_log(args.log_b, args.until)
    except (OSError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    steps = paired(a, b)
    if len(steps) < 2:
        print(f"error: fewer than 2 steps with the same crop in {args.log_a} and {args.log_b}", file=sys.stderr)
        return 2
    print(f"{len(steps)} steps with the same crop, {steps[0]}-{steps[-1]}")
    print("| loss | A | B | A - B | s.e. | relative |\n|---|---|---|---|---|---|")
    for k in LOSSES:
        if not all(k in a[s] and k in b[s] for s in steps):
            continue
        d = [a[s][k] - b[s][k] for s in steps]
        mb = statistics.fmean(b[s][k] for s in steps)
        se = statistics.stdev(d) / math.sqrt(len(d))
        print(f"| {k} | {statistics.fmean(a[s][k] for s in steps):.3f} | {mb:.3f} | {statistics.fmean(d):+.4f} | {se:.4f} | {statistics.fmean(d) / mb:+.3f} |")
    for name, log in (("A", a), ("B", b)):
        sec = [r["sec_per_step"] for r in log.values() if "sec_per_step" in r]
        if sec:
            print(f"{name}: median {statistics.median(sec):.2f} s per step over {len(sec)} logged steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
