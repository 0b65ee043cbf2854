"""The benchmark command end to end on a tiny dataset written by the test (CFOG + SIFT, no deep model)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .synth import REPO

SCRIPT = REPO / "benchmarks" / "accuracy.py"
HAVE_CFOG = importlib.util.find_spec("geomreg.matching.cfog") is not None


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, str(SCRIPT), *args, "--no-progress"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def _row(stdout: str, modality: str, method: str) -> list[str]:
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) > 2 and cells[0] == modality and cells[1] == method:
            return cells
    raise AssertionError(f"no row {modality}/{method} in:\n{stdout}")


def test_cli_runs_cfog_and_sift_and_prints_the_table(tiny_dataset, tmp_path):
    out = tmp_path / "report"
    p = run_cli("--data", str(tiny_dataset), "--split", "all", "--methods", "cfog,sift", "--instances-per-pair", "2", "--seed", "1", "--out", str(out), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "| modality | method | pairs | inst. | ok@3px | ok@5px | ok@10px |" in p.stdout
    # same-modality pair with a moderate warp: SIFT must register both instances to well under 3 px;
    # this checks the instance geometry, the conventions and the scoring end to end
    sift_oo = _row(p.stdout, "opt-opt", "sift")
    assert sift_oo[2:7] == ["1", "2", "1.00", "1.00", "1.00"]
    assert float(sift_oo[7]) < 1.5
    _row(p.stdout, "vis-ir", "sift")  # contrast-inverted pair: scored, whatever the outcome
    if HAVE_CFOG:
        cfog_vi = _row(p.stdout, "vis-ir", "cfog")
        assert cfog_vi[3] == "2"
    else:
        assert "**cfog**: unavailable" in p.stdout
    if HAVE_CFOG:  # two methods: the first against the second, instance by instance
        assert "Paired at 3 px" in p.stdout and "| cfog against |" in p.stdout
        paired = [ln for ln in p.stdout.split("Paired at")[1].splitlines() if ln.startswith("| opt-opt | sift |")]
        assert len(paired) == 1 and sum(int(c) for c in paired[0].strip("|").split("|")[2:6]) == 2
    files = sorted(f.name for f in out.iterdir())
    assert files == ["accuracy_warped.json", "accuracy_warped.md", "accuracy_warped_instances.csv"]
    # benchmarks/paired.py reads the run back and prints the same comparison
    q = subprocess.run([sys.executable, str(REPO / "benchmarks" / "paired.py"), str(out / "accuracy_warped_instances.csv"), "--method", "sift"],
                       capture_output=True, text=True, timeout=120)
    assert q.returncode == 0, q.stderr
    assert "| sift against |" in q.stdout and ("| opt-opt | cfog |" in q.stdout) == HAVE_CFOG
    assert "| modality | method | pairs | inst. |" in q.stdout  # the summary table too
    doc = json.loads((out / "accuracy_warped.json").read_text())
    assert doc["meta"]["instances_per_pair"] == 2 and doc["meta"]["pairs"] == 2
    assert {s["method"] for s in doc["summaries"]} == ({"cfog", "sift"} if HAVE_CFOG else {"sift"})


def test_cli_raw_mode_keeps_the_pair_geometry(tiny_dataset, tmp_path):
    p = run_cli("--data", str(tiny_dataset), "--split", "all", "--methods", "sift", "--mode", "raw", "--modalities", "opt-opt", cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    row = _row(p.stdout, "opt-opt", "sift")
    assert row[2:7] == ["1", "1", "1.00", "1.00", "1.00"]  # SIFT is rotation invariant: the 20 deg pair registers


def test_missing_image_is_a_clear_error_naming_the_pair(tiny_dataset, tmp_path):
    (tiny_dataset / "vis-ir" / "syn_vi_0001" / "mov.png").unlink()
    out = tmp_path / "report"
    p = run_cli("--data", str(tiny_dataset), "--split", "all", "--methods", "sift", "--out", str(out), cwd=tmp_path)
    assert p.returncode == 2
    assert "syn_vi_0001" in p.stderr and "image missing" in p.stderr
    assert "Traceback" not in p.stderr
    assert not out.exists()  # nothing half-written


def test_malformed_matrix_is_a_clear_error_naming_the_pair(tiny_dataset, tmp_path):
    (tiny_dataset / "opt-opt" / "syn_oo_0001" / "H_mov_to_ref.txt").write_text("# bad\n1 0 0\n0 1 zero\n0 0 1\n")
    p = run_cli("--data", str(tiny_dataset), "--split", "all", "--methods", "sift", cwd=tmp_path)
    assert p.returncode == 2
    assert "syn_oo_0001" in p.stderr and "malformed" in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["--methods", "sift,orb"], "unknown ['orb']"),
        (["--modalities", "opt-xyz"], "opt-xyz"),
        (["--checkpoint", "does/not/exist.pt", "--methods", "regnetmamba2"], "no such file"),
    ],
)
def test_bad_options_exit_2(tiny_dataset, tmp_path, args, message):
    p = run_cli("--data", str(tiny_dataset), "--split", "all", *args, cwd=tmp_path)
    assert p.returncode == 2, p.stdout + p.stderr
    assert message in p.stderr and "Traceback" not in p.stderr


def test_missing_dataset_directory(tmp_path):
    p = run_cli("--data", str(tmp_path / "nowhere"), cwd=tmp_path)
    assert p.returncode == 2 and "MANIFEST.csv" in p.stderr


def test_several_seeds_are_scored_and_reported_together(tiny_dataset, tmp_path):
    out = tmp_path / "report"
    p = run_cli("--data", str(tiny_dataset), "--split", "all", "--methods", "sift", "--modalities", "opt-opt", "--seed", "0,1", "--out", str(out), cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "(seeds 0, 1)" in p.stdout
    assert _row(p.stdout, "opt-opt", "sift")[2:4] == ["1", "2"]  # one pair, one instance per seed
    rows = (out / "accuracy_warped_instances.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert sorted(r.split(",")[header.index("seed")] for r in rows[1:]) == ["0", "1"]
    assert json.loads((out / "accuracy_warped.json").read_text())["meta"]["seed"] == [0, 1]


@pytest.mark.parametrize("seed", ["x", "1,1", ","])
def test_bad_seed_list_exits_2(tiny_dataset, tmp_path, seed):
    p = run_cli("--data", str(tiny_dataset), "--split", "all", "--methods", "sift", "--seed", seed, cwd=tmp_path)
    assert p.returncode == 2 and "--seed" in p.stderr and "Traceback" not in p.stderr
