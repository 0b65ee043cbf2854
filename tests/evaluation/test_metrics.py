from __future__ import annotations

import numpy as np
import pytest

from geomreg.evaluation.metrics import apply_homography, fit_homography, grid_rmse, score_matches

from .synth import similarity

W = H_ = 256
H_TRUE = similarity(8.0, 1.05, 6.0, -4.0) @ np.array([[1, 0, 0], [0, 1, 0], [1e-4, -5e-5, 1.0]])


def _ref_points(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(10, 245, size=(n, 2))


def test_perfect_matches_score_perfectly():
    ref = _ref_points(200)
    s = score_matches(ref, apply_homography(H_TRUE, ref), H_TRUE, W, H_)
    assert s.n_matches == 200 and s.ncm == 200 and s.cmr == pytest.approx(1.0)
    assert s.grid_rmse < 1e-3
    assert all(s.success(t) for t in (3, 5, 10))


def test_noisy_matches_with_outliers():
    rng = np.random.default_rng(1)
    ref = _ref_points(300, seed=1)
    mov = apply_homography(H_TRUE, ref) + rng.normal(0, 0.5, size=(300, 2))
    out = rng.choice(300, 90, replace=False)  # 30 % outliers anywhere in the image
    mov[out] = rng.uniform(0, 255, size=(90, 2))
    s = score_matches(ref, mov, H_TRUE, W, H_)
    err = np.linalg.norm(apply_homography(H_TRUE, ref) - mov, axis=1)
    assert s.ncm == int((err <= 3).sum())
    assert 205 <= s.ncm <= 215  # the 210 inliers, give or take an outlier landing near the truth
    assert s.cmr == pytest.approx(s.ncm / 300)
    assert s.grid_rmse < 0.5  # 210 inliers at 0.5 px noise average out well below a pixel
    assert s.success(3)


def test_random_matches_fail():
    rng = np.random.default_rng(2)
    s = score_matches(_ref_points(100), rng.uniform(0, 255, size=(100, 2)), H_TRUE, W, H_)
    assert not s.success(10)
    assert s.ncm <= 3


def test_too_few_or_no_matches_give_infinite_rmse():
    ref = _ref_points(3)
    s = score_matches(ref, apply_homography(H_TRUE, ref), H_TRUE, W, H_)
    assert s.n_matches == 3 and s.ncm == 3 and s.grid_rmse == float("inf")
    s0 = score_matches(np.zeros((0, 2)), np.zeros((0, 2)), H_TRUE, W, H_)
    assert (s0.n_matches, s0.ncm, s0.cmr, s0.grid_rmse) == (0, 0, 0.0, float("inf"))
    assert fit_homography(ref, ref) is None


def test_grid_rmse_is_the_grid_distance_and_honours_the_valid_mask():
    shift = np.array([[1, 0, 3.0], [0, 1, 4.0], [0, 0, 1]]) @ H_TRUE
    assert grid_rmse(H_TRUE, H_TRUE, W, H_) == pytest.approx(0.0, abs=1e-9)
    assert grid_rmse(shift, H_TRUE, W, H_) == pytest.approx(5.0, abs=1e-9)
    # an estimate that is right on the left half and wrong on the right: the mask decides what counts
    skew = np.array([[1.05, 0, 0], [0, 1, 0], [0, 0, 1]])
    left = np.zeros((H_, W), bool)
    left[:, :32] = True
    full = grid_rmse(skew, np.eye(3), W, H_)
    masked = grid_rmse(skew, np.eye(3), W, H_, valid=left)
    assert masked < 0.05 * 32 < full
