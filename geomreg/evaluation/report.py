"""Per-modality summaries of instance scores, and their markdown / CSV / JSON reports (written atomically)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
from dataclasses import MISSING, asdict, dataclass, fields
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from geomreg.evaluation.metrics import SUCCESS_THRESHOLDS_PX
from geomreg.evaluation.runner import InstanceRecord

ALL = "all"  # pseudo-modality: every instance of a method
# Median RMSE is taken over the instances that succeed at the loosest threshold: the stricter ones
# would cap it at their own threshold and say little.
MEDIAN_OVER_PX = max(SUCCESS_THRESHOLDS_PX)


@dataclass(frozen=True)
class Summary:
    method: str
    modality: str
    instances: int
    pairs: int
    success: tuple[float, ...]  # rate at each of SUCCESS_THRESHOLDS_PX
    median_rmse_success: float  # px, over instances with RMSE <= MEDIAN_OVER_PX; nan when none
    mean_ncm: float
    mean_cmr: float
    seconds_per_pair: float  # mean wall time of one match call
    mean_matches: float
    errors: int  # instances on which the matcher raised


def summarize_group(method: str, modality: str, recs: Sequence[InstanceRecord]) -> Summary:
    rmse = np.array([r.grid_rmse for r in recs], dtype=np.float64)
    ok = rmse <= MEDIAN_OVER_PX
    return Summary(
        method=method,
        modality=modality,
        instances=len(recs),
        pairs=len({r.pair_id for r in recs}),
        success=tuple(float(np.mean(rmse <= t)) for t in SUCCESS_THRESHOLDS_PX),
        median_rmse_success=float(np.median(rmse[ok])) if ok.any() else float("nan"),
        mean_ncm=float(np.mean([r.ncm for r in recs])),
        mean_cmr=float(np.mean([r.cmr for r in recs])),
        seconds_per_pair=float(np.mean([r.seconds for r in recs])),
        mean_matches=float(np.mean([r.n_matches for r in recs])),
        errors=sum(1 for r in recs if r.error),
    )


def summarize(records: Sequence[InstanceRecord]) -> list[Summary]:
    """One summary per (modality, method), modalities sorted, then an ``all`` row per method."""
    methods = list(dict.fromkeys(r.method for r in records))
    modalities = sorted({r.modality for r in records})
    out = []
    for mod in modalities:
        for m in methods:
            group = [r for r in records if r.method == m and r.modality == mod]
            if group:
                out.append(summarize_group(m, mod, group))
    if len(modalities) > 1:
        for m in methods:
            out.append(summarize_group(m, ALL, [r for r in records if r.method == m]))
    return out


def flat_metrics(records: Sequence[InstanceRecord], method: str) -> dict[str, float]:
    """One method's records -> flat per-modality metrics ({mod}/n, /success@k, /ncm, /matches; mod "all" too)."""
    mine = [r for r in records if r.method == method]
    groups = {ALL: mine} | {mod: [r for r in mine if r.modality == mod] for mod in sorted({r.modality for r in mine})}
    out: dict[str, float] = {}
    for mod, recs in groups.items():
        s = summarize_group(method, mod, recs)
        out[f"{mod}/n"] = s.instances
        out.update({f"{mod}/success@{t:g}": v for t, v in zip(SUCCESS_THRESHOLDS_PX, s.success)})
        out[f"{mod}/ncm"] = s.mean_ncm
        out[f"{mod}/matches"] = s.mean_matches
    return out


def _fmt(x: float, digits: int) -> str:
    return "–" if not math.isfinite(x) else f"{x:.{digits}f}"


def markdown_table(summaries: Sequence[Summary], unavailable: dict[str, str] | None = None) -> str:
    th = " | ".join(f"ok@{t:g}px" for t in SUCCESS_THRESHOLDS_PX)
    lines = [
        f"| modality | method | pairs | inst. | {th} | median RMSE (ok@{MEDIAN_OVER_PX:g}) | NCM | CMR | matches | s/pair |",
        "|---|---|---|---|" + "---|" * len(SUCCESS_THRESHOLDS_PX) + "---|---|---|---|---|",
    ]
    for s in summaries:
        rates = " | ".join(f"{v:.2f}" for v in s.success)
        err = f" ({s.errors} err)" if s.errors else ""
        lines.append(
            f"| {s.modality} | {s.method}{err} | {s.pairs} | {s.instances} | {rates} | {_fmt(s.median_rmse_success, 2)} | "
            f"{s.mean_ncm:.1f} | {s.mean_cmr:.3f} | {s.mean_matches:.0f} | {s.seconds_per_pair:.3f} |"
        )
    if unavailable:
        lines.append("")
        for name, reason in unavailable.items():
            lines.append(f"- **{name}**: unavailable — {reason}")
    return "\n".join(lines) + "\n"


def records_csv(records: Sequence[InstanceRecord]) -> str:
    buf = io.StringIO()
    names = [f.name for f in fields(InstanceRecord)]
    w = csv.DictWriter(buf, fieldnames=names, lineterminator="\n")
    w.writeheader()
    for r in records:
        w.writerow(asdict(r))
    return buf.getvalue()


def read_records_csv(path: Path) -> list[InstanceRecord]:
    """The per-instance CSV of an earlier run (records_csv) back as records; ValueError naming the file."""
    types = {f.name: f.type for f in fields(InstanceRecord)}
    required = {f.name for f in fields(InstanceRecord) if f.default is MISSING}  # older runs lack e.g. seed
    convert = {"int": int, "float": float, "str": str}
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        missing = sorted(required - set(rows[0])) if rows else []
        if missing:
            raise ValueError(f"missing column(s) {', '.join(missing)}")
        return [InstanceRecord(**{k: convert[str(t)](row[k]) for k, t in types.items() if k in row}) for row in rows]
    except (OSError, KeyError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a per-instance accuracy CSV ({exc})") from None


def _json_safe(x: Any) -> Any:
    # JSON has no inf/nan: failed fits (inf RMSE) and empty medians become null.
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {k: _json_safe(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_safe(v) for v in x]
    return x


def report_json(meta: dict[str, Any], summaries: Sequence[Summary], records: Sequence[InstanceRecord], unavailable: dict[str, str]) -> str:
    doc = {
        "meta": meta,
        "success_thresholds_px": list(SUCCESS_THRESHOLDS_PX),
        "median_rmse_over_px": MEDIAN_OVER_PX,
        "summaries": [asdict(s) for s in summaries],
        "unavailable": unavailable,
        "instances": [asdict(r) for r in records],
    }
    return json.dumps(_json_safe(doc), indent=1)


def write_atomic(path: Path, text: str) -> None:
    """Write next to the target then rename, so a crash never leaves a half-written report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; reports are meant to be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_reports(
    out_dir: Path, stem: str, markdown: str, meta: dict[str, Any], summaries: Sequence[Summary], records: Sequence[InstanceRecord], unavailable: dict[str, str]
) -> list[Path]:
    """``<stem>.md``, ``<stem>_instances.csv`` and ``<stem>.json`` in out_dir; returns the paths."""
    # Render everything before writing anything: an error while formatting must not leave a partial set.
    texts = {
        out_dir / f"{stem}.md": markdown,
        out_dir / f"{stem}_instances.csv": records_csv(records),
        out_dir / f"{stem}.json": report_json(meta, summaries, records, unavailable),
    }
    for p, t in texts.items():
        write_atomic(p, t)
    return list(texts)
