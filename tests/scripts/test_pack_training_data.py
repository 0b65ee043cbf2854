import importlib.util
from pathlib import Path

import cv2
import numpy as np

_SPEC = importlib.util.spec_from_file_location("pack_training_data", Path(__file__).parents[2] / "scripts" / "pack_training_data.py")
pack = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(pack)


def test_window_pair_keeps_the_ground_truth_exact():
    rng = np.random.default_rng(0)
    ref = cv2.GaussianBlur((rng.random((300, 400)) * 255).astype(np.uint8), (0, 0), 2)
    # mov -> ref: a rotation, scale and shift; mov is ref seen through the inverse
    H = np.array([[0.95, -0.1, 12.0], [0.1, 0.95, -7.0], [0.0, 0.0, 1.0]])
    mov = cv2.warpPerspective(ref, H, (420, 320), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    ref_c, mov_c, H_c = pack.window_pair(ref, mov, H, 128, np.random.default_rng(3))
    assert ref_c.shape == (128, 128)
    assert mov_c.shape[0] < mov.shape[0] and mov_c.shape[1] < mov.shape[1]
    back = cv2.warpPerspective(mov_c, H_c, (128, 128))
    inner = (slice(8, -8), slice(8, -8))
    assert np.abs(back[inner].astype(float) - ref_c[inner].astype(float)).mean() < 3.0


def test_pack_applies_audited_ground_truth_and_keeps_it_marked(tmp_path, monkeypatch):
    import sys

    from geomreg.data.manifest import read_dataset
    from tests.data.test_manifest import fix_row, write_fixes
    from tests.evaluation.synth import two_pair_dataset

    src = two_pair_dataset(tmp_path / "src")
    H_new = np.array([[1.0, 0.0, 7.5], [0.0, 1.0, -2.0], [0.0, 0.0, 1.0]])
    fixes = write_fixes(tmp_path / "fixes.csv", [fix_row("syn_vi_0001", "corrected", H_new), fix_row("syn_oo_0001", "unverified", None)])
    dst = tmp_path / "packed"
    monkeypatch.setattr(sys, "argv", ["pack", str(src), str(dst), "--max-side", "256", "--gt-fixes", str(fixes)])
    pack.main()
    packed = read_dataset(dst, dst / "gt_fixes.csv")
    assert [r.pair_id for r in packed] == ["syn_vi_0001"]  # the unverified pair is not packed
    assert packed[0].h_fixed is not None and np.allclose(np.reshape(packed[0].h_fixed, (3, 3)), H_new)


def _write_pair(root: Path, pair_id: str, modality: str, size: tuple[int, int], H: np.ndarray) -> list[str]:
    rng = np.random.default_rng(len(pair_id) + size[0])
    d = root / modality / pair_id
    d.mkdir(parents=True)
    for name in ("ref.jpg", "mov.jpg"):
        img = cv2.GaussianBlur(rng.random((size[1], size[0], 3)).astype(np.float32), (0, 0), 4)
        img = cv2.normalize(img, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)  # full contrast, as scenes have
        cv2.imwrite(str(d / name), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
    np.savetxt(d / "H_mov_to_ref.txt", H)
    rel = f"{modality}/{pair_id}"
    return [pair_id, modality, f"{rel}/ref.jpg", f"{rel}/mov.jpg", "no", f"{rel}/H_mov_to_ref.txt"]


def test_native_pack_is_what_training_caches(tmp_path, monkeypatch):
    """Small images travel byte for byte; large ones are shrunk as the cache shrinks them, ground truth kept."""
    import csv
    import sys

    from geomreg.data.manifest import read_dataset
    from geomreg.train.pairs import cache_pair

    src = tmp_path / "src"
    H = np.array([[1.02, 0.03, 5.0], [-0.02, 0.99, -3.0], [1e-5, 0.0, 1.0]])
    rows = [_write_pair(src, "syn_os_0001", "opt-sar", (300, 200), H), _write_pair(src, "syn_rn_0001", "rgb-nir", (900, 700), H)]
    with open(src / "MANIFEST.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["pair_id", "modality", "ref_path", "mov_path", "aligned", "gt"], *rows])
    dst = tmp_path / "packed"
    monkeypatch.setattr(sys, "argv", ["pack", str(src), str(dst), "--native", "--quality", "95"])
    pack.main()

    small = dst / "opt-sar" / "syn_os_0001"
    assert (small / "ref.jpg").read_bytes() == (src / "opt-sar" / "syn_os_0001" / "ref.jpg").read_bytes()
    before = {r.pair_id: cache_pair(r) for r in read_dataset(src)}
    after = {r.pair_id: cache_pair(r) for r in read_dataset(dst)}
    for pid in before:
        a, b = before[pid], after[pid]
        assert a.ref.shape == b.ref.shape and (a.ref_rgb is None) == (b.ref_rgb is None)
        np.testing.assert_allclose(b.H_mov_to_ref, a.H_mov_to_ref, rtol=1e-9, atol=1e-9)
        assert np.abs(a.ref.astype(float) - b.ref).mean() < 3.0  # the shrunk pair differs by one JPEG encoding
    assert max(after["syn_rn_0001"].ref.shape) == 512
