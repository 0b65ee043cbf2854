"""Classical structural matcher in the spirit of CFOG (Ye et al., IEEE TGRS 2019).

The idea, re-implemented from the paper's description:

* **Descriptor** - channel features of orientated gradients: image gradients projected onto K
  orientations over [0, 180) degrees, absolute values (so a contrast reversal between modalities
  gives the same feature), Gaussian smoothing across space and a [1, 2, 1] smoothing across the
  (circular) orientation axis, then L2 normalisation of every pixel's K-vector.
* **Template matching** - for templates on corner-like structure in the reference (Harris, one per
  grid cell, off nodata), the offset in the moving image that maximises the normalised correlation
  of the descriptor cubes (the SSD of normalised descriptors reduces to it), computed for all
  offsets at once by FFT, masked so that nodata and the image border do not count; sub-pixel peak
  by a parabola per axis. Confidence from the peak (its height and curvature give a predicted
  localisation error) and the second-best / best local-maximum ratio.
* **Coarse to fine** - a global phase correlation of the descriptor maps at reduced resolution
  gives candidate offsets; template matching with a wide search around them gives an affine model;
  each finer level re-warps the moving image with the current model and searches a small radius.
* **Outlier filtering** - a robust homography (MAGSAC, 3 px); only its inliers are returned, minus
  those far outside the inliers' own noise level (3 robust sigmas of the refit, never below 1 px).

Coordinates follow geomreg: x = column, y = row, origin at the centre of the top-left pixel, in
each input's own pixel grid.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Sequence

import cv2
import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from geomreg.matching.preprocess import check_image, normalize_intensity
from geomreg.matching.types import MatchResult

log = logging.getLogger(__name__)

__all__ = ["CFOGConfig", "CFOGMatcher", "Localised", "cfog_descriptor"]


@dataclass(frozen=True)
class CFOGConfig:
    """Parameters of the CFOG-style matcher (pixel sizes are in full-resolution pixels)."""

    n_orientations: int = 9  # K orientation channels over [0, 180) degrees
    gradient_sigma: float = 1.0  # pre-smoothing before the gradient: tames speckle and JPEG noise
    smooth_sigma: float = 1.0  # spatial Gaussian applied to each orientation channel
    norm_floor: float = 0.3  # L2 normalisation regulariser, as a fraction of the 75th percentile of gradient norms
    template_size: int = 51  # odd side of the square templates: larger = more robust and precise, slower
    search_radius: int = 6  # +-px searched at the finest level, after pre-warping with the coarse model
    coarse_search_radius: int = 12  # +-px (coarse-level pixels) searched around the global offset
    coarse_size: int = 256  # the coarsest level is the largest power-of-two reduction keeping max side >= this
    max_templates: int = 200  # upper bound on templates at the finest level
    coarse_max_templates: int = 64  # templates at the coarsest level (only an affine model is needed there)
    harris_block: int = 7  # Harris neighbourhood used to place templates on corner-like structure
    min_valid_fraction: float = 0.8  # a template / matched window needs this share of valid pixels
    min_ncc: float = 0.2  # peaks below this normalised correlation are discarded
    max_peak_ratio: float = 0.9  # second-best / best local maximum above this is ambiguous and discarded
    loc_error_factor: float = 2.0  # drop final matches whose predicted error exceeds this times the pair's median (0 disables)
    peak_exclusion: int = 3  # radius (px) around the best peak ignored when finding the second best
    n_global_candidates: int = 3  # phase-correlation peaks tried as initial offsets
    max_global_shift_fraction: float = 0.5  # |initial offset| allowed, as a fraction of the image size
    ransac_threshold: float = 3.0  # MAGSAC threshold (px) of the final homography filter
    residual_sigmas: float = 3.0  # then drop inliers whose residual exceeds this many robust sigmas (0 disables)
    min_residual_cut: float = 1.0  # ... but never cut residuals below this many px
    min_inliers: int = 6  # fewer consistent matches than this -> empty result

    def __post_init__(self) -> None:
        if self.n_orientations < 3:
            raise ValueError(f"CFOGConfig: n_orientations must be >= 3, got {self.n_orientations}")
        if self.template_size < 9 or self.template_size % 2 == 0:
            raise ValueError(f"CFOGConfig: template_size must be odd and >= 9, got {self.template_size}")
        if self.search_radius < 2 or self.coarse_search_radius < 2:
            raise ValueError("CFOGConfig: search radii must be >= 2 (the sub-pixel fit needs neighbours)")
        if self.peak_exclusion < 1:
            raise ValueError(f"CFOGConfig: peak_exclusion must be >= 1, got {self.peak_exclusion}")
        if self.coarse_size < self.template_size + 2 * self.coarse_search_radius:
            raise ValueError(f"CFOGConfig: coarse_size {self.coarse_size} is too small for template_size {self.template_size}")
        if self.harris_block < 2:
            raise ValueError(f"CFOGConfig: harris_block must be >= 2, got {self.harris_block}")
        if not -1.0 <= self.min_ncc < 1.0:
            raise ValueError(f"CFOGConfig: min_ncc must be in [-1, 1), got {self.min_ncc}")
        if min(self.max_templates, self.coarse_max_templates, self.min_inliers) < 4:
            raise ValueError(
                "CFOGConfig: max_templates, coarse_max_templates and min_inliers must be >= 4 (a homography needs 4 points)"
            )
        if not 0.0 < self.min_valid_fraction <= 1.0:
            raise ValueError(f"CFOGConfig: min_valid_fraction must be in (0, 1], got {self.min_valid_fraction}")
        if not 0.0 < self.max_peak_ratio <= 1.0:
            raise ValueError(f"CFOGConfig: max_peak_ratio must be in (0, 1], got {self.max_peak_ratio}")
        if not 0.0 < self.max_global_shift_fraction <= 1.0:
            raise ValueError("CFOGConfig: max_global_shift_fraction must be in (0, 1]")
        if self.gradient_sigma < 0 or self.smooth_sigma <= 0 or self.ransac_threshold <= 0:
            raise ValueError("CFOGConfig: sigmas and ransac_threshold must be positive")
        if self.residual_sigmas < 0 or self.min_residual_cut < 0 or self.loc_error_factor < 0 or self.norm_floor < 0:
            raise ValueError("CFOGConfig: residual_sigmas, min_residual_cut, loc_error_factor and norm_floor must be >= 0")
        if self.n_global_candidates < 1:
            raise ValueError("CFOGConfig: n_global_candidates must be >= 1")


# --------------------------------------------------------------------------------------------
# Descriptor
# --------------------------------------------------------------------------------------------


def _fill_invalid(img: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Replace invalid pixels by a smooth extrapolation of the valid ones.

    A hard 0 in nodata areas would put a strong artificial edge on the mask border; a smooth fill
    keeps the descriptor there close to what the valid side shows.
    """
    if valid.all():
        return img
    out = img.copy()
    if not valid.any():
        return np.zeros_like(img)
    w = valid.astype(np.float32)
    sigma = max(4.0, 0.02 * max(img.shape))
    num = cv2.GaussianBlur(img * w, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    den = cv2.GaussianBlur(w, (0, 0), sigma, borderType=cv2.BORDER_REFLECT)
    mean = float(img[valid].mean())
    fill = np.where(den > 1e-3, num / np.maximum(den, 1e-3), mean).astype(np.float32)
    out[~valid] = fill[~valid]
    return out


def cfog_descriptor(img: np.ndarray, valid: np.ndarray | None = None, config: CFOGConfig | None = None) -> np.ndarray:
    """Dense CFOG descriptor [K, H, W] float32 of a single-band float image (e.g. normalize_intensity output).

    Invalid pixels (valid == False) get an all-zero descriptor, so they never correlate with anything.
    """
    cfg = config or CFOGConfig()
    img = np.asarray(img, dtype=np.float32)
    if valid is None:
        valid = np.ones(img.shape, dtype=bool)
    img = _fill_invalid(img, valid)
    if cfg.gradient_sigma > 0:
        img = cv2.GaussianBlur(img, (0, 0), cfg.gradient_sigma, borderType=cv2.BORDER_REFLECT)
    # Central differences: symmetric kernels keep the descriptor centred on the pixel (no half-pixel bias).
    gx = cv2.Sobel(img, cv2.CV_32F, 1, 0, ksize=1, scale=0.5, borderType=cv2.BORDER_REFLECT)
    gy = cv2.Sobel(img, cv2.CV_32F, 0, 1, ksize=1, scale=0.5, borderType=cv2.BORDER_REFLECT)
    k = cfg.n_orientations
    chans = np.empty((k,) + img.shape, dtype=np.float32)
    for i in range(k):
        theta = math.pi * i / k
        # Absolute projection: a gradient and its reversal (dark/bright swapped between modalities) look alike.
        proj = np.abs(gx * math.cos(theta) + gy * math.sin(theta))
        chans[i] = cv2.GaussianBlur(proj, (0, 0), cfg.smooth_sigma, borderType=cv2.BORDER_REFLECT)
    # [1, 2, 1] / 4 across orientations, circular because 0 and 180 degrees are the same direction.
    smoothed = np.empty_like(chans)
    for i in range(k):  # plane by plane: cache-sized temporaries
        smoothed[i] = 0.5 * chans[i] + 0.25 * (chans[i - 1] + chans[(i + 1) % k])
    chans = smoothed
    norm = np.sqrt(np.einsum("khw,khw->hw", chans, chans))
    # Regularised L2 normalisation: the floor keeps flat, noise-only areas weak instead of
    # blowing their noise up to unit length (they then contribute little to any correlation).
    valid_norm = norm[valid]
    floor = cfg.norm_floor * float(np.percentile(valid_norm, 75)) if valid_norm.size else 0.0
    chans /= norm + max(floor, 1e-6)
    if not valid.all():
        chans[:, ~valid] = 0.0
    return chans


# --------------------------------------------------------------------------------------------
# Image preparation and pyramid
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Prepared:
    image: np.ndarray  # [H, W] float32, invalid pixels filled smoothly
    valid: np.ndarray  # [H, W] bool


def _prepare(arr: np.ndarray, name: str) -> _Prepared:
    norm = normalize_intensity(arr, name=name)
    return _Prepared(_fill_invalid(norm.image, norm.valid), norm.valid)


def _downsample(p: _Prepared, f: int) -> _Prepared:
    """Block-mean reduction by an integer factor: coarse pixel i covers full pixels f*i .. f*i+f-1 exactly."""
    if f == 1:
        return p
    h, w = p.image.shape[0] // f, p.image.shape[1] // f
    img = p.image[: h * f, : w * f].reshape(h, f, w, f).mean(axis=(1, 3), dtype=np.float32)
    valid = p.valid[: h * f, : w * f].reshape(h, f, w, f).all(axis=(1, 3))
    return _Prepared(img.astype(np.float32), valid)


def _scale_matrix(f: int) -> np.ndarray:
    """Level-f pixel coords -> full-resolution pixel coords (pixel centres at integers)."""
    o = (f - 1) / 2.0
    return np.array([[f, 0.0, o], [0.0, f, o], [0.0, 0.0, 1.0]])


def _to_level(A_full: np.ndarray, f: int) -> np.ndarray:
    S = _scale_matrix(f)
    return np.linalg.inv(S) @ A_full @ S


def _to_full(A_level: np.ndarray, f: int) -> np.ndarray:
    S = _scale_matrix(f)
    return S @ A_level @ np.linalg.inv(S)


def _apply(A: np.ndarray, xy: np.ndarray) -> np.ndarray:
    h = np.c_[xy, np.ones(len(xy))] @ A.T
    return h[:, :2] / h[:, 2:3]


def _warp_to_ref(mov: _Prepared, A: np.ndarray, ref_shape: tuple[int, int]) -> _Prepared:
    """Resample mov onto the ref grid: out(p) = mov(A p), A mapping ref coords -> mov coords."""
    h, w = ref_shape
    flags = cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP
    img = cv2.warpPerspective(mov.image, A, (w, h), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    vm = cv2.warpPerspective(
        mov.valid.astype(np.float32),
        A,
        (w, h),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0.0,
    )
    return _Prepared(img, vm > 0.999)


# --------------------------------------------------------------------------------------------
# Template placement
# --------------------------------------------------------------------------------------------


def _box_sum(a: np.ndarray, size: int) -> np.ndarray:
    """Sum over the size x size window centred on each pixel (zero outside the array)."""
    return cv2.boxFilter(a.astype(np.float32), cv2.CV_32F, (size, size), normalize=False, borderType=cv2.BORDER_CONSTANT)


def _corner_response(p: _Prepared, cfg: CFOGConfig) -> np.ndarray:
    """Harris response [H, W] (float64) of the image, -inf wherever a template centred there would not lie on
    (mostly) valid pixels inside the image. The image must be at least a template in size."""
    t = cfg.template_size
    half = t // 2
    h, w = p.image.shape
    resp = cv2.cornerHarris(p.image, cfg.harris_block, 3, 0.04, borderType=cv2.BORDER_REFLECT)
    ok = p.valid & (_box_sum(p.valid, t) / float(t * t) >= cfg.min_valid_fraction)
    ok[:half] = ok[h - half :] = False
    ok[:, :half] = ok[:, w - half :] = False
    return np.where(ok, resp, -np.inf)


def _cell_blocks(resp: np.ndarray, cell: int) -> np.ndarray:
    """resp [H, W] cut into cell x cell squares, row-major inside each: [ny, nx, cell * cell] (-inf padded)."""
    h, w = resp.shape
    ny, nx = -(-h // cell), -(-w // cell)
    padded = np.full((ny * cell, nx * cell), -np.inf, dtype=np.float64)
    padded[:h, :w] = resp
    return padded.reshape(ny, cell, nx, cell).transpose(0, 2, 1, 3).reshape(ny, nx, cell * cell)


def _select_templates(p: _Prepared, cfg: CFOGConfig, max_templates: int) -> np.ndarray:
    """Template centres [N, 2] (row, col) on corner-like structure, spread over a grid."""
    t = cfg.template_size
    h, w = p.image.shape
    if h < t or w < t:
        return np.zeros((0, 2), dtype=np.int64)
    resp = _corner_response(p, cfg)
    ok = np.isfinite(resp)
    if not ok.any():
        return np.zeros((0, 2), dtype=np.int64)
    # One candidate per grid cell: spreads templates over the image so the fitted model is well conditioned.
    area = float(ok.sum())
    cell = max(t // 2, int(math.sqrt(area / (1.5 * max_templates))))
    blocks = _cell_blocks(resp, cell)
    arg = blocks.argmax(axis=2)
    best = np.take_along_axis(blocks, arg[..., None], axis=2)[..., 0]
    cy, cx = np.nonzero(np.isfinite(best))
    if len(cy) == 0:
        return np.zeros((0, 2), dtype=np.int64)
    a = arg[cy, cx]
    rows = cy * cell + a // cell
    cols = cx * cell + a % cell
    score = best[cy, cx]
    top = float(score.max())
    keep = score > 1e-4 * top if top > 0 else np.ones(len(score), bool)  # drop flat cells with no structure
    rows, cols, score = rows[keep], cols[keep], score[keep]
    order = np.lexsort((cols, rows, -score))[:max_templates]  # deterministic tie-breaking
    return np.stack([rows[order], cols[order]], axis=1).astype(np.int64)


# --------------------------------------------------------------------------------------------
# FFT template matching
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Matches:
    ref_xy: np.ndarray  # [N, 2] (x, y) in the level's ref grid
    mov_xy: np.ndarray  # [N, 2] (x, y) in the searched image's grid
    score: np.ndarray  # [N] NCC at the peak
    ratio: np.ndarray  # [N] second-best / best peak
    sharp: np.ndarray  # [N] smallest curvature of the NCC peak (per px^2): low = poorly localised along some direction

    def __len__(self) -> int:
        return len(self.score)

    @staticmethod
    def empty() -> "_Matches":
        return _Matches(np.zeros((0, 2)), np.zeros((0, 2)), np.zeros(0), np.zeros(0), np.zeros(0))

    def subset(self, keep: np.ndarray) -> "_Matches":
        return _Matches(self.ref_xy[keep], self.mov_xy[keep], self.score[keep], self.ratio[keep], self.sharp[keep])

    @property
    def loc_error(self) -> np.ndarray:
        """Predicted localisation error (px) of each match from its NCC peak.

        Noise on the correlation surface scales with (1 - score) / score and the peak moves by that
        noise over the curvature, hence sqrt((1 - s) / (s * curvature)); the 0.1 factor is an
        empirical calibration on synthetic shifts (median |error| ~ this value).
        """
        s = np.clip(self.score, 1e-3, 0.999)
        return 0.1 * np.sqrt((1.0 - s) / (s * np.maximum(self.sharp, 1e-6)))

    @property
    def confidence(self) -> np.ndarray:
        # In [0, 1]: 0.5 at a predicted 0.3 px error, lowered further by a competing peak.
        precise = 1.0 / (1.0 + (self.loc_error / 0.3) ** 2)
        return precise * np.clip(1.0 - self.ratio, 0.0, 1.0)


class _TemplateBank:
    """Ref descriptor templates, their validity masks and spectra for one FFT size, reusable across searches."""

    def __init__(self, dref: np.ndarray, valid: np.ndarray, centres: np.ndarray, t: int, radius: int) -> None:
        k = dref.shape[0]
        half = t // 2
        self.t, self.radius = t, radius
        # Circular correlation of any size >= t + 2*radius is exact for offsets 0 .. 2*radius; pick a fast size.
        self.size = sfft.next_fast_len(t + 2 * radius, real=True)
        self.centres = centres
        n = len(centres)
        tz = np.empty((n, k, t, t), dtype=np.float32)
        mask = np.empty((n, 1, t, t), dtype=np.float32)
        for i, (r, c) in enumerate(centres):
            tz[i] = dref[:, r - half : r + half + 1, c - half : c + half + 1]
            mask[i, 0] = valid[r - half : r + half + 1, c - half : c + half + 1]
        # Zero-mean over the valid pixels, and exactly zero on nodata: the plain correlation is then an NCC
        # numerator, and nodata parts of the template ignore whatever lies under them in mov (a constant
        # -mean there would correlate with the mov structure and bias the peak).
        count = mask.sum(axis=(1, 2, 3), keepdims=True)
        self.full = count.ravel() >= t * t - 0.5
        # Most templates lie on valid pixels only: the mask is all ones there and its products are skipped.
        part = ~self.full
        sums = tz.sum(axis=(1, 2, 3), keepdims=True)
        if part.any():
            sums[part] = (tz[part] * mask[part]).sum(axis=(1, 2, 3), keepdims=True)
        tz -= sums / np.maximum(k * count, 1.0)
        if part.any():
            tz[part] *= mask[part]
        self.norm = np.sqrt(np.einsum("nkij,nkij->n", tz, tz))
        self.spec = np.conj(sfft.rfft2(tz, s=(self.size, self.size), workers=1))  # zero-padded to the FFT size
        self._tz, self._mask = tz, mask

    def aux_spectra(self, ids: np.ndarray) -> np.ndarray:
        """Spectra of the channel-summed planes the masked NCC needs (validity, sum of T, sum of T^2 per pixel),
        computed only for the templates that need masking (near nodata or the image border)."""
        tz = self._tz[ids]
        planes = np.stack([self._mask[ids, 0], tz.sum(axis=1), np.einsum("nkij,nkij->nij", tz, tz)], axis=1)
        return np.conj(sfft.rfft2(planes, s=(self.size, self.size), workers=1))


def _match_templates(bank: _TemplateBank, dmov: np.ndarray, mov_valid: np.ndarray, pred: np.ndarray, cfg: CFOGConfig) -> _Matches:
    """Match each ref template of the bank around its predicted mov position (integer row, col).

    Scores are masked normalised cross-correlations of the K x t x t descriptor cubes (Padfield,
    "Masked object registration in the Fourier domain", 2012): at every offset, means and variances
    are taken over the pixels valid in both images only, so nodata areas and the image border
    (outside = nodata) neither add nor remove correlation, and do not pull the peak.
    """
    t, radius, size = bank.t, bank.radius, bank.size
    half = t // 2
    k, hm, wm = dmov.shape
    pad = half + radius
    span = t + 2 * radius
    n_off = 2 * radius + 1
    empty = _Matches.empty()
    inb = (pred[:, 0] >= 0) & (pred[:, 0] < hm) & (pred[:, 1] >= 0) & (pred[:, 1] < wm) & (bank.norm > 1e-6)
    idx = np.nonzero(inb)[0]
    if len(idx) == 0:
        return empty

    dpad = np.pad(dmov, ((0, 0), (pad, pad), (pad, pad)))  # descriptors are 0 on nodata and outside
    vpad = np.pad(mov_valid, pad).astype(np.float32)
    # Search windows entirely on valid mov pixels, for templates entirely on valid ref pixels, need no
    # masking: their NCC statistics come from box sums (cheaper than the five extra correlations).
    win_valid = _box_sum(vpad, span)  # centred box: window with top-left (pr, pc) is centred at (pr + pad, pc + pad)
    full = bank.full[idx] & (win_valid[pred[idx, 0] + pad, pred[idx, 1] + pad] >= span * span - 0.5)
    s1 = _box_sum(dpad.sum(axis=0), t) if full.any() else None
    s2 = _box_sum(np.einsum("khw,khw->hw", dpad, dpad), t) if full.any() else None
    yy, xx = np.mgrid[0:n_off, 0:n_off]

    out: list[tuple[np.ndarray, ...]] = []
    chunk = 64  # bounds the memory of the batched FFTs
    groups = [(g, is_full) for is_full in (True, False) for g in [idx[full == is_full]] if len(g)]
    for ids_all, is_full in groups:
        for c0 in range(0, len(ids_all), chunk):
            ids = ids_all[c0 : c0 + chunk]
            ps = pred[ids]
            if is_full:
                ncc = _ncc_full(bank, ids, ps, dpad, s1, s2)
            else:
                ncc = _ncc_masked(bank, ids, ps, dpad, vpad, cfg)
            out.extend(_peaks(ncc, bank, ids, ps, yy, xx, cfg))
    if not out:
        return empty
    return _Matches(*(np.concatenate(parts) for parts in zip(*out)))


def _search_windows(ps: np.ndarray, dpad: np.ndarray, span: int) -> np.ndarray:
    """[m, K, span, span] windows of the padded mov descriptors (the FFTs zero-pad them to their size)."""
    srch = np.empty((len(ps), dpad.shape[0], span, span), dtype=np.float32)
    for i, (pr, pc) in enumerate(ps):
        # Window whose top-left is (pr, pc) in padded coords = centred on (pr, pc) - radius in mov coords.
        srch[i] = dpad[:, pr : pr + span, pc : pc + span]
    return srch


def _ncc_full(bank: _TemplateBank, ids: np.ndarray, ps: np.ndarray, dpad: np.ndarray, s1: np.ndarray, s2: np.ndarray) -> np.ndarray:
    """NCC surfaces [m, n_off, n_off] when template and search window are entirely valid."""
    t, radius, size = bank.t, bank.radius, bank.size
    half, span, n_off = t // 2, t + 2 * radius, 2 * radius + 1
    srch = _search_windows(ps, dpad, span)
    s_tm = sfft.irfft2((bank.spec[ids] * sfft.rfft2(srch, s=(size, size), workers=1)).sum(axis=1), s=(size, size), workers=1)[:, :n_off, :n_off]
    # Box sums are centred: the window with top-left (pr + dy, pc + dx) is centred at (pr + half + dy, ...).
    s_m = np.stack([s1[pr + half : pr + half + n_off, pc + half : pc + half + n_off] for pr, pc in ps])
    s_m2 = np.stack([s2[pr + half : pr + half + n_off, pc + half : pc + half + n_off] for pr, pc in ps])
    n = float(dpad.shape[0] * t * t)
    var_m = np.maximum(s_m2 - s_m * s_m / n, 1e-9)
    # The template is zero-mean, so sum(T*M) is already the centred cross-product.
    return s_tm / (bank.norm[ids, None, None] * np.sqrt(var_m) + 1e-12)


def _ncc_masked(
    bank: _TemplateBank, ids: np.ndarray, ps: np.ndarray, dpad: np.ndarray, vpad: np.ndarray, cfg: CFOGConfig
) -> np.ndarray:
    """Masked NCC surfaces [m, n_off, n_off]: statistics over the pixels valid in both images at each offset."""
    t, radius, size = bank.t, bank.radius, bank.size
    k, span, n_off = dpad.shape[0], t + 2 * radius, 2 * radius + 1
    srch = _search_windows(ps, dpad, span)
    aux = np.empty((len(ps), 3, span, span), dtype=np.float32)
    for i, (pr, pc) in enumerate(ps):
        aux[i, 0] = vpad[pr : pr + span, pc : pc + span]
    aux[:, 1] = srch.sum(axis=1)
    aux[:, 2] = np.einsum("mkij,mkij->mij", srch, srch)
    fs = sfft.rfft2(srch, s=(size, size), workers=1)
    fa = sfft.rfft2(aux, s=(size, size), workers=1)
    ta = bank.aux_spectra(ids)
    prods = np.stack(
        [
            (bank.spec[ids] * fs).sum(axis=1),  # sum T*M
            ta[:, 0] * fa[:, 0],  # overlap count (pixels)
            ta[:, 1] * fa[:, 0],  # sum T over the overlap
            ta[:, 2] * fa[:, 0],  # sum T^2 over the overlap
            ta[:, 0] * fa[:, 1],  # sum M over the overlap
            ta[:, 0] * fa[:, 2],  # sum M^2 over the overlap
        ],
        axis=1,
    )
    s_tm, cnt, s_t, s_t2, s_m, s_m2 = np.moveaxis(sfft.irfft2(prods, s=(size, size), workers=1)[:, :, :n_off, :n_off], 1, 0)
    cnt = np.rint(cnt)
    n = np.maximum(k * cnt, 1.0)
    var_t = np.maximum(s_t2 - s_t * s_t / n, 1e-9)
    var_m = np.maximum(s_m2 - s_m * s_m / n, 1e-9)
    ncc = (s_tm - s_t * s_m / n) / np.sqrt(var_t * var_m)
    ncc[cnt < cfg.min_valid_fraction * t * t] = -1.0
    return ncc


def _peaks(
    ncc: np.ndarray, bank: _TemplateBank, ids: np.ndarray, ps: np.ndarray, yy: np.ndarray, xx: np.ndarray, cfg: CFOGConfig
) -> list[tuple[np.ndarray, ...]]:
    """Best peak of each NCC surface, sub-pixel, with its ambiguity ratio and curvature; [] if none passes."""
    m, n_off = ncc.shape[0], ncc.shape[1]
    radius = bank.radius
    flat = ncc.reshape(m, -1).argmax(axis=1)
    iy, ix = np.divmod(flat, n_off)
    rows = np.arange(m)
    best = ncc[rows, iy, ix]
    # Second-best = the highest other local maximum (outside a small exclusion disc): the shoulder of a
    # broad main peak is not a competitor, a separate peak (repetitive structure) is.
    is_max = ncc >= ndimage.maximum_filter(ncc, size=(1, 3, 3), mode="nearest")
    far = (yy[None] - iy[:, None, None]) ** 2 + (xx[None] - ix[:, None, None]) ** 2 > cfg.peak_exclusion**2
    second = np.where(far & is_max, ncc, -np.inf).reshape(m, -1).max(axis=1)
    ratio = np.maximum(second, 0.0) / np.maximum(best, 1e-9)
    # A peak on the search border may be a truncated better peak outside it: reject it.
    ok = (iy > 0) & (iy < n_off - 1) & (ix > 0) & (ix < n_off - 1) & (best >= cfg.min_ncc) & (ratio <= cfg.max_peak_ratio)
    if not ok.any():
        return []
    rows, iy, ix = rows[ok], iy[ok], ix[ok]
    sx, sy, sharp = _fit_peak(ncc, rows, iy, ix)
    r_c = bank.centres[ids[ok]]
    p = ps[ok]
    ref_xy = np.stack([r_c[:, 1], r_c[:, 0]], axis=1).astype(np.float64)
    mov_xy = np.stack([p[:, 1] - radius + ix + sx, p[:, 0] - radius + iy + sy], axis=1)
    return [(ref_xy, mov_xy, best[ok].astype(np.float64), ratio[ok].astype(np.float64), sharp.astype(np.float64))]


def _parabola(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Vertex offset of the parabola through (-1, a), (0, b), (1, c), clipped to +-0.5 px (0 if not a maximum)."""
    den = a - 2.0 * b + c
    safe = np.where(den < -1e-12, den, -1.0)
    return np.where(den < -1e-12, np.clip(0.5 * (a - c) / safe, -0.5, 0.5), 0.0)


def _fit_peak(ncc: np.ndarray, rows: np.ndarray, iy: np.ndarray, ix: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sub-pixel peak (dx, dy) by a parabola per axis through the peak and its 4-neighbours, and the curvature.

    The curvature is the smallest eigenvalue of -Hessian (finite differences): an edge-like template
    gives a ridge, well localised across the edge but not along it, and a low value. (Least-squares
    quadratics over 3x3 or 5x5 neighbourhoods were tried: the peaks are narrow enough that they were
    less accurate, also under speckle.)
    """
    g = lambda dy, dx: ncc[rows, iy + dy, ix + dx].astype(np.float64)  # noqa: E731
    c0, up, dn, lf, rt = g(0, 0), g(-1, 0), g(1, 0), g(0, -1), g(0, 1)
    sy, sx = _parabola(up, c0, dn), _parabola(lf, c0, rt)
    hyy, hxx = 2.0 * c0 - up - dn, 2.0 * c0 - lf - rt
    hxy = -0.25 * (g(1, 1) - g(1, -1) - g(-1, 1) + g(-1, -1))
    sharp = 0.5 * (hxx + hyy) - np.sqrt(0.25 * (hxx - hyy) ** 2 + hxy**2)
    return sx, sy, sharp


# --------------------------------------------------------------------------------------------
# Global offset by phase correlation of descriptor maps
# --------------------------------------------------------------------------------------------


def _tukey(n: int, alpha: float = 0.25) -> np.ndarray:
    x = np.arange(n, dtype=np.float64) / max(n - 1, 1)
    w = np.ones(n)
    edge = alpha / 2
    lo, hi = x < edge, x > 1 - edge
    w[lo] = 0.5 * (1 + np.cos(np.pi * (x[lo] / edge - 1)))
    w[hi] = 0.5 * (1 + np.cos(np.pi * ((x[hi] - 1) / edge + 1)))
    return w


def _global_offsets(
    dref: np.ndarray, rvalid: np.ndarray, dmov: np.ndarray, mvalid: np.ndarray, cfg: CFOGConfig
) -> list[tuple[int, int]]:
    """Candidate integer offsets (dy, dx), best first, such that mov(p + d) ~ ref(p)."""
    k, h1, w1 = dref.shape
    _, h2, w2 = dmov.shape
    # Linear (not circular) correlation: with at least h1 + h2 - 1 rows every offset is unambiguous.
    ny, nx = sfft.next_fast_len(h1 + h2, real=True), sfft.next_fast_len(w1 + w2, real=True)

    def spectrum(d: np.ndarray, valid: np.ndarray) -> np.ndarray:
        # Zero-mean channels inside the footprint and a soft window, so that the image borders
        # themselves do not correlate (the classic spurious peak at zero offset).
        win = np.outer(_tukey(d.shape[1]), _tukey(d.shape[2])) * valid
        z = np.zeros((k, ny, nx), dtype=np.float32)
        for c in range(k):
            ch = d[c]
            mu = float(ch[valid].mean()) if valid.any() else 0.0
            z[c, : d.shape[1], : d.shape[2]] = (ch - mu) * win
        return sfft.rfft2(z, workers=1)

    cross = (np.conj(spectrum(dref, rvalid)) * spectrum(dmov, mvalid)).sum(axis=0)
    cross /= np.abs(cross) + 1e-3 * float(np.abs(cross).max() + 1e-12)  # phase correlation, regularised
    # Gaussian smoothing of the (circular) surface, applied as a transfer function: a sub-pixel or slightly
    # rotated peak spreads over neighbours, and this gathers it back into one maximum.
    fy, fx = sfft.fftfreq(ny)[:, None], sfft.rfftfreq(nx)[None, :]
    cross *= np.exp(-2.0 * (math.pi * 1.0) ** 2 * (fy * fy + fx * fx))
    surf = sfft.irfft2(cross, s=(ny, nx), workers=1)
    dy = np.arange(ny)
    dy = np.where(dy <= h2 - 1, dy, dy - ny)
    dx = np.arange(nx)
    dx = np.where(dx <= w2 - 1, dx, dx - nx)
    lim_y = cfg.max_global_shift_fraction * max(h1, h2)
    lim_x = cfg.max_global_shift_fraction * max(w1, w2)
    allowed = (np.abs(dy)[:, None] <= lim_y) & (np.abs(dx)[None, :] <= lim_x)
    surf = np.where(allowed, surf, -np.inf)
    out: list[tuple[int, int]] = []
    excl = max(cfg.coarse_search_radius // 2, 3)
    for _ in range(cfg.n_global_candidates):
        flat = int(np.argmax(surf))
        iy, ix = divmod(flat, nx)
        if not np.isfinite(surf[iy, ix]):
            break
        out.append((int(dy[iy]), int(dx[ix])))
        # Suppress the neighbourhood (with wrap-around, as the surface is circular).
        ry = (np.arange(iy - excl, iy + excl + 1)) % ny
        rx = (np.arange(ix - excl, ix + excl + 1)) % nx
        surf[np.ix_(ry, rx)] = -np.inf
    return out


# --------------------------------------------------------------------------------------------
# Model fitting
# --------------------------------------------------------------------------------------------


def _well_spread(xy: np.ndarray) -> bool:
    """True if points span a 2-D area: an affine or homography fitted to (nearly) collinear points is arbitrary
    across the line (a thin strip of an image gives such points)."""
    if len(xy) < 4:
        return False
    ev = np.linalg.eigvalsh(np.cov(xy.T))
    lo, hi = np.sqrt(max(ev[0], 0.0)), np.sqrt(max(ev[1], 0.0))
    return bool(lo >= 5.0 and lo >= 0.1 * hi)


def _fit_affine(m: _Matches, A_prev: np.ndarray, thr: float) -> tuple[np.ndarray, int]:
    """Robust affine ref -> mov in level coords; keeps A_prev's shape when too few matches support it."""
    if len(m) >= 6 and _well_spread(m.ref_xy):
        M, inl = cv2.estimateAffine2D(m.ref_xy, m.mov_xy, method=cv2.USAC_MAGSAC, ransacReprojThreshold=thr)
        if M is not None and inl is not None and int(inl.sum()) >= 6 and _well_spread(m.ref_xy[inl.ravel() > 0]):
            lin = M[:, :2]
            sv = np.linalg.svd(lin, compute_uv=False)
            # Reject degenerate fits (collapsed, mirrored or wildly scaled): keep the previous model instead.
            if sv.min() > 0.5 and sv.max() < 2.0 and np.linalg.det(lin) > 0:
                return np.vstack([M, [0.0, 0.0, 1.0]]), int(inl.sum())
    if len(m) >= 1:
        # Translation-only update by the median residual: robust and defined for one or two matches.
        resid = m.mov_xy - _apply(A_prev, m.ref_xy)
        med = np.median(resid, axis=0)
        close = np.linalg.norm(resid - med, axis=1) <= thr
        A = A_prev.copy()
        A[:2, 2] += med
        return A, int(close.sum())
    return A_prev, 0


# --------------------------------------------------------------------------------------------
# Matcher
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Localised:
    """CFOGMatcher.localise's result: the found points, each with the index of the input point it came from."""

    index: np.ndarray  # [K] int, into the caller's points
    ref_xy: np.ndarray  # [K, 2] the template centre (the input point rounded to a pixel)
    mov_xy: np.ndarray  # [K, 2] its sub-pixel match in mov
    confidence: np.ndarray  # [K] as CFOGMatcher's
    offset: np.ndarray  # [K, 2] mov_xy minus the model's prediction for ref_xy (px)
    consistent: np.ndarray  # [K] bool: kept by the matcher's outlier filter
    tried: int = 0  # templates placed
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.index)

    @staticmethod
    def empty(note: str) -> "Localised":
        z = np.zeros((0, 2))
        return Localised(np.zeros(0, np.int64), z, z.copy(), np.zeros(0), z.copy(), np.zeros(0, bool), 0, (note,))


def _prepared_with_model(ref: np.ndarray, mov: np.ndarray, H_ref_to_mov: np.ndarray, what: str) -> tuple[_Prepared, _Prepared, np.ndarray]:
    """Both images checked and prepared, and the ref -> mov model as a finite, invertible 3x3 (else ValueError)."""
    ref = check_image(ref, "ref")
    mov = check_image(mov, "mov")
    H = np.asarray(H_ref_to_mov, dtype=np.float64)
    if H.shape != (3, 3) or not np.all(np.isfinite(H)) or abs(np.linalg.det(H)) < 1e-12:
        raise ValueError(f"{what}: H_ref_to_mov must be a finite, invertible 3x3 matrix, got {H.shape}")
    return _prepare(ref, "ref"), _prepare(mov, "mov"), H


def _centres_that_fit(xy: np.ndarray, ref: _Prepared, cfg: CFOGConfig) -> np.ndarray:
    """Distinct pixel centres [N, 2] (row, col) of the points whose template fits on (mostly) valid ref pixels."""
    if len(xy) == 0:
        return np.zeros((0, 2), np.int64)
    half = cfg.template_size // 2
    h, w = ref.image.shape
    rc = np.unique(np.floor(xy[:, ::-1] + 0.5).astype(np.int64), axis=0)
    inside = (rc[:, 0] >= half) & (rc[:, 0] < h - half) & (rc[:, 1] >= half) & (rc[:, 1] < w - half)
    rc = rc[inside]
    frac = _box_sum(ref.valid, cfg.template_size) / float(cfg.template_size**2)
    return rc[ref.valid[rc[:, 0], rc[:, 1]] & (frac[rc[:, 0], rc[:, 1]] >= cfg.min_valid_fraction)]


def _corners_in_cells(xy: np.ndarray, ref: _Prepared, cfg: CFOGConfig, cell: float) -> np.ndarray:
    """Template centres [N, 2] (row, col): in every cell-sized square holding one of the points xy [M, 2], the
    pixel of highest Harris response where a template fits on valid pixels (as `match` places its templates).
    Why not the points themselves: a template centred on a corner localises in both directions; one centred
    beside it, on an edge, only across the edge, and every template on that edge then errs alike, which a
    model fit takes for a real local distortion."""
    t = cfg.template_size
    h, w = ref.image.shape
    if len(xy) == 0 or h < t or w < t:
        return np.zeros((0, 2), np.int64)
    c = max(1, int(round(cell)))
    blocks = _cell_blocks(_corner_response(ref, cfg), c)
    ny, nx = blocks.shape[:2]
    cells = np.unique(np.clip(np.floor(xy[:, ::-1] / c).astype(np.int64), 0, [ny - 1, nx - 1]), axis=0)  # (row, col) cells
    arg = blocks[cells[:, 0], cells[:, 1]].argmax(axis=1)
    found = np.isfinite(blocks[cells[:, 0], cells[:, 1], arg])
    rows, cols = cells[:, 0] * c + arg // c, cells[:, 1] * c + arg % c
    return np.stack([rows, cols], axis=1)[found].astype(np.int64)


def _nearest_point(centre_xy: np.ndarray, points_xy: np.ndarray) -> np.ndarray:
    """For each template centre (x, y) [K, 2], the index of the nearest of the caller's points [M, 2]."""
    if len(centre_xy) == 0:
        return np.zeros(0, np.int64)
    d = ((centre_xy[:, None, :] - points_xy[None, :, :]) ** 2).sum(axis=-1)  # [K, M]
    return d.argmin(axis=1).astype(np.int64)


class CFOGMatcher:
    """CFOG-style structural matcher; implements geomreg.matching.types.ImageMatcher.

    Inputs are numpy HxW or HxWxC arrays of any numeric dtype (complex SAR -> amplitude); they are
    normalised with geomreg.matching.preprocess.normalize_intensity (percentile stretch, log scale
    for heavy-tailed SAR). NaN pixels are nodata: no template is placed on them and no match lands
    on them. ref and mov may differ in size; the geometric difference should be close to a
    translation plus a few degrees / percent of rotation and scale (the descriptor is not rotation
    or scale invariant). Invalid arrays raise ValueError; images smaller than about three templates
    or without usable structure give an empty MatchResult whose notes say why.

    confidence in [0, 1]: 1 / (1 + (e / 0.3 px)^2) for the localisation error e predicted from the
    correlation peak, times (1 - second-best / best peak). Deterministic: same inputs, same result.
    Memory is about 2 x 9 x H x W float32 per image; tile large rasters (e.g. 1024 px tiles).
    """

    name = "cfog"

    def __init__(self, config: CFOGConfig | None = None) -> None:
        self.config = config or CFOGConfig()

    def __repr__(self) -> str:
        return f"CFOGMatcher({self.config!r})"

    # -- public API ---------------------------------------------------------------------------

    def match(self, ref: np.ndarray, mov: np.ndarray) -> MatchResult:
        ref = check_image(ref, "ref")
        mov = check_image(mov, "mov")
        r, m = _prepare(ref, "ref"), _prepare(mov, "mov")
        return self._match_prepared(r, m)

    def match_batch(self, pairs: Sequence[tuple[np.ndarray, np.ndarray]]) -> list[MatchResult]:
        """Match each (ref, mov) pair in turn; every pair is validated before any work starts."""
        if isinstance(pairs, np.ndarray) or not isinstance(pairs, (list, tuple)):
            try:
                pairs = list(pairs)  # any iterable of pairs, e.g. a generator
            except TypeError:
                raise ValueError(f"pairs: expected a sequence of (ref, mov) pairs, got {type(pairs).__name__}") from None
        checked = []
        for i, pair in enumerate(pairs):
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ValueError(f"pairs[{i}]: expected a (ref, mov) pair of arrays, got {type(pair).__name__}")
            checked.append((check_image(pair[0], f"pairs[{i}].ref"), check_image(pair[1], f"pairs[{i}].mov")))
        return [
            self._match_prepared(_prepare(r, f"pairs[{i}].ref"), _prepare(m, f"pairs[{i}].mov")) for i, (r, m) in enumerate(checked)
        ]

    def refine(self, ref: np.ndarray, mov: np.ndarray, H_ref_to_mov: np.ndarray) -> MatchResult:
        """Template matches around a model another matcher found (3x3, ref pixel -> mov pixel).

        The finest level of `match` alone: mov is resampled onto ref through the model and every template
        is searched within +-search_radius px, so the result is as precise as CFOG wherever the model is
        within a few px, whatever found it. Empty (with the reason in its notes) when nothing consistent
        is found there.
        """
        r, m, H = _prepared_with_model(ref, mov, H_ref_to_mov, "refine")
        for name, p in (("ref", r), ("mov", m)):
            if not p.valid.any() or min(p.image.shape) < self.config.template_size:
                return MatchResult.empty([f"cfog refine: {name} has no valid area a template fits in"])
        found = self._localised(self._pass(r, m, H / H[2, 2], self.config.search_radius))
        keep, why = self._consistent(found)
        notes = [f"cfog refine: {len(found)} template matches around the given model"]
        if keep is None:
            return MatchResult.empty(notes + [why])
        return MatchResult(found.ref_xy[keep].copy(), found.mov_xy[keep].copy(), found.confidence[keep].astype(np.float64), tuple(notes + [why]))

    def localise(
        self, ref: np.ndarray, mov: np.ndarray, H_ref_to_mov: np.ndarray, ref_xy: np.ndarray, cell: float = 0.0
    ) -> "Localised":
        """Template matches at given reference points, searched +-search_radius px around where the model
        (3x3, ref pixel -> mov pixel) puts them: the finest level of `match` with the caller's template
        region instead of the whole image. With ``cell`` > 0 a template is placed in every cell-sized square
        that holds one of the points, at its most corner-like pixel (Harris, as `match` places its templates);
        with ``cell`` = 0 at each point itself, rounded to the nearest pixel. Templates that do not fit on valid
        reference pixels, or whose peak is ambiguous, flat or on the search border, are not found; `index`
        names the caller's point nearest each found one. The result's `consistent` mask is `match`'s outlier
        filter over the found ones.
        """
        r, m, H = _prepared_with_model(ref, mov, H_ref_to_mov, "localise")
        xy = np.asarray(ref_xy, np.float64)
        centres = _corners_in_cells(xy, r, self.config, cell) if cell > 0 else _centres_that_fit(xy, r, self.config)
        if len(centres) == 0 or min(m.image.shape) < self.config.template_size:
            return Localised.empty("cfog localise: no template fits at the given points")
        found = self._localised(self._pass(r, m, H / H[2, 2], self.config.search_radius, centres=centres))
        keep, why = self._consistent(found)
        offset = found.mov_xy - _apply(H / H[2, 2], found.ref_xy)
        return Localised(
            index=_nearest_point(found.ref_xy, xy),
            ref_xy=found.ref_xy.copy(),
            mov_xy=found.mov_xy.copy(),
            confidence=found.confidence.astype(np.float64),
            offset=offset,
            consistent=keep if keep is not None else np.zeros(len(found), bool),
            tried=len(centres),
            notes=(f"cfog localise: {len(found)} of {len(centres)} templates found", why),
        )

    # -- internals ----------------------------------------------------------------------------

    def _localised(self, m: _Matches) -> _Matches:
        """Drop peaks much flatter or weaker than the typical one of this pair: they localise poorly."""
        if self.config.loc_error_factor <= 0 or len(m) == 0:
            return m
        le = m.loc_error
        return m.subset(le <= self.config.loc_error_factor * float(np.median(le)))

    def _match_prepared(self, ref: _Prepared, mov: _Prepared) -> MatchResult:
        cfg = self.config
        t = cfg.template_size
        for name, p in (("ref", ref), ("mov", mov)):
            if not p.valid.any():
                return MatchResult.empty([f"cfog: {name} has no valid pixels"])
            if min(p.image.shape) < t:
                return MatchResult.empty([f"cfog: {name} {p.image.shape} is smaller than the {t}px template"])

        # Coarsest level: largest power of two that keeps both images at least coarse_size on their long side
        # and at least a template (plus the search) on their short side.
        f0 = 1
        while True:
            nf = 2 * f0
            if min(max(ref.image.shape), max(mov.image.shape)) // nf < cfg.coarse_size:
                break
            if min(min(ref.image.shape), min(mov.image.shape)) // nf < t + 2 * cfg.coarse_search_radius:
                break
            f0 = nf
        levels = []
        f = f0
        while f >= 1:
            levels.append(f)
            f //= 2
        if len(levels) == 1:
            levels.append(1)  # a single level gets a wide pass then a pre-warped fine pass at the same scale

        A = self._initial_model(ref, mov, levels[0])
        if A is None:
            return MatchResult.empty([f"cfog: no consistent structure found at the coarse level (1/{levels[0]})"])

        final: _Matches | None = None
        for li, f in enumerate(levels[1:], start=1):
            is_last = li == len(levels) - 1
            rl, ml = _downsample(ref, f), _downsample(mov, f)
            matches = self._pass(rl, ml, _to_level(A, f), cfg.search_radius)
            if is_last:
                final = self._localised(matches)
            else:
                A_l, _ = _fit_affine(matches, _to_level(A, f), thr=2.0)
                A = _to_full(A_l, f)

        assert final is not None
        notes = [f"cfog: levels 1/{', 1/'.join(str(f) for f in levels)}", f"cfog: {len(final)} template matches before filtering"]
        keep, why = self._consistent(final)
        if keep is None:
            return MatchResult.empty(notes + [why])
        log.debug("cfog: %d / %d matches kept (%s)", int(keep.sum()), len(final), why)
        return MatchResult(
            final.ref_xy[keep].copy(),
            final.mov_xy[keep].copy(),
            final.confidence[keep].astype(np.float64),
            tuple(notes + [why]),
        )

    def _consistent(self, m: _Matches) -> tuple[np.ndarray | None, str]:
        """Mask of the matches consistent with one homography (a translation if they are collinear), or None and why."""
        cfg = self.config
        if len(m) < cfg.min_inliers:
            return None, f"cfog: only {len(m)} matches, fewer than min_inliers={cfg.min_inliers}"
        if _well_spread(m.ref_xy):
            H, inl = cv2.findHomography(m.ref_xy, m.mov_xy, cv2.USAC_MAGSAC, cfg.ransac_threshold)
            if H is None or inl is None:
                return None, "cfog: no consistent homography among the matches"
            keep = inl.ravel().astype(bool)
            why = f"cfog: {int(keep.sum())} homography inliers (MAGSAC, {cfg.ransac_threshold:g}px)"
            pred_xy = None
            if keep.sum() >= cfg.min_inliers and _well_spread(m.ref_xy[keep]):
                H2, _ = cv2.findHomography(m.ref_xy[keep], m.mov_xy[keep], 0)  # least-squares refit on the inliers
                pred_xy = _apply(H2, m.ref_xy) if H2 is not None else None
        else:
            # Matches along a line (e.g. a thin image strip) only determine a translation.
            d = m.mov_xy - m.ref_xy
            med = np.median(d, axis=0)
            keep = np.linalg.norm(d - med, axis=1) <= cfg.ransac_threshold
            why = f"cfog: {int(keep.sum())} translation inliers ({cfg.ransac_threshold:g}px; matches nearly collinear)"
            pred_xy = m.ref_xy + (d[keep].mean(axis=0) if keep.any() else med)
        if cfg.residual_sigmas > 0 and keep.sum() >= cfg.min_inliers and pred_xy is not None:
            # MAGSAC's threshold is generous (real pairs carry a few px of local distortion); matches far
            # outside the noise level of the other inliers are still wrong peaks. Cut at residual_sigmas
            # robust sigmas of the refitted model (2-D residual norm: median = 1.1774 sigma).
            r = np.linalg.norm(pred_xy - m.mov_xy, axis=1)
            sigma = float(np.median(r[keep])) / 1.1774
            cut = max(cfg.min_residual_cut, cfg.residual_sigmas * sigma)
            keep &= r <= cut
            why += f", {int(keep.sum())} within {cut:.2f}px of the refit"
        if keep.sum() < cfg.min_inliers:
            return None, f"cfog: {int(keep.sum())} consistent matches, fewer than min_inliers={cfg.min_inliers}"
        return keep, why

    def _pass(self, ref: _Prepared, mov: _Prepared, A: np.ndarray, radius: int, centres: np.ndarray | None = None) -> _Matches:
        """Warp mov onto ref with A (ref -> mov, level coords), match templates (at `centres` [N, 2] (row, col),
        default Harris corners), express matches in mov coords."""
        cfg = self.config
        warped = _warp_to_ref(mov, A, ref.image.shape)
        if not warped.valid.any():
            return _Matches.empty()
        dref = cfog_descriptor(ref.image, ref.valid, cfg)
        dmov = cfog_descriptor(warped.image, warped.valid, cfg)
        if centres is None:
            centres = _select_templates(ref, cfg, cfg.max_templates)
        if len(centres) == 0:
            return _Matches.empty()
        m = _match_templates(_TemplateBank(dref, ref.valid, centres, cfg.template_size, radius), dmov, warped.valid, centres, cfg)
        if len(m) == 0:
            return m
        mov_xy = _apply(A, m.mov_xy)
        # The match must land on valid mov pixels (nodata there would make it meaningless).
        hm, wm = mov.valid.shape
        ix = np.clip(np.rint(mov_xy[:, 0]).astype(int), 0, wm - 1)
        iy = np.clip(np.rint(mov_xy[:, 1]).astype(int), 0, hm - 1)
        inside = (mov_xy[:, 0] >= -0.5) & (mov_xy[:, 0] <= wm - 0.5) & (mov_xy[:, 1] >= -0.5) & (mov_xy[:, 1] <= hm - 0.5)
        ok = inside & mov.valid[iy, ix]
        return _Matches(m.ref_xy, mov_xy, m.score, m.ratio, m.sharp).subset(ok)

    def _initial_model(self, ref: _Prepared, mov: _Prepared, f: int) -> np.ndarray | None:
        """Full-resolution affine ref -> mov from the coarsest level, or None if nothing matched."""
        cfg = self.config
        rl, ml = _downsample(ref, f), _downsample(mov, f)
        dref = cfog_descriptor(rl.image, rl.valid, cfg)
        dmov = cfog_descriptor(ml.image, ml.valid, cfg)
        centres = _select_templates(rl, cfg, cfg.coarse_max_templates)
        if len(centres) == 0:
            return None
        bank = _TemplateBank(dref, rl.valid, centres, cfg.template_size, cfg.coarse_search_radius)
        best: tuple[int, float, np.ndarray] | None = None
        for dy, dx in _global_offsets(dref, rl.valid, dmov, ml.valid, cfg):
            m = _match_templates(bank, dmov, ml.valid, centres + np.array([dy, dx]), cfg)
            A0 = np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])
            A, n_inl = _fit_affine(m, A0, thr=1.5)
            support = float(m.score.sum()) if len(m) else 0.0
            log.debug("cfog: global candidate (%d, %d): %d matches, %d inliers", dy, dx, len(m), n_inl)
            if best is None or (n_inl, support) > (best[0], best[1]):
                best = (n_inl, support, A)
            if n_inl >= max(cfg.min_inliers, 0.3 * len(centres)):
                break  # clearly right: the other phase-correlation peaks are not worth their cost
        if best is None or best[0] == 0:
            return None
        return _to_full(best[2], f)
