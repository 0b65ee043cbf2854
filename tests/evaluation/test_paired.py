from __future__ import annotations

import math

import pytest

from geomreg.evaluation.paired import paired_counts, paired_table, sign_test_p
from geomreg.evaluation.report import read_records_csv, records_csv
from geomreg.evaluation.runner import InstanceRecord


def rec(method: str, modality: str, pair: str, rmse: float, seed: int = 0) -> InstanceRecord:
    return InstanceRecord(method, modality, pair, 0, "warped", 256, 256, 10, 5, 0.5, rmse, 0.1, "", seed)


def test_sign_test_matches_the_binomial_distribution():
    assert sign_test_p(0, 0) == 1.0
    assert sign_test_p(1, 2) == 1.0  # 2 * (1 + 3) / 8 capped at 1
    assert sign_test_p(5, 0) == pytest.approx(2 / 32)
    assert sign_test_p(0, 5) == pytest.approx(2 / 32)
    assert sign_test_p(8, 2) == pytest.approx(2 * (1 + 10 + 45) / 1024)


def test_paired_counts_pair_instances_by_pair_and_seed():
    records = [
        rec("net", "opt-sar", "p1", 1.0, seed=0), rec("sift", "opt-sar", "p1", 9.0, seed=0),  # only net
        rec("net", "opt-sar", "p1", 2.0, seed=1), rec("sift", "opt-sar", "p1", 2.5, seed=1),  # both
        rec("net", "opt-sar", "p2", math.inf), rec("sift", "opt-sar", "p2", 0.5),  # only sift
        rec("net", "vis-ir", "p3", 4.0), rec("sift", "vis-ir", "p3", 7.0),  # neither
        rec("net", "vis-ir", "p4", 1.0),  # sift has no such instance: left out
    ]
    rows = {(r.modality, r.peer): r for r in paired_counts(records, "net", 3.0)}
    sar = rows[("opt-sar", "sift")]
    assert (sar.only_method, sar.only_peer, sar.both, sar.neither) == (1, 1, 1, 0)
    assert sar.p_value == 1.0
    vi = rows[("vis-ir", "sift")]
    assert (vi.only_method, vi.only_peer, vi.both, vi.neither) == (0, 0, 0, 1)
    assert (rows[("all", "sift")].only_method, rows[("all", "sift")].neither) == (1, 1)
    # a looser threshold changes who succeeds
    loose = {(r.modality, r.peer): r for r in paired_counts(records, "net", 5.0)}
    assert loose[("vis-ir", "sift")].only_method == 1
    with pytest.raises(ValueError, match="no records of method 'orb'"):
        paired_counts(records, "orb")
    md = paired_table(list(rows.values()))
    assert "| modality | net against | only net | only the peer | both | neither | sign-test p |" in md
    assert "| opt-sar | sift | 1 | 1 | 1 | 0 | 1.000 |" in md


def test_records_csv_reads_back(tmp_path):
    records = [rec("net", "opt-sar", "p1", 1.25, seed=3), rec("sift", "opt-sar", "p1", math.inf)]
    path = tmp_path / "inst.csv"
    path.write_text(records_csv(records))
    assert read_records_csv(path) == records
    # a run from before the seed column still reads, with seed 0
    old = "\n".join(",".join(line.split(",")[:-1]) for line in records_csv(records).splitlines()) + "\n"
    path.write_text(old)
    assert [r.seed for r in read_records_csv(path)] == [0, 0]
    path.write_text("method,modality\nnet,opt-sar\n")
    with pytest.raises(ValueError, match="inst.csv: not a per-instance accuracy CSV .*missing column"):
        read_records_csv(path)


def test_combined_runs_take_each_method_from_the_last_run_that_has_it():
    import importlib.util

    from .synth import REPO

    spec = importlib.util.spec_from_file_location("paired_cli", REPO / "benchmarks" / "paired.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    first = [rec("net", "opt-sar", "p1", 9.0), rec("sift", "opt-sar", "p1", 1.0)]
    rerun = [rec("net", "opt-sar", "p1", 1.0)]
    combined = mod.combine([first, rerun])
    assert sorted((r.method, r.grid_rmse) for r in combined) == [("net", 1.0), ("sift", 1.0)]


def test_runs_of_other_seeds_are_pooled(tmp_path, capsys):
    import importlib.util

    from .synth import REPO

    spec = importlib.util.spec_from_file_location("paired_cli", REPO / "benchmarks" / "paired.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    seed0 = [rec("net", "opt-sar", "p1", 1.0), rec("sift", "opt-sar", "p1", 9.0), rec("net", "vis-ir", "p2", 1.0), rec("sift", "vis-ir", "p2", 1.0)]
    seed1 = [rec("net", "opt-sar", "p1", 1.0, seed=1), rec("sift", "opt-sar", "p1", 9.0, seed=1)]
    paths = []
    for k, run in enumerate((seed0, seed1)):
        paths.append(tmp_path / f"s{k}.csv")
        paths[-1].write_text(records_csv(run))
    assert mod.main([str(p) for p in paths] + ["--method", "net", "--seeds-apart", "--modalities", "opt-sar"]) == 0
    out = capsys.readouterr().out
    assert "vis-ir" not in out
    assert "| opt-sar | sift | 2 | 0 | 0 | 0 |" in out  # two seeds pooled: the network alone registers both
