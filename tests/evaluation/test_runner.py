from __future__ import annotations

import numpy as np
import pytest

from geomreg.data.manifest import DatasetError, read_manifest, split_pairs
from geomreg.evaluation.runner import EvalConfig, evaluate, evaluate_instances, pair_instances, select_pairs, validate_pairs
from geomreg.matching.types import MatchResult

from .synth import two_pair_dataset, write_manifest, write_pair, synthetic_scene


class OracleMatcher:
    """Returns exact correspondences from the instance's own truth: a real matcher of a solved problem."""

    name = "oracle"

    def __init__(self, H_ref_to_mov: dict[int, np.ndarray]):
        self.H = H_ref_to_mov

    def match(self, ref, mov):
        H = self.H[id(mov)]
        xy = np.random.default_rng(0).uniform(5, 250, size=(50, 2))
        p = np.c_[xy, np.ones(50)] @ H.T
        return MatchResult(xy, p[:, :2] / p[:, 2:], np.ones(50))

    def match_batch(self, pairs):
        return [self.match(r, m) for r, m in pairs]


def _records(n_per_mod: int, tmp_path):
    rows = []
    scene = synthetic_scene(64, 64, seed=0)
    for mod in ("opt-sar", "vis-ir"):
        for i in range(n_per_mod):
            rows.append(write_pair(tmp_path, mod, f"{mod}_{i:03d}", scene, scene, np.eye(3)))
    write_manifest(tmp_path, rows)
    return read_manifest(tmp_path)


def test_select_pairs_split_modalities_and_cap(tmp_path):
    recs = _records(30, tmp_path)
    val = select_pairs(recs, split="val")
    assert {r.pair_id for r in val} == {r.pair_id for r in split_pairs(recs)[1]}
    assert {r.pair_id for r in select_pairs(recs, split="train")} == {r.pair_id for r in split_pairs(recs)[0]}
    capped = select_pairs(recs, split="all", modalities=["vis-ir"], max_pairs=4)
    assert len(capped) == 4 and {r.modality for r in capped} == {"vis-ir"}
    assert capped == select_pairs(recs, split="all", modalities=["vis-ir"], max_pairs=4)  # deterministic
    both = select_pairs(recs, split="all", max_pairs=3)
    assert sorted(r.modality for r in both) == ["opt-sar"] * 3 + ["vis-ir"] * 3


def test_evaluate_scores_an_exact_matcher_as_perfect(tmp_path):
    root = two_pair_dataset(tmp_path / "d")
    recs = select_pairs(read_manifest(root), split="all")
    cfg = EvalConfig(instances_per_pair=2, seed=3)
    insts = [i for r in recs for i in pair_instances(r, cfg)]
    # the oracle keys on the moving-image object, so it gets exactly these instances
    oracle = OracleMatcher({id(i.mov): i.H_ref_to_mov for i in insts})
    out = evaluate_instances(insts, {"oracle": oracle}, cfg, progress=False)
    assert len(out) == 4 and {(r.pair_id, r.instance) for r in out} == {(p, k) for p in ("syn_oo_0001", "syn_vi_0001") for k in (0, 1)}
    for r in out:
        assert r.ncm == 50 and r.cmr == 1.0 and r.grid_rmse < 1e-3 and r.seconds >= 0 and not r.error


def test_a_matcher_that_raises_is_a_recorded_failure(tmp_path):
    root = two_pair_dataset(tmp_path / "d")
    recs = select_pairs(read_manifest(root), split="all")

    class Broken:
        name = "broken"

        def match(self, ref, mov):
            raise RuntimeError("kaput")

        def match_batch(self, pairs):
            return [self.match(r, m) for r, m in pairs]

    out = evaluate(recs, {"broken": Broken()}, EvalConfig(), progress=False)
    assert len(out) == 2
    assert all(r.error == "RuntimeError: kaput" and r.grid_rmse == float("inf") and r.n_matches == 0 for r in out)


def test_validate_pairs_names_the_broken_pair(tmp_path):
    root = two_pair_dataset(tmp_path / "d")
    (root / "vis-ir" / "syn_vi_0001" / "H_mov_to_ref.txt").write_text("1 0 0\n0 1\n")
    with pytest.raises(DatasetError, match="syn_vi_0001"):
        validate_pairs(read_manifest(root), progress=False)
