"""benchmarks/gt_residuals.py: the residual field of a pair's own ground truth."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from benchmarks import gt_residuals

from .synth import synthetic_scene, write_manifest, write_pair


def test_residuals_are_the_offset_the_matrix_leaves():
    ref_xy = np.array([[10.0, 20.0], [100.0, 50.0]])
    mov_xy = ref_xy + [3.0, -1.0]  # the images say mov = ref + (3, -1) ...
    res = gt_residuals.residuals(ref_xy, mov_xy, np.eye(3))  # ... the matrix says identity
    np.testing.assert_allclose(res, [[3.0, -1.0], [3.0, -1.0]])
    np.testing.assert_allclose(gt_residuals.residuals(ref_xy, mov_xy, [[1, 0, -3], [0, 1, 1], [0, 0, 1]]), 0.0, atol=1e-12)


def test_no_tie_points_give_no_residuals():
    res = gt_residuals.residuals(np.zeros((0, 2)), np.zeros((0, 2)), np.eye(3))
    assert res.shape == (0, 2)
    assert gt_residuals.grid_medians(np.zeros((0, 2)), res, 100, 100, cols=2, rows=2) == [[None, None], [None, None]]


def test_grid_medians_separate_regions_and_skip_sparse_cells():
    rng = np.random.default_rng(0)
    left = np.column_stack([rng.uniform(0, 49, 30), rng.uniform(0, 99, 30)])
    right = np.column_stack([rng.uniform(51, 99, 30), rng.uniform(0, 99, 30)])
    ref_xy = np.concatenate([left, right, [[75.0, 75.0]]])
    res = np.concatenate([np.tile([5.0, 0.0], (30, 1)), np.tile([0.0, -2.0], (30, 1)), [[9.0, 9.0]]])
    cells = gt_residuals.grid_medians(ref_xy, res, 100, 100, cols=2, rows=1)
    assert cells == [[(5.0, 0.0, 30), (0.0, -2.0, 31)]]
    sparse = gt_residuals.grid_medians(ref_xy[:3], res[:3], 100, 100, cols=2, rows=1)
    assert sparse == [[None, None]]
    assert "| 0 | - | - |" in gt_residuals.format_grid(sparse)


@pytest.fixture
def misregistered_dataset(tmp_path):
    """One pair whose images differ by a (4, -2) px shift while its matrix says identity."""
    root = tmp_path / "data"
    ref = synthetic_scene(seed=3)
    mov = cv2.warpAffine(ref, np.float32([[1, 0, 4], [0, 1, -2]]), (256, 256), borderMode=cv2.BORDER_REFLECT)
    write_manifest(root, [write_pair(root, "opt-opt", "syn_shift", ref, mov, np.eye(3))])
    return root


def test_cli_reports_the_shift_the_matrix_misses(misregistered_dataset, capsys):
    rc = gt_residuals.main(["--data", str(misregistered_dataset), "--pairs", "syn_shift", "--methods", "cfog", "--grid", "2x2", "--threads", "1"])
    out = capsys.readouterr().out
    assert rc == 0
    line = next(s for s in out.splitlines() if s.startswith("syn_shift, cfog"))
    dx, dy = (float(v) for v in line.split("median residual (")[1].split(")")[0].split(","))
    assert abs(dx - 4.0) < 0.5 and abs(dy + 2.0) < 0.5
    assert out.count("| 0 |") == 1 and out.count("| 1 |") == 1


def test_sift_sees_the_same_missed_shift(misregistered_dataset, capsys):
    # SIFT as a second, independent witness (the benchmark's peer): the same (4, -2) px miss of the matrix.
    assert gt_residuals.main(["--data", str(misregistered_dataset), "--pairs", "syn_shift", "--methods", "sift"]) == 0
    line = next(s for s in capsys.readouterr().out.splitlines() if s.startswith("syn_shift, sift"))
    dx, dy = (float(v) for v in line.split("median residual (")[1].split(")")[0].split(","))
    assert abs(dx - 4.0) < 0.5 and abs(dy + 2.0) < 0.5


def test_cli_names_a_missing_pair_and_exits_2(misregistered_dataset, capsys):
    rc = gt_residuals.main(["--data", str(misregistered_dataset), "--pairs", "nope_0001", "--methods", "cfog"])
    assert rc == 2
    assert "nope_0001" in capsys.readouterr().err


def test_cli_rejects_unknown_methods_and_bad_grids(misregistered_dataset, capsys):
    assert gt_residuals.main(["--data", str(misregistered_dataset), "--pairs", "syn_shift", "--methods", "orb"]) == 2
    assert "orb" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        gt_residuals.main(["--data", str(misregistered_dataset), "--pairs", "syn_shift", "--grid", "4by3"])
    assert exc.value.code == 2
