from __future__ import annotations

import json
import math

import pytest

from geomreg.evaluation.report import markdown_table, records_csv, summarize, write_reports
from geomreg.evaluation.runner import InstanceRecord


def rec(method: str, modality: str, pair: str, rmse: float, ncm: int = 10, n: int = 20, seconds: float = 0.5, error: str = "") -> InstanceRecord:
    return InstanceRecord(method, modality, pair, 0, "warped", 256, 256, n, ncm, ncm / n if n else 0.0, rmse, seconds, error)


RECORDS = [
    rec("a", "opt-sar", "p1", 1.0, ncm=100, n=200),
    rec("a", "opt-sar", "p2", 4.0, ncm=50, n=100),
    rec("a", "opt-sar", "p3", 8.0, ncm=0, n=10),
    rec("a", "opt-sar", "p4", math.inf, ncm=0, n=0, error="RuntimeError: boom"),
    rec("b", "opt-sar", "p1", 2.0),
    rec("a", "vis-ir", "p5", 0.5),
]


def test_summary_rates_medians_and_means():
    s = {(x.method, x.modality): x for x in summarize(RECORDS)}
    a = s[("a", "opt-sar")]
    assert a.instances == 4 and a.pairs == 4
    assert a.success == (0.25, 0.5, 0.75)
    assert a.median_rmse_success == pytest.approx(4.0)  # median of the RMSE <= 10 px ones: 1, 4, 8
    assert a.mean_ncm == pytest.approx(37.5)
    assert a.mean_cmr == pytest.approx((0.5 + 0.5 + 0.0 + 0.0) / 4)
    assert a.errors == 1
    assert s[("a", "all")].instances == 5 and s[("b", "all")].instances == 1
    assert ("b", "vis-ir") not in s
    assert math.isnan(summarize([rec("c", "x", "p", math.inf)])[0].median_rmse_success)


def test_markdown_table_rows_and_unavailable_methods():
    md = markdown_table(summarize(RECORDS), {"regnetmamba2": "no usable packaged weights"})
    lines = md.splitlines()
    assert lines[0].startswith("| modality | method |") and "ok@3px" in lines[0]
    assert "| opt-sar | a (1 err) | 4 | 4 | 0.25 | 0.50 | 0.75 | 4.00 |" in md
    assert "| all | b |" in md
    assert "**regnetmamba2**: unavailable — no usable packaged weights" in md


def test_reports_are_complete_and_json_has_no_infinities(tmp_path):
    summaries = summarize(RECORDS)
    paths = write_reports(tmp_path / "out", "accuracy_warped", "# t\n", {"seed": 0}, summaries, RECORDS, {"x": "why"})
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted(p.name for p in paths)
    doc = json.loads((tmp_path / "out" / "accuracy_warped.json").read_text())
    assert doc["unavailable"] == {"x": "why"}
    assert doc["instances"][3]["grid_rmse"] is None
    assert len(doc["summaries"]) == len(summaries)
    csv_lines = records_csv(RECORDS).splitlines()
    assert csv_lines[0].startswith("method,modality,pair_id,instance,mode")
    assert len(csv_lines) == 1 + len(RECORDS)


def test_flat_metrics_per_modality_and_overall():
    from geomreg.evaluation.report import flat_metrics

    records = [rec("m", "opt-sar", "a", 1.0), rec("m", "opt-sar", "b", 20.0), rec("m", "vis-ir", "c", 4.0), rec("other", "vis-ir", "d", 1.0)]
    m = flat_metrics(records, "m")
    assert m["all/n"] == 3 and m["opt-sar/n"] == 2 and m["vis-ir/n"] == 1
    assert m["opt-sar/success@3"] == pytest.approx(0.5) and m["vis-ir/success@3"] == 0.0 and m["vis-ir/success@5"] == 1.0
    assert m["all/success@10"] == pytest.approx(2 / 3)
