"""Shared and own misses: a subject's fit judged against the truth and against independent peers' fits."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

from geomreg.evaluation.agreement import HIT, OWN_MISS, SHARED_MISS, classify, summarize_agreement
from geomreg.evaluation.instances import Instance

from .synth import REPO


def _instance(pair_id="p", modality="opt-opt") -> Instance:
    h, w = 64, 80
    H = np.array([[1.0, 0.02, 3.0], [-0.01, 1.0, -2.0], [0.0, 0.0, 1.0]])
    img = np.zeros((h, w), np.float32)
    return Instance(pair_id, modality, 0, img, img, H, np.ones((h, w), bool), seed=0)


def _shifted(H: np.ndarray, dx: float, dy: float = 0.0) -> np.ndarray:
    return np.array([[1.0, 0, dx], [0, 1.0, dy], [0, 0, 1.0]]) @ H


def test_a_miss_another_method_lands_on_too_is_shared():
    inst = _instance()
    fits = {"net": _shifted(inst.H_ref_to_mov, 4.0), "cfog": _shifted(inst.H_ref_to_mov, 4.5), "sift": None}
    row = classify(inst, fits, "net")
    assert row.verdict == SHARED_MISS and row.agreeing == ("cfog",)
    assert abs(row.subject_rmse - 4.0) < 1e-6 and abs(row.peer_to_subject["cfog"] - 0.5) < 1e-6
    assert row.peer_rmse["sift"] == float("inf") and row.peer_to_subject["sift"] == float("inf")


def test_a_miss_no_peer_shares_is_the_subjects_own():
    inst = _instance()
    fits = {"net": _shifted(inst.H_ref_to_mov, 0.0, 6.0), "cfog": inst.H_ref_to_mov.copy(), "sift": _shifted(inst.H_ref_to_mov, -6.0)}
    row = classify(inst, fits, "net")
    assert row.verdict == OWN_MISS and row.agreeing == ()
    assert classify(inst, {"net": None, "cfog": inst.H_ref_to_mov}, "net").verdict == OWN_MISS


def test_within_the_threshold_is_a_hit_whatever_the_peers_say():
    inst = _instance()
    row = classify(inst, {"net": _shifted(inst.H_ref_to_mov, 2.0), "cfog": _shifted(inst.H_ref_to_mov, 2.5)}, "net")
    assert row.verdict == HIT
    assert classify(inst, {"net": _shifted(inst.H_ref_to_mov, 2.0), "cfog": None}, "net", miss_px=1.0).verdict == OWN_MISS


def test_summary_counts_per_modality_and_overall():
    a, b = _instance("a", "opt-opt"), _instance("b", "opt-sar")
    rows = [
        classify(a, {"net": _shifted(a.H_ref_to_mov, 4.0), "cfog": _shifted(a.H_ref_to_mov, 4.2)}, "net"),
        classify(b, {"net": _shifted(b.H_ref_to_mov, 8.0), "cfog": b.H_ref_to_mov}, "net"),
        classify(b, {"net": b.H_ref_to_mov, "cfog": None}, "net"),
    ]
    s = summarize_agreement(rows)
    assert s["opt-opt"] == {"instances": 1, HIT: 0, SHARED_MISS: 1, OWN_MISS: 0, "own_miss_peer_hit": 0}
    assert s["opt-sar"] == {"instances": 2, HIT: 1, SHARED_MISS: 0, OWN_MISS: 1, "own_miss_peer_hit": 1}
    assert s["all"]["instances"] == 3 and s["all"][HIT] == 1


def test_cli_runs_on_a_tiny_dataset_and_writes_its_report(tiny_dataset, tmp_path):
    out = tmp_path / "agree"
    p = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gt_agreement.py"), "--data", str(tiny_dataset), "--split", "all",
         "--subject", "sift", "--peers", "cfog", "--threads", "1", "--out", str(out), "--no-progress"],
        capture_output=True, text=True, timeout=300,
    )
    assert p.returncode == 0, p.stderr
    assert "| modality | instances | hits (<= 3 px) |" in p.stdout and "| all | 2 |" in p.stdout
    assert sorted(f.name for f in out.iterdir()) == ["gt_agreement.md", "gt_agreement_instances.csv"]
    header = (out / "gt_agreement_instances.csv").read_text().splitlines()[0]
    assert header == "pair_id,modality,seed,instance,verdict,subject_rmse,cfog_rmse,cfog_to_subject"
    bad = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gt_agreement.py"), "--data", str(tiny_dataset), "--subject", "sift", "--peers", "sift"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "error:" in bad.stderr
