"""The structural ground-truth audit: a wrong rotation is found and corrected, a right one confirmed,
structureless pairs left unverified."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from geomreg.data.gt_audit import audit_pair, grid_rmse, masked_ncc, rotation_about_centres, rotation_angle_deg
from tests.matching.test_cfog import change_modality, structured_texture

ANGLE, MOV_SIDE, REF_SIDE = -32.0, 320, 256


@pytest.fixture(scope="module")
def sar_like_pair():
    """SRIF-like: mov an optical-like 320 px image, ref a SAR-like 256 px copy rotated about the centre (black wedges)."""
    mov = (255 * structured_texture(MOV_SIDE, MOV_SIDE, seed=5)).astype(np.uint8)
    H_true = rotation_about_centres(ANGLE, REF_SIDE / MOV_SIDE, mov.shape, (REF_SIDE, REF_SIDE))
    ref = cv2.warpAffine(mov.astype(np.float32), H_true[:2], (REF_SIDE, REF_SIDE), flags=cv2.INTER_LINEAR)
    inside = cv2.warpAffine(np.ones_like(mov, np.uint8), H_true[:2], (REF_SIDE, REF_SIDE), flags=cv2.INTER_NEAREST) > 0
    sar = change_modality(ref, seed=2)
    sar = np.clip(255 * sar / np.percentile(sar, 99.5), 1, 255).astype(np.uint8)
    sar[~inside] = 0  # the rotation's no-data wedges, as in SRIF
    return sar, mov, H_true


def test_rotation_helpers_agree():
    M = rotation_about_centres(30.0, 0.5, (100, 100), (50, 50))
    assert rotation_angle_deg(M) == pytest.approx(30.0)
    assert M[:2, :2] @ np.array([49.5, 49.5]) + M[:2, 2] == pytest.approx([24.5, 24.5])
    assert grid_rmse(M, M, np.ones((50, 50), bool)) == pytest.approx(0.0, abs=1e-9)
    shifted = np.array([[1.0, 0, 3.0], [0, 1.0, 4.0], [0, 0, 1.0]]) @ M
    assert grid_rmse(M, shifted, np.ones((50, 50), bool)) == pytest.approx(5.0)


def test_masked_ncc_finds_a_shift():
    rng = np.random.default_rng(0)
    d = cv2.GaussianBlur(rng.standard_normal((3, 64, 64)).transpose(1, 2, 0).astype(np.float32), (0, 0), 2).transpose(2, 0, 1)
    moved = np.roll(d, (5, -3), axis=(1, 2))  # moved content sits 5 rows down, 3 columns left
    valid = np.ones((64, 64), bool)
    ncc, (dx, dy) = masked_ncc(moved, valid, d, valid, max_shift=8, min_overlap=0.3)
    assert (dx, dy) == (-3, 5) and ncc > 0.9


def test_wrong_rotation_is_corrected(sar_like_pair):
    ref, mov, H_true = sar_like_pair
    H_wrong = rotation_about_centres(ANGLE + 25.0, REF_SIDE / MOV_SIDE, mov.shape, ref.shape)  # like srif_os_0007
    a = audit_pair(ref, mov, H_wrong)
    assert a.verdict == "corrected", a.reason
    assert a.found_angle_deg == pytest.approx(ANGLE, abs=0.5)
    assert a.ncc_found > a.ncc_given + 0.1
    assert grid_rmse(H_true, a.H_found, ref > 0) < 1.0  # the estimate is good to a pixel
    assert a.error_px > 20


def test_right_ground_truth_is_confirmed(sar_like_pair):
    ref, mov, H_true = sar_like_pair
    a = audit_pair(ref, mov, H_true)
    assert a.verdict == "confirmed", a.reason
    assert a.error_px < 1.0


def test_structureless_pair_is_unverified(sar_like_pair):
    ref, mov, H_true = sar_like_pair
    flat = np.full_like(mov, 120)
    flat[::7] = 125  # a faint, periodic texture: nothing a template can lock on to
    a = audit_pair(ref, flat, H_true)
    assert a.verdict == "unverified" and a.H_found is None and a.reason
