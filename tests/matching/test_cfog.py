"""Tests of the CFOG-style classical matcher (geomreg.matching.cfog).

Ground truth is known exactly because the moving image is generated from the reference by a known
geometric transform followed by a modality change (non-monotonic intensity remap + multiplicative
speckle). Both images are cut from a larger canvas, so every pixel of the moving image shows real
content (no reflected or padded borders that would not move with the transform).
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from geomreg.matching.cfog import CFOGConfig, CFOGMatcher, cfog_descriptor
from geomreg.matching.types import ImageMatcher, MatchResult

SHIFT = (7.3, -4.6)  # (dx, dy): mov_xy = ref_xy + SHIFT
TRAIN_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "train"


# ------------------------------------------------------------------------------------------------
# Test data
# ------------------------------------------------------------------------------------------------


def structured_texture(h: int, w: int, seed: int = 0) -> np.ndarray:
    """Float32 [0, 1] image with multi-scale filtered noise plus dense sharp edges (parcels, roads, buildings)."""
    rng = np.random.default_rng(seed)
    img = np.zeros((h, w), np.float32)
    for sigma, weight in ((16.0, 1.0), (6.0, 0.6), (2.0, 0.3)):
        noise = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), sigma)
        img += weight * noise / (noise.std() + 1e-9)
    canvas = np.zeros((h, w), np.float32)
    for _ in range(h * w // 800):
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
        x1, y1 = x0 + int(rng.integers(4, 50)), y0 + int(rng.integers(4, 50))
        cv2.rectangle(canvas, (x0, y0), (x1, y1), float(rng.uniform(-2, 2)), -1)
    for _ in range(h * w // 10000):
        p0 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        p1 = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        cv2.line(canvas, p0, p1, float(rng.uniform(2, 3)), int(rng.integers(2, 5)))
    img += cv2.GaussianBlur(canvas, (0, 0), 1.0)  # band-limit the drawn edges so sub-pixel shifts stay exact
    img -= img.min()
    return img / img.max()


def warp_pair(canvas: np.ndarray, A: np.ndarray, margin: int, ref_hw: tuple[int, int], mov_hw: tuple[int, int], mov_origin=(0, 0)):
    """ref = canvas[margin:, margin:] (ref_hw); mov(q) = canvas at ref-frame point A^-1 (q + mov_origin).

    A (3x3) maps ref pixel coords to the coords of a full-frame moving image; the returned mov is the
    window of that frame whose top-left pixel is mov_origin (x, y), so true mov_xy = A ref_xy - mov_origin.
    """
    ref = canvas[margin : margin + ref_hw[0], margin : margin + ref_hw[1]].copy()
    T_m = np.array([[1.0, 0, margin], [0, 1.0, margin], [0, 0, 1.0]])
    T_o = np.array([[1.0, 0, mov_origin[0]], [0, 1.0, mov_origin[1]], [0, 0, 1.0]])
    M = T_m @ np.linalg.inv(A) @ T_o  # mov pixel -> canvas pixel
    mov = cv2.warpAffine(canvas.astype(np.float32), M[:2], (mov_hw[1], mov_hw[0]), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP)
    return ref, mov


def change_modality(img: np.ndarray, seed: int, looks: float = 4.0) -> np.ndarray:
    """SAR-like float32 intensity: non-monotonic remap (structure kept, contrast partly reversed) x gamma speckle."""
    x = (img - img.min()) / (np.ptp(img) + 1e-9)
    y = 0.5 + 0.5 * np.cos(4.0 * x)  # rises again past x = pi/4: no monotonic mapping relates the two images
    speckle = np.random.default_rng(seed).gamma(looks, 1.0 / looks, size=y.shape)
    return (1000.0 * (y + 0.05) * speckle).astype(np.float32)


def rotation_about(angle: float, shift, centre=(160.0, 160.0)) -> np.ndarray:
    """3x3 ref -> mov: a rotation by ``angle`` (radians) about ``centre``, then ``shift`` (x, y)."""
    c = np.asarray(centre, dtype=float)
    R = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    A = np.eye(3)
    A[:2, :2] = R
    A[:2, 2] = c - R @ c + np.asarray(shift, dtype=float)
    return A


def rotated_pair(angle: float, shift, texture_seed: int, modality_seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ref, mov in another simulated modality, the true 3x3 ref -> mov): 320 px crops of one structured texture,
    mov rotated by ``angle`` about the centre and shifted by ``shift``."""
    A = rotation_about(angle, shift)
    ref, mov = warp_pair(structured_texture(400, 400, seed=texture_seed), A, 40, (320, 320), (320, 320))
    return ref, change_modality(mov, seed=modality_seed), A


def translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0, dx], [0, 1.0, dy], [0, 0, 1.0]])


def apply(A: np.ndarray, xy: np.ndarray) -> np.ndarray:
    h = np.c_[xy, np.ones(len(xy))] @ A.T
    return h[:, :2] / h[:, 2:3]


def errors(res: MatchResult, A: np.ndarray, mov_origin=(0.0, 0.0)) -> np.ndarray:
    truth = apply(A, res.ref_xy) - np.asarray(mov_origin, dtype=float)
    return np.linalg.norm(res.mov_xy - truth, axis=1)


def rmse(e: np.ndarray) -> float:
    value = float(np.sqrt(np.mean(e**2)))
    print(f"RMSE {value:.3f} px over {len(e)} matches, max {e.max():.3f}")  # shown with pytest -s
    return value


def first_real_image() -> np.ndarray:
    """The reference image of the first opt-opt training pair (512 x 512 RGB), or skip."""
    if not (TRAIN_DIR / "MANIFEST.csv").is_file():
        pytest.skip(f"real training data not present at {TRAIN_DIR}")
    from geomreg.data.manifest import read_image, read_manifest

    recs = [r for r in read_manifest(TRAIN_DIR) if r.modality == "opt-opt"]
    if not recs:
        pytest.skip("no opt-opt pair in the training manifest")
    return read_image(recs[0].ref_path, recs[0].pair_id)


@pytest.fixture(scope="module")
def matcher() -> CFOGMatcher:
    return CFOGMatcher()


@pytest.fixture(scope="module")
def texture() -> np.ndarray:
    return structured_texture(560, 560, seed=3)


@pytest.fixture(scope="module")
def shifted_pair(texture):
    A = translation(*SHIFT)
    ref, mov = warp_pair(texture, A, 40, (480, 480), (480, 480))
    return ref, change_modality(mov, seed=1), A


# ------------------------------------------------------------------------------------------------
# Accuracy
# ------------------------------------------------------------------------------------------------


def test_recovers_subpixel_shift_across_modalities_synthetic(matcher, shifted_pair):
    ref, mov, A = shifted_pair
    res = matcher.match(ref, mov)
    e = errors(res, A)
    assert len(res) >= 50, res.notes
    assert rmse(e) < 0.3, f"RMSE {rmse(e):.3f} px over {len(res)} inliers"
    assert e.max() < 1.5
    assert np.all((res.confidence >= 0) & (res.confidence <= 1))
    assert res.ref_xy.dtype == np.float64 and res.mov_xy.dtype == np.float64
    # The mean displacement recovers the shift itself to a small fraction of a pixel.
    np.testing.assert_allclose((res.mov_xy - res.ref_xy).mean(axis=0), SHIFT, atol=0.05)


@pytest.mark.shared
def test_recovers_subpixel_shift_on_real_image():
    img = first_real_image()  # RGB uint8: also exercises the channel handling
    A = translation(*SHIFT)
    ref, mov = warp_pair(img.astype(np.float32), A, 24, (464, 464), (464, 464))
    ref = ref.astype(np.uint8)
    grey = cv2.cvtColor(mov, cv2.COLOR_RGB2GRAY)
    mov_sar = change_modality(grey, seed=5)
    m = CFOGMatcher()
    cpu = time.process_time()
    res = m.match(ref, mov_sar)
    cpu = time.process_time() - cpu
    e = errors(res, A)
    assert len(res) >= 50, res.notes
    assert rmse(e) < 0.3, f"RMSE {rmse(e):.3f} px over {len(res)} inliers"
    np.testing.assert_allclose((res.mov_xy - res.ref_xy).mean(axis=0), SHIFT, atol=0.05)
    # Loose guard against performance regressions (typically ~0.4 s of CPU for this 464 x 464 pair).
    assert cpu < 3.0, f"{cpu:.2f} s CPU"


@pytest.mark.shared
def test_real_multimodal_pairs_from_training_set():
    """Real visible/infrared pairs, aligned with their ground truth, then offset by a known shift.

    The SRIF ground truth is only accurate to a few pixels, so success is judged at 3 px.
    """
    if not (TRAIN_DIR / "MANIFEST.csv").is_file():
        pytest.skip(f"real training data not present at {TRAIN_DIR}")
    from geomreg.data.manifest import load_pair, read_manifest

    recs = [r for r in read_manifest(TRAIN_DIR) if r.modality == "vis-ir" and r.pair_id.startswith("srif")]
    if len(recs) < 6:
        pytest.skip("not enough SRIF vis-ir pairs")
    picked = recs[:: len(recs) // 6][:6]  # spread over the set, fixed choice
    m = CFOGMatcher()
    ok = 0
    for i, rec in enumerate(picked):
        ref, mov, H = load_pair(rec)
        h, w = ref.shape[:2]
        t = translation(5.5 - 2 * i, -3.25 + 1.5 * i)  # ref -> shifted-mov
        M = t @ H  # original mov -> shifted-mov frame
        mov_f = cv2.warpPerspective(mov.astype(np.float32), M, (w, h), flags=cv2.INTER_LINEAR)
        cover = cv2.warpPerspective(np.ones(mov.shape[:2], np.float32), M, (w, h), flags=cv2.INTER_LINEAR)
        mov_f[cover < 0.999] = np.nan  # outside the original footprint: nodata
        res = m.match(ref, mov_f)
        if len(res) and np.median(errors(res, t)) < 3.0:
            ok += 1
    assert ok >= 5, f"only {ok}/6 real vis-ir pairs registered"


def test_recovers_small_rotation_and_scale(matcher, texture):
    c = np.array([240.0, 240.0])
    ang, s = np.deg2rad(3.0), 1.03
    R = np.array([[s * np.cos(ang), -s * np.sin(ang)], [s * np.sin(ang), s * np.cos(ang)]])
    A = np.eye(3)
    A[:2, :2] = R
    A[:2, 2] = c - R @ c + np.array([5.2, -8.7])
    ref, mov = warp_pair(texture, A, 40, (480, 480), (480, 480))
    res = matcher.match(ref, change_modality(mov, seed=2))
    e = errors(res, A)
    assert len(res) >= 50, res.notes
    assert rmse(e) < 0.4 and e.max() < 1.5, f"RMSE {rmse(e):.3f}, max {e.max():.3f} px"
    # The affine fitted to the returned matches reproduces the true one to well under 1 px everywhere.
    fit, _ = cv2.estimateAffine2D(res.ref_xy, res.mov_xy, method=cv2.LMEDS)
    grid = np.stack(np.meshgrid(np.linspace(0, 479, 9), np.linspace(0, 479, 9)), -1).reshape(-1, 2)
    worst = np.abs(grid @ fit[:, :2].T + fit[:, 2] - apply(A, grid)).max()
    assert worst < 0.5, f"fitted affine off by {worst:.3f} px"


def test_large_offset_found_by_coarse_stage(matcher, texture):
    A = translation(36.6, -31.2)  # well beyond the fine and coarse search radii
    ref, mov = warp_pair(texture, A, 40, (480, 480), (480, 480), mov_origin=(0, 0))
    res = matcher.match(ref, change_modality(mov, seed=4))
    e = errors(res, A)
    assert len(res) >= 30, res.notes
    assert rmse(e) < 0.3


def test_different_input_sizes(matcher, texture):
    A = translation(*SHIFT)
    origin = (37.0, 22.0)  # mov is a smaller window of the moving frame
    ref, mov = warp_pair(texture, A, 20, (500, 470), (400, 430), mov_origin=origin)
    res = matcher.match(ref, change_modality(mov, seed=6))
    e = errors(res, A, origin)
    assert len(res) >= 30, res.notes
    assert rmse(e) < 0.3
    assert np.all(res.mov_xy[:, 0] <= 429.5) and np.all(res.mov_xy[:, 1] <= 399.5)


# ------------------------------------------------------------------------------------------------
# Masks and input handling
# ------------------------------------------------------------------------------------------------


def test_nan_mask_respected(matcher, shifted_pair):
    ref, mov, A = shifted_pair
    ref = ref.astype(np.float32).copy()
    mov = mov.copy()
    ref[:, :150] = np.nan  # left strip of the reference is nodata
    yy, xx = np.mgrid[: mov.shape[0], : mov.shape[1]]
    hole = (yy - 300) ** 2 + (xx - 330) ** 2 < 90**2
    mov[hole] = np.nan  # a disc of the moving image is nodata
    res = matcher.match(ref, mov)
    assert len(res) >= 30, res.notes
    assert np.all(res.ref_xy[:, 0] >= 150), "a match was placed on NaN reference pixels"
    d = np.hypot(res.mov_xy[:, 1] - 300, res.mov_xy[:, 0] - 330)
    assert np.all(d >= 90 - 1), "a match landed on NaN moving pixels"
    # A third less area to choose templates from: weaker ones get used, so allow a little more scatter.
    assert rmse(errors(res, A)) < 0.4


def test_integer_and_multichannel_inputs(matcher, shifted_pair):
    ref, mov, A = shifted_pair
    ref_rgb = np.repeat((ref * 255).astype(np.uint8)[..., None], 3, axis=2)
    mov_u16 = np.clip(mov * 20, 0, 65535).astype(np.uint16)
    res = matcher.match(ref_rgb, mov_u16)
    assert len(res) >= 50, res.notes
    assert rmse(errors(res, A)) < 0.3


@pytest.mark.parametrize(
    "bad, what",
    [
        ([[1.0, 2.0]], "numpy array"),
        (np.zeros(100), "HxW"),
        (np.zeros((2, 64, 64, 3)), "HxW"),
        (np.zeros((0, 64)), "empty"),
        (np.zeros((64, 64), dtype=bool), "dtype"),
        (np.array([["a"] * 64] * 64), "dtype"),
        (np.zeros((32, 64, 64)), "channels"),
    ],
)
def test_bad_input_raises_clear_value_error(matcher, bad, what):
    good = structured_texture(96, 96)
    with pytest.raises(ValueError, match=f"ref: .*{what}"):
        matcher.match(bad, good)
    with pytest.raises(ValueError, match=f"mov: .*{what}"):
        matcher.match(good, bad)


def test_match_batch_validates_pairs(matcher):
    img = structured_texture(96, 96)
    with pytest.raises(ValueError, match=r"pairs\[1\]"):
        matcher.match_batch([(img, img), img])
    with pytest.raises(ValueError, match=r"pairs\[0\]\.mov"):
        matcher.match_batch([(img, np.zeros(5))])


def test_unmatchable_inputs_give_empty_result_with_reason(matcher):
    img = structured_texture(200, 200)
    nan = np.full((200, 200), np.nan, np.float32)
    res = matcher.match(img, nan)
    assert len(res) == 0 and any("no valid pixels" in n for n in res.notes)
    res = matcher.match(img[:30, :30], img)
    assert len(res) == 0 and any("smaller than" in n for n in res.notes)
    flat = np.full((200, 200), 7.0, np.float32)
    assert len(matcher.match(flat, flat)) == 0


def test_deterministic_and_batch_equals_single(matcher, shifted_pair):
    ref, mov, _ = shifted_pair
    ref, mov = ref[:256, :256], mov[:256, :256]  # smaller: this test runs the matcher three times
    a = matcher.match(ref, mov)
    b = matcher.match(ref, mov)
    np.testing.assert_array_equal(a.ref_xy, b.ref_xy)
    np.testing.assert_array_equal(a.mov_xy, b.mov_xy)
    np.testing.assert_array_equal(a.confidence, b.confidence)
    (c,) = matcher.match_batch([(ref, mov)])
    np.testing.assert_array_equal(a.mov_xy, c.mov_xy)
    assert matcher.match_batch([]) == []


# ------------------------------------------------------------------------------------------------
# API and building blocks
# ------------------------------------------------------------------------------------------------


def test_protocol_and_name():
    m = CFOGMatcher()
    assert m.name == "cfog"
    assert isinstance(m, ImageMatcher)


def test_config_is_frozen_and_validated():
    cfg = CFOGConfig()
    with pytest.raises(Exception):
        cfg.template_size = 31  # type: ignore[misc]
    with pytest.raises(ValueError, match="template_size"):
        CFOGConfig(template_size=40)
    with pytest.raises(ValueError, match="n_orientations"):
        CFOGConfig(n_orientations=2)
    with pytest.raises(ValueError, match="min_valid_fraction"):
        CFOGConfig(min_valid_fraction=0.0)


def test_descriptor_is_contrast_reversal_invariant_and_normalised():
    img = structured_texture(128, 128, seed=7)
    d = cfog_descriptor(img)
    d_inv = cfog_descriptor(1.0 - img)
    assert d.shape == (9, 128, 128) and d.dtype == np.float32
    np.testing.assert_allclose(d, d_inv, atol=1e-5)  # absolute orientated gradients ignore the sign
    norms = np.linalg.norm(d, axis=0)
    assert norms.max() <= 1.0 + 1e-5 and np.median(norms) > 0.5
    valid = np.ones(img.shape, bool)
    valid[:, :40] = False
    d_masked = cfog_descriptor(img, valid)
    assert np.all(d_masked[:, :, :40] == 0)
