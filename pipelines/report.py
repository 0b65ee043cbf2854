"""The end of a batch: a summary table for the terminal and the same rows as CSV and JSON beside the outputs."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

from pipelines.runner import BatchResult, PairResult

COLUMNS = ("#", "pair", "status", "tie points", "RMSE px", "transform", "time s", "reason / output")


def _num(v: float, fmt: str) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def _cells(p: PairResult) -> list[str]:
    tie = f"{p.inliers}/{p.tie_points}" if p.tie_points else "-"
    note = p.reason if p.status not in ("registered",) else (p.outputs.get("raster") or p.output)
    if p.status == "skipped":
        note = f"complete: {p.output}"
    return [str(p.index), p.name, p.status, tie, _num(p.rmse_px, ".3f"), p.transform or "-",
            _num(p.seconds, ".1f") if p.seconds else "-", note or ""]


def format_table(result: BatchResult) -> str:
    """A plain-text table, one row per pair (tie points: inliers/all), and a totals line."""
    rows = [list(COLUMNS)] + [_cells(p) for p in result.pairs]
    widths = [max(len(r[i]) for r in rows) for i in range(len(COLUMNS) - 1)]
    lines = []
    for k, r in enumerate(rows):
        lines.append("  ".join(c.ljust(w) for c, w in zip(r[:-1], widths)) + "  " + r[-1])
        if k == 0:
            lines.append("  ".join("-" * w for w in widths) + "  " + "-" * len(COLUMNS[-1]))
    counts = result.counts()
    order = ("registered", "skipped", "failed", "error", "not run")
    summary = ", ".join(f"{counts[s]} {s}" for s in order if counts.get(s))
    rate = f", {result.tiles} tiles at {result.tiles_per_s:.2f} tiles/s" if result.tiles else ""
    lines.append(f"{len(result.pairs)} pairs: {summary} in {result.wall_s:.1f} s on {result.n_workers} worker(s){rate}")
    return "\n".join(lines)


def rows(result: BatchResult) -> list[dict]:
    out = []
    for p in result.pairs:
        out.append({
            "index": p.index, "where": p.where, "pair": p.name, "status": p.status, "reason": p.reason,
            "reference": p.reference, "moving": p.moving, "output": p.output,
            "transform": p.transform, "tie_points": p.tie_points, "inliers": p.inliers,
            "rmse_px": None if math.isnan(p.rmse_px) else round(p.rmse_px, 4),
            "ce90_px": None if math.isnan(p.ce90_px) else round(p.ce90_px, 4),
            "tiles": p.tiles, "tiles_matched": p.tiles_matched,
            "seconds": round(p.seconds, 3), "elapsed_s": round(p.elapsed_s, 3),
        })
    return out


def _atomic_write(path: Path, text: str) -> None:
    # A temporary file then a rename; a fault of the machine comes out as geomreg.OutputError naming `path`.
    from geomreg.geo.outputs import atomic_output

    with atomic_output(path) as tmp:
        tmp.write_text(text)


def write_summary(result: BatchResult, out_dir: str | os.PathLike, stem: str = "batch_summary") -> dict[str, Path]:
    """`<out_dir>/batch_summary.json` (with totals) and `.csv` (one row per pair), written atomically."""
    from geomreg.geo.outputs import machine_faults

    d = Path(out_dir)
    paths = {"json": d / f"{stem}.json", "csv": d / f"{stem}.csv"}
    with machine_faults(paths["json"]):
        d.mkdir(parents=True, exist_ok=True)
    data = rows(result)
    doc = {"pairs": data, "counts": result.counts(), "wall_s": round(result.wall_s, 3), "tiles": result.tiles,
           "tiles_per_s": None if not result.tiles else round(result.tiles_per_s, 4), "workers": result.n_workers,
           "ok": result.ok}
    _atomic_write(paths["json"], json.dumps(doc, indent=2))
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(data[0]) if data else ["index"])
    w.writeheader()
    w.writerows(data)
    _atomic_write(paths["csv"], buf.getvalue())
    return paths
