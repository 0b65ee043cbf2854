"""scripts/compare_train_logs.py: two legs' losses paired on the steps where they trained on the same crop."""

from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("compare_train_logs", REPO / "scripts" / "compare_train_logs.py")
mod = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mod)

HEADER = "step,time,loss,coarse,fine,fine_ce,lr,positives,sec_per_step\n"


def _log(path: Path, rows: list[tuple[int, float, int]]) -> Path:
    path.write_text(HEADER + "".join(f"{s},0,{c + 1},{c},0.2,1.0,1e-5,{p},2.0\n" for s, c, p in rows))
    return path


def test_only_steps_with_the_same_crop_are_paired(tmp_path, capsys):
    a = _log(tmp_path / "a.csv", [(5, 1.0, 10), (10, 2.0, 20), (15, 3.0, 30), (20, 9.0, 40)])
    b = _log(tmp_path / "b.csv", [(5, 1.5, 10), (10, 2.5, 20), (15, 3.0, 31), (20, 9.5, 40), (20, 0.0, 40)])
    assert mod.paired(mod.read_log(a), mod.read_log(b)) == [5, 10, 20]  # step 15 drew another crop
    assert mod.paired(mod.read_log(a), mod.read_log(b, until=10)) == [5, 10]
    assert mod.main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "3 steps with the same crop, 5-20" in out
    assert "| coarse | 4.000 | 4.500 | -0.5000 | 0.0000 | -0.111 |" in out  # the duplicate step 20 keeps its first row


def test_logs_with_nothing_in_common_are_an_error(tmp_path, capsys):
    a = _log(tmp_path / "a.csv", [(5, 1.0, 10)])
    b = _log(tmp_path / "b.csv", [(5, 1.0, 11)])
    assert mod.main([str(a), str(b)]) == 2
    assert "fewer than 2 steps" in capsys.readouterr().err
    assert mod.main([str(a), str(tmp_path / "missing.csv")]) == 2
