"""The shipped weights on CPU and on CUDA give the same registration (run on a GPU machine).

    python scripts/device_agreement.py [--size 512]

One textured scene and a copy of it under a known homography go through `Matcher.match` on both devices; prints
the number of tie points, how many agree within 0.1 px, and each device's homography error against the truth.
"""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import torch

from geomreg.matching.api import Matcher


def scene(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    img = sum(cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), s) * s for s in (1, 3, 9))
    ref = (255 * (img - img.min()) / np.ptp(img)).astype(np.uint8)
    c = size / 2
    H = np.array([[np.cos(0.1), -np.sin(0.1), 0], [np.sin(0.1), np.cos(0.1), 0], [2e-5, 0, 1.0]])
    H = np.array([[1, 0, c + 7.3], [0, 1, c - 4.1], [0, 0, 1.0]]) @ H @ np.array([[1, 0, -c], [0, 1, -c], [0, 0, 1.0]])
    mov = cv2.warpPerspective(ref, np.linalg.inv(H), (size, size))  # mov pixel p shows ref pixel H p
    return ref, mov, H


def grid_error(H_est: np.ndarray | None, H_true: np.ndarray, size: int) -> float:
    if H_est is None:
        return float("inf")
    g = np.stack(np.meshgrid(np.linspace(0, size - 1, 10), np.linspace(0, size - 1, 10)), -1).reshape(-1, 1, 2)
    d = cv2.perspectiveTransform(g, H_est) - cv2.perspectiveTransform(g, H_true)
    return float(np.sqrt((d**2).sum(-1).mean()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args()
    ref, mov, H = scene(args.size)
    out = {}
    for dev in ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",):
        res = Matcher.from_pretrained(device=dev).match(ref, mov)
        H_est, _ = cv2.findHomography(res.mov_xy, res.ref_xy, cv2.USAC_MAGSAC, 3.0)
        out[dev] = res
        print(f"{dev}: {len(res.ref_xy)} tie points, homography grid RMSE {grid_error(H_est, H, args.size):.3f} px")
    if len(out) == 2:
        a, b = out["cpu"], out["cuda"]
        n = min(len(a.ref_xy), len(b.ref_xy))
        same = len(a.ref_xy) == len(b.ref_xy)
        close = int((np.maximum(np.linalg.norm(a.ref_xy[:n] - b.ref_xy[:n], axis=1), np.linalg.norm(a.mov_xy[:n] - b.mov_xy[:n], axis=1)) < 0.1).sum()) if same else 0
        print(f"as many tie points on both devices: {same}; tie points within 0.1 px: {close} of {n}")


if __name__ == "__main__":
    main()
