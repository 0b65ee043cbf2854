"""Guided matching for a batch of tiles in torch, on the device: no per-tile host round trip.

The procedure is the one of geomreg/matching/guided.py (read its docstring for why each step is there); only
where the arithmetic runs changes:

- the robust first-pass homography of every tile is fitted at once (``fit_homographies``): a fixed budget of
  4-point hypotheses drawn by a seeded generator, scored with a truncated-quadratic (MSAC) loss, the best one
  polished by iteratively reweighted least squares on its inliers. OpenCV's MAGSAC (the cv2 backend) runs one
  tile at a time on the host in float64 and stops when it is confident; this runs every tile for the same
  number of hypotheses, which is what lets a GPU do them together;
- the heatmap consensus of every tile is one damped-Newton problem per tile, solved together
  (``consensus_homographies``; the cv2 backend runs L-BFGS one tile at a time);
- positions near the consensus are read for all tiles in one pass (``positions_near_batched``).

The host synchronises a handful of times per batch (the longest tile's match count, whether any tile got a
guide), never per tile. Matches are padded to [tiles, K] with a mask; padded slots carry no weight anywhere.
"""

from __future__ import annotations

import logging
from dataclasses import replace

import torch
from einops import rearrange
from torch.func import grad, hessian, vmap

from geomreg.matching.consensus import vertex_positions
from geomreg.matching.fine import anchor_fine_xy
from geomreg.matching.model import Correspondences, FineAt, RegNetMamba2, RegNetOutput, pixel_to_fine

log = logging.getLogger(__name__)

# Hypotheses scored per tensor op: bounds the [tiles, hypotheses, K] residual tensor.
_HYPOTHESIS_BLOCK = 128


# ---------------------------------------------------------------- padding


def pad_by_tile(batch: torch.Tensor, n_tiles: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Slots of flat matches in a [n_tiles, K] layout: each tile's matches first, in their order.

    batch [M] tile of each match -> (tile [M], slot [M], mask [n_tiles, K]); K is the largest count (one sync).
    """
    M = batch.shape[0]
    counts = torch.bincount(batch, minlength=n_tiles)  # [n_tiles]
    K = max(int(counts.max()), 1) if M else 1
    order = torch.argsort(batch, stable=True)
    start = torch.cumsum(counts, 0) - counts  # first flat position of each tile once sorted
    slot = torch.empty_like(batch)
    slot[order] = torch.arange(M, device=batch.device) - start[batch[order]]
    mask = torch.arange(K, device=batch.device)[None] < counts[:, None]  # [n_tiles, K]
    return batch, slot, mask


def scatter_pad(values: torch.Tensor, tile: torch.Tensor, slot: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """values [M, ...] -> [n_tiles, K, ...] (zeros in padded slots)."""
    out = values.new_zeros(mask.shape + values.shape[1:])
    out[tile, slot] = values
    return out


# ---------------------------------------------------------------- homographies


def apply_homography(H: torch.Tensor, xy: torch.Tensor) -> torch.Tensor:
    """H [..., 3, 3], xy [..., K, 2] -> [..., K, 2] (H broadcast over the leading dims)."""
    q = xy @ H[..., :2, :2].transpose(-1, -2) + H[..., None, :2, 2]
    w = (xy @ H[..., 2:3, :2].transpose(-1, -2)) + H[..., None, 2:3, 2]
    return q / w


def _normaliser(xy: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """[T, K, 2], [T, K] -> [T, 3, 3] similarities taking each tile's points to zero mean and unit spread."""
    m = mask[..., None].to(xy.dtype)
    n = m.sum(1).clamp_min(1.0)  # [T, 1]
    mu = (xy * m).sum(1) / n  # [T, 2]
    sc = (((xy - mu[:, None]) ** 2 * m).sum((1, 2)) / (2 * n[:, 0])).sqrt().clamp_min(1e-6)  # [T]
    T = torch.zeros(xy.shape[0], 3, 3, dtype=xy.dtype, device=xy.device)
    T[:, 0, 0] = T[:, 1, 1] = 1 / sc
    T[:, :2, 2] = -mu / sc[:, None]
    T[:, 2, 2] = 1
    return T


def _dlt_rows(src: torch.Tensor, dst: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Linear equations of H (h33 = 1) for src -> dst: [..., K, 2] -> A [..., 2K, 8], b [..., 2K]."""
    x, y = src.unbind(-1)
    u, v = dst.unbind(-1)
    one, zero = torch.ones_like(x), torch.zeros_like(x)
    ru = torch.stack([x, y, one, zero, zero, zero, -u * x, -u * y], dim=-1)
    rv = torch.stack([zero, zero, zero, x, y, one, -v * x, -v * y], dim=-1)
    A = rearrange(torch.stack([ru, rv], dim=-2), "... k two e -> ... (k two) e")
    b = rearrange(torch.stack([u, v], dim=-1), "... k two -> ... (k two)")
    return A, b


def _to_matrix(h: torch.Tensor) -> torch.Tensor:
    """[..., 8] -> [..., 3, 3] with h33 = 1."""
    return torch.cat([h, torch.ones_like(h[..., :1])], dim=-1).unflatten(-1, (3, 3))


def _weighted_fit(src: torch.Tensor, dst: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted least-squares homographies [T, 3, 3] (normalised coordinates) and whether each solve worked."""
    A, b = _dlt_rows(src, dst)  # [T, 2K, 8], [T, 2K]
    w2 = w.repeat_interleave(2, dim=-1)  # [T, 2K]
    AtA = A.transpose(-1, -2) @ (A * w2[..., None])
    Atb = (A.transpose(-1, -2) @ (b * w2)[..., None])[..., 0]
    AtA = AtA + 1e-12 * torch.eye(8, dtype=A.dtype, device=A.device)  # a no-op unless degenerate
    h, info = torch.linalg.solve_ex(AtA, Atb)
    return _to_matrix(h), info == 0


def fit_homographies(
    src: torch.Tensor,  # [T, K, 2] pixel (x, y) in A, each tile's matches first
    dst: torch.Tensor,  # [T, K, 2] in B
    mask: torch.Tensor,  # [T, K] bool, real matches
    threshold_px: float,
    min_inliers: int,
    *,
    hypotheses: int = 1024,
    refits: int = 3,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Robust src -> dst homographies of a batch of tiles. Returns H [T, 3, 3] (float64, pixels) and ok [T]
    (at least ``min_inliers`` matches within ``threshold_px`` of a finite model; H is the identity where not).

    Hypotheses are 4 matches drawn uniformly (with replacement: a repeated draw is a degenerate hypothesis that
    scores nothing) from ``generator``; the same generator state gives the same homographies.
    """
    dev = src.device
    src, dst = src.double(), dst.double()
    T_, K = mask.shape
    n = mask.sum(1)  # [T]
    Ts, Td = _normaliser(src, mask), _normaliser(dst, mask)
    s, d = apply_homography(Ts, src), apply_homography(Td, dst)  # normalised points
    thr = threshold_px * Td[:, 0, 0]  # [T] the pixel threshold in B's normalised units
    thr2 = (thr**2)[:, None, None]

    best_score = torch.full((T_,), -1.0, dtype=torch.float64, device=dev)
    best_H = torch.eye(3, dtype=torch.float64, device=dev).repeat(T_, 1, 1)
    for start in range(0, hypotheses, _HYPOTHESIS_BLOCK):
        I = min(_HYPOTHESIS_BLOCK, hypotheses - start)
        u = torch.rand(T_, I, 4, generator=generator, dtype=torch.float64, device="cpu" if generator is None else generator.device).to(dev)
        idx = (u * n[:, None, None]).long().clamp(max=K - 1)  # [T, I, 4], within each tile's real matches
        pick = lambda p: torch.gather(p[:, None].expand(T_, I, K, 2), 2, idx[..., None].expand(T_, I, 4, 2))  # noqa: E731
        A, b = _dlt_rows(pick(s), pick(d))  # [T, I, 8, 8], [T, I, 8]
        h, info = torch.linalg.solve_ex(A, b)
        Hn = _to_matrix(h)  # [T, I, 3, 3]
        r2 = ((apply_homography(Hn, s[:, None]) - d[:, None]) ** 2).sum(-1)  # [T, I, K]
        score = ((1 - r2 / thr2).clamp_min(0) * mask[:, None]).nan_to_num(0.0).sum(-1)  # MSAC: truncated quadratic
        score = torch.where((info == 0) & torch.isfinite(Hn).all((-1, -2)), score, -1.0)
        top, arg = score.max(dim=1)
        better = top > best_score
        best_score = torch.where(better, top, best_score)
        best_H = torch.where(better[:, None, None], Hn[torch.arange(T_, device=dev), arg], best_H)

    # Iteratively reweighted least squares on the best hypothesis' inliers (Tukey-like weights).
    Hn = best_H
    for _ in range(refits):
        r2 = ((apply_homography(Hn, s) - d) ** 2).sum(-1).nan_to_num(float("inf"))  # [T, K]
        w = ((1 - r2 / thr2[:, :, 0]).clamp_min(0) ** 2) * mask
        refit, solved = _weighted_fit(s, d, w)
        use = solved & torch.isfinite(refit).all((-1, -2)) & ((w > 0).sum(1) >= 4)
        Hn = torch.where(use[:, None, None], refit, Hn)
    r2 = ((apply_homography(Hn, s) - d) ** 2).sum(-1).nan_to_num(float("inf"))
    inliers = ((r2 < thr2[:, :, 0]) & mask).sum(1)
    H = torch.linalg.inv(Td) @ Hn @ Ts
    H = H / H[:, 2:3, 2:3]
    ok = (n >= max(min_inliers, 4)) & (inliers >= min_inliers) & torch.isfinite(H).all((-1, -2)) & (best_score > 0)
    eye = torch.eye(3, dtype=H.dtype, device=dev).expand_as(H)
    return torch.where(ok[:, None, None], H, eye), ok


# ---------------------------------------------------------------- heatmap consensus


def _bilinear_zero(heat: torch.Tensor, X: torch.Tensor, Y: torch.Tensor) -> torch.Tensor:
    """grid_sample(bilinear, zeros, align_corners=True) at window indices (X column, Y row) of heat [K, w, w]."""
    w = heat.shape[-1]
    flat = heat.reshape(heat.shape[0], w * w)
    x0, y0 = torch.floor(X), torch.floor(Y)
    fx, fy = X - x0, Y - y0
    out = torch.zeros_like(X)
    for dx, dy, wt in ((0, 0, (1 - fx) * (1 - fy)), (1, 0, fx * (1 - fy)), (0, 1, (1 - fx) * fy), (1, 1, fx * fy)):
        cx, cy = x0 + dx, y0 + dy
        inside = (cx >= 0) & (cx <= w - 1) & (cy >= 0) & (cy <= w - 1)
        i = (cy.clamp(0, w - 1) * w + cx.clamp(0, w - 1)).long()
        v = torch.gather(flat, 1, i[:, None])[:, 0]
        out = out + torch.where(inside, wt * v, torch.zeros_like(v))
    return out


def _consensus_cost(d, H0, Tn, a1, c, heat, m, floor: float):
    """One tile's cost -mean log(p(H(a)) + floor) over its real matches; d [8] perturbs H0 in normalised A."""
    D = torch.eye(3, dtype=d.dtype, device=d.device) + torch.cat([d, d.new_zeros(1)]).view(3, 3)
    q = a1 @ (H0 @ D @ Tn).T  # [K, 3]
    q = q[:, :2] / q[:, 2:3]
    r = heat.shape[-1] // 2
    u = pixel_to_fine(q) - c + r  # window indices (column, row)
    p = _bilinear_zero(heat, u[:, 0], u[:, 1])
    return -(torch.log(p + floor) * m).sum() / m.sum().clamp_min(1.0)


def consensus_homographies(
    H: torch.Tensor,  # [T, 3, 3] A -> B pixel homographies to start from
    ok: torch.Tensor,  # [T] bool: tiles that have one
    xy_a: torch.Tensor,  # [T, K, 2] pixel (x, y) in A of each match's anchor
    centre: torch.Tensor,  # [T, K, 2] fine (x, y) index of each match's window in B
    heat: torch.Tensor,  # [T, K, w, w] fine heatmaps
    mask: torch.Tensor,  # [T, K]
    *,
    floor: float = 0.01,
    iterations: int = 30,
) -> torch.Tensor:
    """The homographies near ``H`` under which each tile's heatmaps agree most (the objective of
    geomreg.matching.consensus.consensus_homography), by damped Newton steps taken only where they lower the
    tile's cost. A tile with fewer than 8 matches, or not ``ok``, keeps its ``H``."""
    dt = torch.float64
    a, c, hm, m = xy_a.to(dt), centre.to(dt), heat.to(dt), mask.to(dt)
    a1 = torch.cat([a, torch.ones_like(a[..., :1])], dim=-1)  # [T, K, 3]
    Tn = _normaliser(a, mask)
    H0 = H.to(dt) @ torch.linalg.inv(Tn)
    args = (H0, Tn, a1, c, hm, m)

    def cost_fn(d, *rest):
        return _consensus_cost(d, *rest, floor)

    cost = vmap(cost_fn)
    gradient, curvature = vmap(grad(cost_fn)), vmap(hessian(cost_fn))
    d = torch.zeros(H.shape[0], 8, dtype=dt, device=H.device)
    current = cost(d, *args)
    start = current
    lam = torch.full_like(current, 1e-3)
    eye = torch.eye(8, dtype=dt, device=H.device)
    for _ in range(iterations):
        g, Hs = gradient(d, *args), curvature(d, *args)
        Hs = 0.5 * (Hs + Hs.transpose(-1, -2))
        # Shift the curvature to positive definite (the log-heatmap is not convex), then damp by lam.
        shift = (-torch.linalg.eigvalsh(Hs)[..., 0]).clamp_min(0.0)
        scale = Hs.diagonal(dim1=-2, dim2=-1).abs().mean(-1).clamp_min(1e-12)
        step, _ = torch.linalg.solve_ex(Hs + (shift + lam * scale + 1e-12)[:, None, None] * eye, -g)
        trial = d + step
        new = cost(trial, *args)
        better = torch.isfinite(new) & (new < current)
        d = torch.where(better[:, None], trial, d)
        current = torch.where(better, new, current)
        lam = torch.where(better, lam * 0.3, lam * 10).clamp(1e-9, 1e9)
    D = eye[:3, :3] + torch.cat([d, d.new_zeros(d.shape[0], 1)], dim=1).view(-1, 3, 3)
    out = H0 @ D @ Tn
    out = out / out[:, 2:3, 2:3]
    use = ok & (mask.sum(1) >= 8) & torch.isfinite(out).all((-1, -2)) & (current <= start)
    return torch.where(use[:, None, None], out, H.to(dt))


def positions_near_batched(
    H: torch.Tensor,  # [T, 3, 3] A -> B pixel homographies (the consensus)
    tile: torch.Tensor,  # [M] tile of each match
    xy_a: torch.Tensor,  # [M, 2]
    centre: torch.Tensor,  # [M, 2] fine (x, y) index of each window
    heat: torch.Tensor,  # [M, w, w]
    radius: float,  # fine cells
) -> tuple[torch.Tensor, torch.Tensor]:
    """geomreg.matching.consensus.positions_near for matches of many tiles at once (each read near its own
    tile's H). Returns xy_b [M, 2] and keep [M]."""
    if xy_a.shape[0] == 0:
        return xy_a.clone(), torch.zeros(0, dtype=torch.bool, device=xy_a.device)
    dt = torch.float64
    predicted = apply_homography(H.to(dt)[tile], xy_a.to(dt)[:, None])[:, 0]  # [M, 2] pixels
    xy_b, keep = vertex_positions(predicted, centre.to(dt), heat.to(dt), radius)
    return xy_b.to(xy_a.dtype), keep


# ---------------------------------------------------------------- the guided pass


def _seeded(device: torch.device) -> torch.Generator:
    # Seeded per call, as the cv2 guide is (cv2.setRNGSeed(0)): the same matches give the same guides.
    return torch.Generator(device=device).manual_seed(0)


def _consensus_on(H, ok, padding, xy_a, centre, heat, floor):
    """consensus_homographies of matches laid out by ``padding`` (pad_by_tile's (tile, slot, mask))."""
    pad = lambda v: scatter_pad(v, *padding)  # noqa: E731
    return consensus_homographies(H, ok, pad(xy_a), pad(centre), pad(heat.float()), padding[2], floor=floor)


def guided_matches_batched(model: RegNetMamba2, out: RegNetOutput, valid_b: torch.Tensor, cfg) -> Correspondences:
    """geomreg.matching.guided.guided_matches with every tile's fits on the device at once (cfg: GuideConfig)."""
    first = out.matches
    n_tiles = valid_b.shape[0]
    padding = pad_by_tile(first.batch, n_tiles)
    pad = lambda v: scatter_pad(v, *padding)  # noqa: E731
    H, ok = fit_homographies(pad(first.xy_a.double()), pad(first.xy_b.double()), padding[2], cfg.threshold_px,
                             cfg.min_inliers, hypotheses=cfg.hypotheses, generator=_seeded(first.xy_a.device))
    if not bool(ok.any()):
        return first
    if cfg.consensus_first and cfg.consensus_rounds > 0:
        centre = anchor_fine_xy(out.fine_matches.idx_b, out.hw8[1])
        H = _consensus_on(H, ok, padding, first.xy_a, centre, out.fine.heatmap, cfg.consensus_floor)
    at = _fine_around(model, out, valid_b, H, ok)
    read_near = cfg.consensus_rounds > 0 and cfg.consensus_radius > 0
    for k in range(cfg.consensus_rounds):
        m = at.matches
        H = _consensus_on(H, ok, pad_by_tile(m.batch, n_tiles), m.xy_a, at.centre, at.fine.heatmap, cfg.consensus_floor)
        if not (read_near and k == cfg.consensus_rounds - 1):
            at = _fine_around(model, out, valid_b, H, ok)
    if read_near:
        m = at.matches
        xy_b, keep = positions_near_batched(H, m.batch, m.xy_a, at.centre, at.fine.heatmap, cfg.consensus_radius)
        refined = replace(m, xy_b=xy_b).subset(keep)
    else:
        refined = at.matches
    return refined.cat(first.subset(~ok[first.batch]))  # tiles without a guide keep their first pass


def _fine_around(model: RegNetMamba2, out: RegNetOutput, valid_b: torch.Tensor, H: torch.Tensor, ok: torch.Tensor) -> FineAt:
    """The fine stage on the guided tiles' first-pass matches, B's windows where each tile's H puts A's anchor."""
    first = out.matches
    guided = ok[first.batch]
    moved = apply_homography(H[first.batch], first.xy_a.double()[:, None])[:, 0].to(first.xy_b.dtype)
    predicted = torch.where(guided[:, None], moved, first.xy_b)
    h, w = valid_b.shape[-2:]
    px = torch.round(predicted).long()
    inside = (px[:, 0] >= 0) & (px[:, 1] >= 0) & (px[:, 0] < w) & (px[:, 1] < h) & torch.isfinite(predicted).all(1)
    pxc = torch.stack([px[:, 0].clamp(0, w - 1), px[:, 1].clamp(0, h - 1)], dim=1)
    on_valid = inside & valid_b[first.batch, 0, pxc[:, 1], pxc[:, 0]]
    return model.fine_at(out, predicted, keep=guided & on_valid)
