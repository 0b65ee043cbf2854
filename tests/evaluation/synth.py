"""Helpers of the evaluation tests: synthetic scenes and tiny MANIFEST.csv dataset directories."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
# benchmarks/ is a script folder, not an installed package: make `import benchmarks.peers...` work.
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def synthetic_scene(width: int = 256, height: int = 256, seed: int = 0) -> np.ndarray:
    """uint8 grey scene with multi-scale texture plus rectangles and discs: plenty of corners and blobs."""
    rng = np.random.default_rng(seed)
    img = np.zeros((height, width), np.float32)
    for sigma, amp in ((12.0, 60.0), (4.0, 35.0), (1.5, 15.0)):
        img += amp * cv2.GaussianBlur(rng.standard_normal((height, width)).astype(np.float32), (0, 0), sigma) * sigma
    for _ in range(40):
        x0, y0 = int(rng.integers(0, width - 20)), int(rng.integers(0, height - 20))
        w, h = int(rng.integers(6, 40)), int(rng.integers(6, 40))
        cv2.rectangle(img, (x0, y0), (x0 + w, y0 + h), float(rng.uniform(-80, 80)), -1)
    for _ in range(30):
        c = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.circle(img, c, int(rng.integers(3, 12)), float(rng.uniform(-80, 80)), -1)
    img = cv2.GaussianBlur(img, (0, 0), 0.8)
    img = (img - img.min()) / (img.max() - img.min() + 1e-6)
    return np.clip(30 + 200 * img, 0, 255).astype(np.uint8)


def similarity(angle_deg: float, scale: float, tx: float, ty: float, cx: float = 127.5, cy: float = 127.5) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    c, s = scale * np.cos(a), scale * np.sin(a)
    A = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    T0 = np.array([[1.0, 0.0, -cx], [0.0, 1.0, -cy], [0.0, 0.0, 1.0]])
    T1 = np.array([[1.0, 0.0, cx + tx], [0.0, 1.0, cy + ty], [0.0, 0.0, 1.0]])
    return T1 @ A @ T0


def write_pair(root: Path, modality: str, pair_id: str, ref: np.ndarray, mov: np.ndarray, H_mov_to_ref: np.ndarray | str) -> dict:
    d = root / modality / pair_id
    d.mkdir(parents=True, exist_ok=True)
    Image.fromarray(ref).save(d / "ref.png")
    Image.fromarray(mov).save(d / "mov.png")
    h_text = H_mov_to_ref if isinstance(H_mov_to_ref, str) else "# mov -> ref\n" + "\n".join(" ".join(f"{v:.10f}" for v in row) for row in H_mov_to_ref)
    (d / "H_mov_to_ref.txt").write_text(h_text + "\n")
    rel = f"{modality}/{pair_id}"
    return {
        "pair_id": pair_id,
        "modality": modality,
        "ref_path": f"{rel}/ref.png",
        "mov_path": f"{rel}/mov.png",
        "aligned": "no",
        "gt": f"{rel}/H_mov_to_ref.txt",
        "width": ref.shape[1],
        "height": ref.shape[0],
    }


def write_manifest(root: Path, rows: list[dict]) -> None:
    with (root / "MANIFEST.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def two_pair_dataset(root: Path) -> Path:
    """opt-opt: ref = the scene rotated 20 deg and scaled 0.9 (with black wedges); vis-ir: inverted contrast, shifted."""
    root.mkdir(parents=True, exist_ok=True)
    mov = synthetic_scene(seed=1)
    H1 = similarity(20.0, 0.9, 6.0, -4.0)
    ref1 = cv2.warpPerspective(mov, H1, (256, 256), flags=cv2.INTER_LINEAR, borderValue=0)
    scene2 = synthetic_scene(seed=2)
    H2 = np.array([[1.0, 0.0, 5.0], [0.0, 1.0, -3.0], [0.0, 0.0, 1.0]])  # mov -> ref
    mov2 = 255 - cv2.warpPerspective(scene2, np.linalg.inv(H2), (256, 256), borderMode=cv2.BORDER_REFLECT)
    rows = [
        write_pair(root, "opt-opt", "syn_oo_0001", ref1, mov, H1),
        write_pair(root, "vis-ir", "syn_vi_0001", scene2, mov2, H2),
    ]
    write_manifest(root, rows)
    return root
