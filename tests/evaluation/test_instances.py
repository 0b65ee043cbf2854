from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from geomreg.data.manifest import DatasetError
from geomreg.evaluation.instances import (
    WarpConfig,
    instance_rng,
    make_instances,
    nodata_mask,
    random_homography,
    raw_instance,
    warped_instances,
)
from geomreg.evaluation.metrics import apply_homography

from .synth import similarity, synthetic_scene


def blob_image(points: np.ndarray, width: int, height: int, sigma: float = 2.0) -> np.ndarray:
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    img = np.zeros((height, width))
    for x, y in points:
        img += np.exp(-((xs - x) ** 2 + (ys - y) ** 2) / (2 * sigma**2))
    return (img * 200.0 + 20.0).astype(np.float32)  # +20: no pixel looks like black no-data


def centroid_near(img: np.ndarray, x: float, y: float, r: int = 6) -> tuple[float, float]:
    x0, y0 = int(round(x)), int(round(y))
    win = img[y0 - r : y0 + r + 1, x0 - r : x0 + r + 1].astype(np.float64)
    win = np.clip(win - 20.0, 0, None)
    ys, xs = np.mgrid[y0 - r : y0 + r + 1, x0 - r : x0 + r + 1]
    return float((win * xs).sum() / win.sum()), float((win * ys).sum() / win.sum())


def test_random_homography_stays_in_the_configured_ranges():
    cfg = WarpConfig()
    w, h = 320, 256
    centre = np.array([[(w - 1) / 2, (h - 1) / 2]])
    for k in range(200):
        H = random_homography(w, h, np.random.default_rng(k), cfg)
        assert H[2, 2] == pytest.approx(1.0)
        c = apply_homography(H, centre)[0]
        # the centre only moves by the translation (the perspective term is zero there)
        assert abs(c[0] - centre[0, 0]) <= cfg.max_translation * w + 1e-9
        assert abs(c[1] - centre[0, 1]) <= cfg.max_translation * h + 1e-9
        # local Jacobian at the centre = s * R(theta)
        e = 1e-3
        J = np.stack([(apply_homography(H, centre + [[e, 0]]) - apply_homography(H, centre - [[e, 0]]))[0] / (2 * e),
                      (apply_homography(H, centre + [[0, e]]) - apply_homography(H, centre - [[0, e]]))[0] / (2 * e)], axis=1)
        scale = math.sqrt(abs(np.linalg.det(J)))
        angle = math.degrees(math.atan2(J[1, 0], J[0, 0]))
        assert 1 - cfg.max_scale_change - 1e-6 <= scale <= 1 + cfg.max_scale_change + 1e-6
        assert abs(angle) <= cfg.max_rotation_deg + 1e-6
        # perspective stays mild: the projective denominator, relative to the centre's, stays within 1 +- 2 * max_perspective
        corners = np.array([[0, 0], [w - 1, 0], [0, h - 1], [w - 1, h - 1]], float)
        den = (H[2, 0] * corners[:, 0] + H[2, 1] * corners[:, 1] + H[2, 2]) / (H[2, :2] @ centre[0] + H[2, 2])
        assert np.all(np.abs(den - 1) <= 2 * cfg.max_perspective + 1e-9)


def test_instances_are_seeded_per_pair_and_index():
    a = random_homography(256, 256, instance_rng(0, "p1", 0))
    b = random_homography(256, 256, instance_rng(0, "p1", 0))
    c = random_homography(256, 256, instance_rng(0, "p1", 1))
    d = random_homography(256, 256, instance_rng(0, "p2", 0))
    e = random_homography(256, 256, instance_rng(1, "p1", 0))
    np.testing.assert_array_equal(a, b)
    for other in (c, d, e):
        assert not np.allclose(a, other)


def test_warped_instance_puts_points_exactly_where_its_homography_says():
    # mov has blobs at q; the pair's truth is a similarity; the instance's moving image must have
    # every blob at H_ref_to_mov(H_mov_to_ref(q)) to a small fraction of a pixel (pixel centres at integers).
    w = h = 256
    q = np.array([[60.0, 70.0], [180.0, 64.0], [128.0, 128.0], [90.0, 190.0], [170.0, 175.0]])
    mov = blob_image(q, w, h)
    H_mov_to_ref = similarity(7.0, 1.05, 4.0, -3.0)
    ref = np.full((h, w), 128, np.uint8)
    insts = warped_instances(ref, mov, H_mov_to_ref, pair_id="blobs", modality="test", count=3, seed=5)
    assert [i.index for i in insts] == [0, 1, 2]
    for inst in insts:
        expected = apply_homography(inst.H_ref_to_mov, apply_homography(H_mov_to_ref, q))
        for ex in expected:
            assert 8 <= ex[0] <= w - 9 and 8 <= ex[1] <= h - 9
            cx, cy = centroid_near(inst.mov, *ex)
            assert math.hypot(cx - ex[0], cy - ex[1]) < 0.1, (inst.index, ex, (cx, cy))


def test_raw_instance_uses_the_inverse_ground_truth():
    q = np.array([[70.0, 60.0], [100.0, 120.0], [140.0, 80.0]])
    ref = blob_image(q, 200, 180)
    H_mov_to_ref = similarity(30.0, 0.8, 10.0, 5.0, cx=100, cy=90)
    mov = cv2.warpPerspective(ref, np.linalg.inv(H_mov_to_ref), (220, 200), flags=cv2.INTER_LINEAR, borderValue=20)
    inst = raw_instance(ref, mov, H_mov_to_ref, pair_id="raw", modality="test")
    for ex in apply_homography(inst.H_ref_to_mov, q):
        assert 8 <= ex[0] <= 220 - 9 and 8 <= ex[1] <= 200 - 9
        cx, cy = centroid_near(inst.mov, *ex)
        assert math.hypot(cx - ex[0], cy - ex[1]) < 0.15


def test_nodata_mask_takes_black_border_wedges_but_not_dark_interior():
    img = np.full((100, 120), 120, np.uint8)
    tri = np.array([[0, 0], [50, 0], [0, 40]], np.int32)
    cv2.fillPoly(img, [tri], 0)
    img[5, 5] = 4  # JPEG-like residue inside the wedge
    img[45:55, 55:65] = 0  # dark but enclosed: a shadow, not no-data
    m = nodata_mask(img)
    assert m[2, 2] and m[5, 5] and m[10, 10]
    assert not m[50, 60]
    assert not m[90, 110]
    rgb = np.dstack([img] * 3)
    np.testing.assert_array_equal(nodata_mask(rgb), m)


def test_valid_mask_excludes_wedges_and_what_leaves_the_moving_image():
    scene = synthetic_scene(seed=3)
    H = similarity(25.0, 1.0, 0.0, 0.0)
    ref = cv2.warpPerspective(scene, H, (256, 256), borderValue=0)  # rotated: black corner wedges
    inst = make_instances(ref, scene, H, pair_id="w", modality="test", mode="warped", count=1, seed=0)[0]
    wedge = nodata_mask(ref)
    assert wedge.mean() > 0.05
    assert not inst.valid[wedge].any()
    # every valid reference pixel lands inside the moving image
    ys, xs = np.nonzero(inst.valid)
    p = apply_homography(inst.H_ref_to_mov, np.c_[xs, ys])
    assert np.all((p >= 0) & (p <= 255))
    assert inst.valid.mean() > 0.4


def test_ground_truth_that_misses_the_reference_is_a_clear_error():
    scene = synthetic_scene(seed=4)
    H = np.array([[1.0, 0, 5000.0], [0, 1.0, 0], [0, 0, 1.0]])
    with pytest.raises(DatasetError, match="pair far_away: .*H_mov_to_ref"):
        make_instances(scene, scene, H, pair_id="far_away", modality="test", mode="warped")
    with pytest.raises(DatasetError, match="far_away"):
        make_instances(scene, scene, H, pair_id="far_away", modality="test", mode="raw")
