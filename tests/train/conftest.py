from pathlib import Path

import cv2
import numpy as np
import pytest


def _texture(rng, size):
    img = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), 2.0)
    for _ in range(12):
        x0, y0 = rng.integers(0, size, 2)
        cv2.rectangle(img, (int(x0), int(y0)), (int(x0) + int(rng.integers(8, 40)), int(y0) + int(rng.integers(8, 40))), float(rng.random()), -1)
    return (255 * (img - img.min()) / (np.ptp(img) + 1e-6)).astype(np.uint8)


@pytest.fixture()
def tiny_dataset(tmp_path: Path) -> Path:
    """A dataset directory in the MANIFEST.csv format: 4 pairs, mov = ref shifted by a known translation."""
    rng = np.random.default_rng(0)
    rows = ["pair_id,modality,ref_path,mov_path,aligned,gt,width,height"]
    for k in range(4):
        mod = "opt-sar" if k % 2 else "vis-ir"
        d = tmp_path / mod / f"p{k}"
        d.mkdir(parents=True)
        ref = _texture(rng, 96)
        tx, ty = 3.0 + k, -2.0
        M = np.float32([[1, 0, -tx], [0, 1, -ty]])  # mov(x) = ref(x + t): mov -> ref is +t
        mov = cv2.warpAffine(ref, M, (96, 96), flags=cv2.INTER_LINEAR)
        cv2.imwrite(str(d / "ref.jpg"), ref)
        cv2.imwrite(str(d / "mov.jpg"), 255 - mov)
        np.savetxt(d / "H_mov_to_ref.txt", np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1.0]]), header="translation")
        rows.append(f"p{k},{mod},{mod}/p{k}/ref.jpg,{mod}/p{k}/mov.jpg,no,{mod}/p{k}/H_mov_to_ref.txt,96,96")
    (tmp_path / "MANIFEST.csv").write_text("\n".join(rows) + "\n")
    return tmp_path
