"""Heatmap consensus: the homography that the fine stage's heatmaps, taken together, find most likely.

Why: the fine stage's heatmaps are broad (peak probability about 0.1-0.2), so each match's arg-max position is
good to a few px at best, and a robust fit to those positions inherits their errors. On the validation split
the guides of failed pairs missed by 3-5 px, and the matches agreed with the miss: a least-squares fit to only
the matches within 6 px of the truth still registered 0.91 of the instances at 3 px, not all of them. A broad
heatmap still says where the truth is *not*; the product of a few hundred of them is sharp. So instead of
fitting positions, this finds the homography H that maximises

    sum_i log(p_i(H(a_i)) + floor)

where p_i is match i's heatmap over its window of B (bilinear between fine cells) and a_i its anchor in A. The
floor bounds what a wrong match can cost (a heatmap is a softmax over 49 cells, so 1/49 = 0.02 is a flat one):
it makes the sum a robust consensus rather than a least-squares one. Starting from the guide, L-BFGS moves H
by a few px; windows only cover +-3 fine px (+-6 px), so it can only correct a guide that is nearly right,
which is the case it is for.

The offline measurement behind it is in docs/benchmarks.md ("Defaults and why").
"""

from __future__ import annotations

import cv2
import numpy as np
import torch

from geomreg.matching.model import fine_to_pixel, pixel_to_fine


def _normaliser(xy: torch.Tensor) -> torch.Tensor:
    """[3, 3] similarity taking points to zero mean and unit spread (conditions the 8 parameters alike)."""
    mu, sc = xy.mean(0), xy.std().clamp_min(1e-6)
    return xy.new_tensor([[1 / sc, 0, -mu[0] / sc], [0, 1 / sc, -mu[1] / sc], [0, 0, 1]])


def consensus_homography(
    H: np.ndarray,  # [3, 3] A -> B pixel homography to start from (the guide)
    xy_a: torch.Tensor,  # [K, 2] pixel (x, y) in A of each match's anchor
    centre: torch.Tensor,  # [K, 2] fine (x, y) index of each match's window in B
    heat: torch.Tensor,  # [K, w, w] fine heatmaps (rows y, columns x; each sums to 1)
    *,
    floor: float = 0.01,
    max_iter: int = 100,
    tolerance: float = 1e-7,
) -> np.ndarray:
    """The A -> B homography [3, 3] near ``H`` under which the heatmaps agree most; ``H`` itself when no
    better one is found (too few matches, a non-finite step)."""
    if len(xy_a) < 8:
        return H
    cost = HeatmapCost(H, xy_a, centre, heat, floor)
    delta = torch.zeros(8, dtype=torch.float64, requires_grad=True)
    # L-BFGS stops once the cost (or the step) changes by less than ``tolerance``. At torch's 1e-9 more than half
    # of the evaluations moved the homography along directions the heatmaps leave flat (median 0.003 px over a
    # 500 px grid on validation pairs; the validation table is unchanged: docs/benchmarks.md, "Defaults and why").
    opt = torch.optim.LBFGS([delta], lr=0.5, max_iter=max_iter, tolerance_change=tolerance, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        # The gradient is written out (HeatmapCost.value_and_grad): autograd's bookkeeping cost several times
        # the arithmetic on a few hundred heatmaps, and L-BFGS calls this ~100 times per pair.
        loss, grad = cost.value_and_grad(delta.detach().numpy())
        delta.grad = torch.from_numpy(grad)
        return torch.tensor(loss, dtype=torch.float64)

    start = cost.value_and_grad(np.zeros(8))[0]
    opt.step(closure)
    d = delta.detach().numpy()
    end = cost.value_and_grad(d)[0]
    out = cost.homography(d)
    if not np.all(np.isfinite(out)) or not end <= start:
        return H
    return out / out[2, 2]


class HeatmapCost:
    """-mean_i log(p_i(H(a_i)) + floor) over the 8 parameters d of H(d) = H0 (I + D(d)) T, and its gradient.

    p_i is match i's heatmap read bilinearly (zero outside the window), as ``F.grid_sample`` with
    ``align_corners=True`` reads it; T normalises the anchors, so the parameters act alike.
    """

    def __init__(self, H: np.ndarray, xy_a: torch.Tensor, centre: torch.Tensor, heat: torch.Tensor, floor: float) -> None:
        a = xy_a.double().cpu()
        T = _normaliser(a)
        self.T = T.numpy()
        self.H0 = np.asarray(H, np.float64) @ np.linalg.inv(self.T)  # acts on normalised A points
        self.anchors = np.concatenate([a.numpy(), np.ones((len(a), 1))], axis=1) @ self.T.T  # [K, 3] normalised
        self.origin = pixel_to_fine(torch.zeros(2, dtype=torch.float64)).numpy()  # fine index of pixel (0, 0)
        self.per_pixel = float(pixel_to_fine(torch.ones(2, dtype=torch.float64))[0]) - float(self.origin[0])
        self.heat = heat.double().cpu().numpy()  # [K, w, w]
        self.window = centre.double().cpu().numpy() - heat.shape[-1] // 2  # [K, 2] fine index of each window's cell (0, 0)
        self.floor = floor

    def homography(self, d: np.ndarray) -> np.ndarray:
        return self.H0 @ (np.eye(3) + np.append(d, 0.0).reshape(3, 3)) @ self.T

    def value_and_grad(self, d: np.ndarray) -> tuple[float, np.ndarray]:
        K, w = len(self.heat), self.heat.shape[-1]
        D = np.eye(3) + np.append(d, 0.0).reshape(3, 3)
        v = self.anchors @ D.T  # [K, 3]
        q = v @ self.H0.T  # [K, 3] homogeneous B pixels
        xy = q[:, :2] / q[:, 2:3]
        pos = self.origin + xy * self.per_pixel - self.window  # [K, 2] (x, y) in window cells
        lo = np.floor(np.clip(pos, -2.0, w + 1.0))
        f = pos - lo  # bilinear weights (meaningless where clipped: every corner is then outside)
        x0, y0 = lo[:, 0].astype(np.int64), lo[:, 1].astype(np.int64)
        k = np.arange(K)

        def at(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
            inside = (xx >= 0) & (xx < w) & (yy >= 0) & (yy < w)
            return np.where(inside, self.heat[k, np.clip(yy, 0, w - 1), np.clip(xx, 0, w - 1)], 0.0)

        v00, v01, v10, v11 = at(y0, x0), at(y0, x0 + 1), at(y0 + 1, x0), at(y0 + 1, x0 + 1)
        fx, fy = f[:, 0], f[:, 1]
        p = v00 * (1 - fx) * (1 - fy) + v01 * fx * (1 - fy) + v10 * (1 - fx) * fy + v11 * fx * fy
        loss = float(-np.log(p + self.floor).mean())
        dp = np.stack([(1 - fy) * (v01 - v00) + fy * (v11 - v10), (1 - fx) * (v10 - v00) + fx * (v11 - v01)], axis=1)
        g_xy = (-1.0 / (K * (p + self.floor)))[:, None] * dp * self.per_pixel  # [K, 2] dloss / dxy
        g_q = np.concatenate([g_xy / q[:, 2:3], -(g_xy * xy).sum(axis=1, keepdims=True) / q[:, 2:3]], axis=1)  # [K, 3]
        g_D = (g_q @ self.H0).T @ self.anchors  # [3, 3]: dloss / dD[j, k] = sum_i g_v[i, j] anchors[i, k]
        return loss, g_D.ravel()[:8].copy()


def positions_near(
    H: np.ndarray,  # [3, 3] A -> B pixel homography (the consensus)
    xy_a: torch.Tensor,  # [K, 2]
    centre: torch.Tensor,  # [K, 2] fine (x, y) index of each window
    heat: torch.Tensor,  # [K, w, w]
    radius: float,  # fine cells
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each match's position in B, read from its own heatmap at the cell where ``H`` puts its anchor: the vertex
    of a parabola through the log-heatmap there and at its neighbours, per axis, at most ``radius`` cells away.
    Returns xy_b [K, 2] pixels and keep [K] bool (False where that cell has no neighbour inside the window:
    the prediction left it, and the network has nothing to say there).

    Why not the heatmap's own peak: with heatmaps this broad, the peak of a single match is often a few px
    off, and such matches pull a robust fit off too (see the module docstring). Why a parabola on the log: it
    is exact for a Gaussian-shaped heatmap wherever its centre sits between cells, where an expectation over
    the few cells around one of them is pulled toward that cell (by a third of a cell, 0.7 px, half-way
    between cells at this network's spread), which showed as a 0.2 px offset of the registered sample pair.
    """
    if len(xy_a) == 0:  # every window of the pair left B's valid pixels
        return xy_a.clone(), torch.zeros(0, dtype=torch.bool, device=xy_a.device)
    a = xy_a.double().cpu().numpy()
    predicted = torch.from_numpy(cv2.perspectiveTransform(a[None], np.asarray(H, np.float64))[0])  # [K, 2] pixels
    xy_b, keep = vertex_positions(predicted, centre.double().cpu(), heat.double().cpu(), radius)
    return xy_b.to(xy_a.dtype).to(xy_a.device), keep.to(xy_a.device)


def vertex_positions(
    predicted: torch.Tensor,  # [K, 2] float64 pixel (x, y) in B where the model puts each anchor
    centre: torch.Tensor,  # [K, 2] float64 fine (x, y) index of each window
    heat: torch.Tensor,  # [K, w, w] float64
    radius: float,  # fine cells
) -> tuple[torch.Tensor, torch.Tensor]:
    """``positions_near`` once the model's predictions are known, on any device: xy_b [K, 2] float64, keep [K]."""
    w = heat.shape[-1]
    r = w // 2
    c = torch.round(pixel_to_fine(predicted) - centre).long()  # [K, 2] cells from the centre
    keep = (c.abs() <= r - 1).all(dim=1)
    ix, iy = (c[:, 0] + r).clamp(1, w - 2), (c[:, 1] + r).clamp(1, w - 2)  # window indices (column, row)
    log_heat = torch.log(heat + 1e-9)
    k = torch.arange(len(predicted), device=predicted.device)
    vertex = torch.zeros(len(predicted), 2, dtype=torch.float64, device=predicted.device)
    for axis, (dx, dy) in enumerate(((1, 0), (0, 1))):
        minus, mid, plus = log_heat[k, iy - dy, ix - dx], log_heat[k, iy, ix], log_heat[k, iy + dy, ix + dx]
        curvature = minus - 2 * mid + plus  # < 0 where the log-heatmap bends down (a peak nearby)
        peaked = curvature < -1e-6
        shift = torch.where(peaked, 0.5 * (minus - plus) / torch.where(peaked, curvature, -torch.ones_like(curvature)), 0.0)
        vertex[:, axis] = shift.clamp(-radius, radius)
    return fine_to_pixel(centre + c + vertex), keep
