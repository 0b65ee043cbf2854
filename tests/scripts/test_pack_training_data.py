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
