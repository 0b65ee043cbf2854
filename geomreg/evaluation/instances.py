"""Evaluation instances: a reference image, a moving image and their exact ref -> mov homography.

Two protocols, both on dataset pairs with a ``H_mov_to_ref`` ground truth (0-based pixel coordinates,
pixel centres at integers, the OpenCV convention):

* ``warped``: the moving image is first put onto the reference grid with the ground truth, then a
  seeded random homography (rotation, scale, translation, mild perspective) is applied. Both steps are
  composed into one ``cv2.warpPerspective`` so the image is interpolated once. This is the case of
  georeferenced scenes with moderate residual warps.
* ``raw``: the pair as distributed, with its own geometry (SRIF: rotations up to 90 deg, scale 0.5-2);
  a robustness figure.

Every instance carries a ``valid`` mask on the reference grid: pixels where both images have data.
Black no-data wedges (SRIF references were rotated synthetically) and parts that fall outside the
moving image do not count in the grid RMSE.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from geomreg.data.manifest import DatasetError

Mode = Literal["warped", "raw"]

# 8-bit JPEG no-data is not exactly 0: block artefacts leave values of a few DN next to the wedge edge.
_NODATA_MAX_U8 = 8
_NODATA_DILATE_PX = 2
# Below this fraction of overlapping valid pixels the ground truth is almost certainly wrong for the pair.
MIN_OVERLAP_FRACTION = 0.05


@dataclass(frozen=True)
class WarpConfig:
    """Ranges of the random ref -> mov warps (uniform in each range)."""

    max_rotation_deg: float = 10.0
    max_scale_change: float = 0.10  # isotropic scale in [1 - x, 1 + x]
    max_translation: float = 0.08  # fraction of the width (x) and height (y)
    # Projective terms in coordinates centred on the image and divided by half its larger side:
    # 0.05 changes the local scale by at most ~5 % from the centre to an edge ("mild perspective").
    max_perspective: float = 0.05


@dataclass(frozen=True, eq=False)
class Instance:
    pair_id: str
    modality: str
    index: int  # instance number within the pair (always 0 in raw mode)
    ref: np.ndarray
    mov: np.ndarray
    H_ref_to_mov: np.ndarray  # 3x3, ref pixel -> mov pixel
    valid: np.ndarray  # [H_ref, W_ref] bool: reference pixels with data in both images
    seed: int = 0  # the warp seed that made it (0 in raw mode): (seed, pair_id, index) names an instance

    @property
    def width(self) -> int:
        return int(self.ref.shape[1])

    @property
    def height(self) -> int:
        return int(self.ref.shape[0])


def instance_rng(seed: int, pair_id: str, index: int) -> np.random.Generator:
    """Generator of one instance: independent of which pairs, methods or how many instances run."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(pair_id.encode("utf-8")), int(index)])


def random_homography(width: int, height: int, rng: np.random.Generator, cfg: WarpConfig = WarpConfig()) -> np.ndarray:
    """Random ref -> mov homography about the image centre, normalised so H[2, 2] == 1."""
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0
    half = max(width, height) / 2.0
    theta = math.radians(rng.uniform(-cfg.max_rotation_deg, cfg.max_rotation_deg))
    s = rng.uniform(1.0 - cfg.max_scale_change, 1.0 + cfg.max_scale_change)
    tx = rng.uniform(-cfg.max_translation, cfg.max_translation) * width
    ty = rng.uniform(-cfg.max_translation, cfg.max_translation) * height
    px, py = rng.uniform(-cfg.max_perspective, cfg.max_perspective, size=2) / half
    centre = np.array([[1.0, 0.0, -cx], [0.0, 1.0, -cy], [0.0, 0.0, 1.0]])
    persp = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [px, py, 1.0]])
    c, si = math.cos(theta), math.sin(theta)
    rot_scale = np.array([[s * c, -s * si, 0.0], [s * si, s * c, 0.0], [0.0, 0.0, 1.0]])
    back = np.array([[1.0, 0.0, cx + tx], [0.0, 1.0, cy + ty], [0.0, 0.0, 1.0]])
    H = back @ rot_scale @ persp @ centre
    return H / H[2, 2]


def nodata_mask(img: np.ndarray) -> np.ndarray:
    """True on black no-data regions: dark pixels connected to the image border (e.g. rotation wedges).

    Dark areas inside the image (shadows, calm water in SAR) are not touched: only what touches the
    border is treated as fill, then grown by a couple of pixels to swallow JPEG ringing at its edge.
    """
    a = img if img.ndim == 2 else np.max(img, axis=2)
    if a.dtype == np.uint8:
        dark = a <= _NODATA_MAX_U8
    else:
        af = a.astype(np.float64)
        dark = ~np.isfinite(af) | (af == 0)
    if not dark.any():
        return dark
    n, labels = cv2.connectedComponents(dark.astype(np.uint8), connectivity=8)
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    border = border[border != 0]
    mask = np.isin(labels, border)
    if mask.any() and _NODATA_DILATE_PX > 0:
        k = 2 * _NODATA_DILATE_PX + 1
        mask = cv2.dilate(mask.astype(np.uint8), np.ones((k, k), np.uint8)) > 0
    return mask


def _warp_mask(mask: np.ndarray, H: np.ndarray, width: int, height: int) -> np.ndarray:
    out = cv2.warpPerspective(mask.astype(np.uint8), H, (width, height), flags=cv2.INTER_NEAREST, borderValue=0)
    return out > 0


def _inside(H: np.ndarray, width: int, height: int, out_width: int, out_height: int) -> np.ndarray:
    """[height, width] bool: which pixels of a width x height grid H maps inside an out_width x out_height image."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
    p = H @ np.stack([xs.ravel(), ys.ravel(), np.ones(xs.size)])
    with np.errstate(divide="ignore", invalid="ignore"):
        u, v = p[0] / p[2], p[1] / p[2]
    ok = (p[2] > 0) & (u >= 0) & (u <= out_width - 1) & (v >= 0) & (v <= out_height - 1)
    return ok.reshape(height, width)


def aligned_overlap(ref: np.ndarray, mov: np.ndarray, H_mov_to_ref: np.ndarray) -> np.ndarray:
    """Reference pixels with data in the reference and in the moving image put onto the reference grid."""
    h, w = ref.shape[:2]
    mov_valid = ~nodata_mask(mov)
    return ~nodata_mask(ref) & _warp_mask(mov_valid, H_mov_to_ref, w, h)


def check_overlap(valid: np.ndarray, pair_id: str) -> None:
    frac = float(valid.mean()) if valid.size else 0.0
    if frac < MIN_OVERLAP_FRACTION:
        raise DatasetError(
            f"pair {pair_id}: the ground truth puts the moving image on only {100 * frac:.1f} % of the reference "
            f"(at least {100 * MIN_OVERLAP_FRACTION:.0f} % expected); is H_mov_to_ref.txt inverted or from another pair?"
        )


def warped_instances(
    ref: np.ndarray,
    mov: np.ndarray,
    H_mov_to_ref: np.ndarray,
    *,
    pair_id: str,
    modality: str,
    count: int,
    seed: int,
    cfg: WarpConfig = WarpConfig(),
) -> list[Instance]:
    """``count`` warped instances of one pair; instance k only depends on (seed, pair_id, k)."""
    h, w = ref.shape[:2]
    base_valid = aligned_overlap(ref, mov, H_mov_to_ref)
    check_overlap(base_valid, pair_id)
    out = []
    for k in range(count):
        H = random_homography(w, h, instance_rng(seed, pair_id, k), cfg)
        # mov -> ref (ground truth) then ref -> new mov (random warp), interpolated once.
        M = H @ H_mov_to_ref
        new_mov = cv2.warpPerspective(mov, M / M[2, 2], (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        valid = base_valid & _inside(H, w, h, w, h)
        out.append(Instance(pair_id, modality, k, ref, new_mov, H, valid, seed))
    return out


def raw_instance(ref: np.ndarray, mov: np.ndarray, H_mov_to_ref: np.ndarray, *, pair_id: str, modality: str) -> Instance:
    """The pair as distributed; its true ref -> mov map is the inverse of the ground truth."""
    valid = aligned_overlap(ref, mov, H_mov_to_ref)
    check_overlap(valid, pair_id)
    H = np.linalg.inv(H_mov_to_ref)
    return Instance(pair_id, modality, 0, ref, mov, H / H[2, 2], valid)


def make_instances(
    ref: np.ndarray,
    mov: np.ndarray,
    H_mov_to_ref: np.ndarray,
    *,
    pair_id: str,
    modality: str,
    mode: Mode,
    count: int = 1,
    seed: int = 0,
    cfg: WarpConfig = WarpConfig(),
) -> list[Instance]:
    if mode == "warped":
        return warped_instances(ref, mov, H_mov_to_ref, pair_id=pair_id, modality=modality, count=count, seed=seed, cfg=cfg)
    if mode == "raw":
        return [raw_instance(ref, mov, H_mov_to_ref, pair_id=pair_id, modality=modality)]
    raise ValueError(f"unknown mode {mode!r}; expected 'warped' or 'raw'")
