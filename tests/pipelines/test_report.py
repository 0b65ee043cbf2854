"""The summary: a table per pair (status, tie points, RMSE, time, reason) and the same rows as JSON and CSV."""

from __future__ import annotations

import csv
import json

from pipelines.report import format_table, write_summary
from pipelines.runner import BatchResult, PairResult


def _result() -> BatchResult:
    ok = PairResult(1, "line 2", "a.tif", "/d/ra.tif", "/d/a.tif", "/o/a_registered.tif", "registered", None, "affine", 300, 287,
                    0.412, 0.7, 9, 9, 12.34, 20.0, {"raster": "/o/a_registered.tif"})
    skipped = PairResult(2, "line 3", "b.tif", "/d/rb.tif", "/d/b.tif", "/o/b_registered.tif", "skipped", "complete output exists",
                         "translation", 120, 118, 0.2, 0.3, 4, 4)
    failed = PairResult(3, "line 4", "c.tif", "/d/rc.tif", "/d/c.tif", "/o/c_registered.tif", "failed",
                        "only 3 tie points (at least 8 consistent ones are needed)", None, 3, 0, float("nan"), float("nan"), 9, 1, 4.0)
    bad = PairResult(4, "line 5", "d.tif", "/d/missing.tif", "/d/d.tif", "/o/d_registered.tif", "error", "/d/missing.tif: reference file not found")
    return BatchResult([ok, skipped, failed, bad], wall_s=30.0, tiles=18, n_workers=2)


def test_table():
    r = _result()
    text = format_table(r)
    lines = text.splitlines()
    assert lines[0].split()[:4] == ["#", "pair", "status", "tie"]
    assert "RMSE px" in lines[0] and "time s" in lines[0] and "reason / output" in lines[0]
    row = {ln.split()[1]: ln for ln in lines[2:6]}
    assert "registered" in row["a.tif"] and "287/300" in row["a.tif"] and "0.412" in row["a.tif"] and "12.3" in row["a.tif"]
    assert row["a.tif"].rstrip().endswith("/o/a_registered.tif")
    assert "skipped" in row["b.tif"] and "complete: /o/b_registered.tif" in row["b.tif"]
    assert row["c.tif"].rstrip().endswith("only 3 tie points (at least 8 consistent ones are needed)")
    assert "error" in row["d.tif"] and "reference file not found" in row["d.tif"]
    # columns line up
    col = lines[0].index("status")
    assert [ln[col:].split()[0] for ln in lines[2:6]] == ["registered", "skipped", "failed", "error"]
    assert lines[-1] == "4 pairs: 1 registered, 1 skipped, 1 failed, 1 error in 30.0 s on 2 worker(s), 18 tiles at 0.60 tiles/s"
    assert r.exit_code == 1 and not r.ok
    assert BatchResult(r.pairs[:2], 1.0, 0, 1).exit_code == 0  # registered and skipped pairs are a success


def test_summary_files(tmp_path):
    r = _result()
    paths = write_summary(r, tmp_path / "out")
    doc = json.loads(paths["json"].read_text())
    assert doc["counts"] == {"registered": 1, "skipped": 1, "failed": 1, "error": 1} and doc["ok"] is False
    assert doc["tiles"] == 18 and doc["tiles_per_s"] == 0.6
    assert [p["status"] for p in doc["pairs"]] == ["registered", "skipped", "failed", "error"]
    assert doc["pairs"][2]["rmse_px"] is None and doc["pairs"][0]["rmse_px"] == 0.412
    with open(paths["csv"]) as f:
        rows = list(csv.DictReader(f))
    assert [r["pair"] for r in rows] == ["a.tif", "b.tif", "c.tif", "d.tif"]
    assert rows[3]["reason"] == "/d/missing.tif: reference file not found"
    assert sorted(q.name for q in (tmp_path / "out").iterdir()) == ["batch_summary.csv", "batch_summary.json"]  # no temporaries
