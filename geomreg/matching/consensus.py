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
import torch.nn.functional as F

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
) -> np.ndarray:
    """The A -> B homography [3, 3] near ``H`` under which the heatmaps agree most; ``H`` itself when no
    better one is found (too few matches, a non-finite step)."""
    if len(xy_a) < 8:
        return H
    radius = heat.shape[-1] // 2
    a = xy_a.double().cpu()
    a1 = torch.cat([a, torch.ones(len(a), 1, dtype=torch.float64)], dim=1)  # [K, 3]
    c = centre.double().cpu()
    hm = heat.double().cpu()[:, None]  # [K, 1, w, w]
    T = _normaliser(a)
    H0 = torch.from_numpy(np.asarray(H, np.float64)) @ torch.linalg.inv(T)  # acts on normalised A points
    delta = torch.zeros(8, dtype=torch.float64, requires_grad=True)

    def homography(d: torch.Tensor) -> torch.Tensor:
        D = torch.eye(3, dtype=torch.float64) + torch.cat([d, d.new_zeros(1)]).view(3, 3)
        return H0 @ D @ T

    def cost(d: torch.Tensor) -> torch.Tensor:
        q = a1 @ homography(d).T  # [K, 3]
        q = q[:, :2] / q[:, 2:3]
        u = pixel_to_fine(q) - c  # [K, 2] fine cells from each window's centre
        grid = (u / radius).view(-1, 1, 1, 2)  # grid_sample's [-1, 1] spans the window
        p = F.grid_sample(hm, grid, mode="bilinear", padding_mode="zeros", align_corners=True).view(-1)
        return -torch.log(p + floor).mean()

    opt = torch.optim.LBFGS([delta], lr=0.5, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = cost(delta)
        loss.backward()
        return loss

    with torch.enable_grad():
        start = float(cost(delta.detach()))
        opt.step(closure)
        end = float(cost(delta.detach()))
    out = homography(delta.detach()).numpy()
    if not np.all(np.isfinite(out)) or not end <= start:
        return H
    return out / out[2, 2]


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
    w = heat.shape[-1]
    r = w // 2
    a = xy_a.double().cpu().numpy()
    predicted = torch.from_numpy(cv2.perspectiveTransform(a[None], np.asarray(H, np.float64))[0])  # [K, 2] pixels
    c = torch.round(pixel_to_fine(predicted) - centre.double().cpu()).long()  # [K, 2] cells from the centre
    keep = (c.abs() <= r - 1).all(dim=1)
    ix, iy = (c[:, 0] + r).clamp(1, w - 2), (c[:, 1] + r).clamp(1, w - 2)  # window indices (column, row)
    log_heat = torch.log(heat.double().cpu() + 1e-9)
    k = torch.arange(len(a))
    vertex = torch.zeros(len(a), 2, dtype=torch.float64)
    for axis, (dx, dy) in enumerate(((1, 0), (0, 1))):
        minus, mid, plus = log_heat[k, iy - dy, ix - dx], log_heat[k, iy, ix], log_heat[k, iy + dy, ix + dx]
        curvature = minus - 2 * mid + plus  # < 0 where the log-heatmap bends down (a peak nearby)
        peaked = curvature < -1e-6
        shift = torch.where(peaked, 0.5 * (minus - plus) / torch.where(peaked, curvature, -torch.ones_like(curvature)), 0.0)
        vertex[:, axis] = shift.clamp(-radius, radius)
    xy_b = fine_to_pixel(centre.double().cpu() + c + vertex)
    return xy_b.to(xy_a.dtype).to(xy_a.device), keep.to(xy_a.device)
