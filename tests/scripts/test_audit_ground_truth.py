import csv
import importlib.util
from pathlib import Path

from tests.evaluation.synth import two_pair_dataset

_SPEC = importlib.util.spec_from_file_location("audit_ground_truth", Path(__file__).parents[2] / "scripts" / "audit_ground_truth.py")
audit = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(audit)


def test_audit_confirms_right_ground_truth_and_writes_a_fixes_file(tmp_path, capsys):
    root = two_pair_dataset(tmp_path / "ds")
    out = tmp_path / "fixes.csv"
    assert audit.main(["--data", str(root), "--out", str(out), "--no-progress"]) == 0
    rows = list(csv.DictReader(out.open()))
    assert sorted(r["pair_id"] for r in rows) == ["syn_oo_0001", "syn_vi_0001"]
    assert all(r["verdict"] == "confirmed" and float(r["error_px"]) < 1.5 for r in rows), rows
    assert "2 pairs audited: 2 confirmed" in capsys.readouterr().out


def test_audit_bad_input_exits_2(tmp_path, capsys):
    assert audit.main(["--data", str(tmp_path), "--out", str(tmp_path / "x.csv")]) == 2
    assert "MANIFEST.csv" in capsys.readouterr().err
    root = two_pair_dataset(tmp_path / "ds")
    assert audit.main(["--data", str(root), "--modality", "nope", "--out", str(tmp_path / "x.csv")]) == 2
