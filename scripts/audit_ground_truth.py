"""Check a dataset's ground truth by image structure and write re-estimated matrices (geomreg.data.gt_audit).

    .venv/bin/python scripts/audit_ground_truth.py --data ../shared/data/train --modality opt-sar \\
        --out data_audit/train_gt_fixes.csv

One row per audited pair: the verdict (confirmed / corrected / unverified), the given and found rotation,
descriptor correlations, CFOG inliers, the given ground truth's error against the estimate, and the estimated
H_mov_to_ref (h00..h22; empty when unverified). `--summarize CSV` prints the statistics of an existing file
(the numbers quoted in data_audit/README.md) without auditing again. Training and the benchmarks read the file with
``--gt-fixes`` (``gt_fixes`` in a training config): corrected and confirmed pairs use the estimate,
unverified pairs are left out.
"""

from __future__ import annotations

import argparse
import csv
import io
import logging
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from geomreg.data.gt_audit import AuditConfig, audit_pair
from geomreg.data.manifest import GT_FIX_COLUMNS, DatasetError, load_pair, read_manifest
from geomreg.evaluation.report import write_atomic

COLUMNS = GT_FIX_COLUMNS[:2] + ("modality", "given_angle_deg", "found_angle_deg", "ncc_given", "ncc_found", "n_inliers", "error_px", "reason") + GT_FIX_COLUMNS[2:]


def audit_rows(records, cfg: AuditConfig, progress: bool) -> list[dict]:
    rows = []
    for rec in tqdm(records, desc="auditing ground truth", unit="pair", disable=not progress):
        ref, mov, H = load_pair(rec)
        a = audit_pair(ref, mov, H, cfg)
        row = {
            "pair_id": rec.pair_id, "verdict": a.verdict, "modality": rec.modality,
            "given_angle_deg": f"{a.given_angle_deg:.2f}", "found_angle_deg": f"{a.found_angle_deg:.2f}",
            "ncc_given": f"{a.ncc_given:.4f}", "ncc_found": f"{a.ncc_found:.4f}", "n_inliers": a.n_inliers,
            "error_px": f"{a.error_px:.2f}", "reason": a.reason,
        }
        for i in range(3):
            for j in range(3):
                row[f"h{i}{j}"] = "" if a.H_found is None else repr(float(a.H_found[i, j]))
        rows.append(row)
    return rows


def write_csv(path: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    write_atomic(path, buf.getvalue())


def summary(rows: list[dict]) -> str:
    """Verdict counts, and over the verified pairs: the given matrices' error, angle error and CFOG inliers."""
    counts = {v: sum(r["verdict"] == v for r in rows) for v in ("confirmed", "corrected", "unverified")}
    lines = [f"{len(rows)} pairs audited: " + ", ".join(f"{n} {v}" for v, n in counts.items())]
    ok = [r for r in rows if r["verdict"] != "unverified"]
    if ok:
        err = np.array([float(r["error_px"]) for r in ok])
        ang = np.array([float(r["found_angle_deg"]) - float(r["given_angle_deg"]) for r in ok])
        ang = np.abs((ang + 180.0) % 360.0 - 180.0)
        inl = np.array([int(r["n_inliers"]) for r in ok])
        q = lambda a: "median {:.1f}, 10th pct {:.1f}, 90th pct {:.1f}, max {:.1f}".format(*np.percentile(a, [50, 10, 90, 100]))  # noqa: E731
        lines += [
            f"given matrix error (px): {q(err)}",
            f"angle error (deg): {q(ang)}; above 44 deg: {np.mean(ang > 44):.0%}",
            f"CFOG inliers: {inl.min()}-{inl.max()}, median {np.median(inl):.1f}",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--summarize", type=Path, help="print the statistics of an existing audit CSV and exit")
    args, _ = ap.parse_known_args(argv)
    if args.summarize:
        if not args.summarize.is_file():
            print(f"error: {args.summarize}: no such file", file=sys.stderr)
            return 2
        print(summary(list(csv.DictReader(args.summarize.open(encoding="utf-8")))))
        return 0
    ap.add_argument("--data", type=Path, required=True, help="dataset directory with MANIFEST.csv")
    ap.add_argument("--modality", action="append", help="audit pairs of this modality (repeatable; default: all)")
    ap.add_argument("--pairs", help="comma-separated pair ids (default: every pair of the modalities)")
    ap.add_argument("--out", type=Path, required=True, help="CSV to write")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    try:
        records = read_manifest(args.data)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.modality:
        records = [r for r in records if r.modality in set(args.modality)]
    if args.pairs:
        wanted = set(args.pairs.split(","))
        records = [r for r in records if r.pair_id in wanted]
    if not records:
        print("error: no pair selected", file=sys.stderr)
        return 2
    try:
        rows = audit_rows(records, AuditConfig(), not args.no_progress)
    except DatasetError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    write_csv(args.out, rows)
    print(summary(rows) + f"\n-> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
