"""The real optical-SAR GeoTIFF pair (../shared, research data: read here, never bundled), moving geotransform
shifted by a known amount on top of the pair's own ground truth (H_mov_to_ref.txt)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import geomreg

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:  # benchmarks/ is a script folder, not an installed package
    sys.path.insert(0, str(REPO))
from benchmarks.optsar_geo import PAIR, error_px, shifted_pair  # noqa: E402

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def shifted(tmp_path_factory):
    if not (PAIR / "ref.tif").exists():
        pytest.skip(f"{PAIR} not available")
    return shifted_pair(PAIR, tmp_path_factory.mktemp("optsar"))


def test_optical_sar_cfog(shifted):
    from geomreg.matching.cfog import CFOGMatcher

    ref, mov, truth = shifted
    reg = geomreg.register(ref, mov, matcher=CFOGMatcher(), tile_size=320, overlap=32, progress=False, transform="affine")
    assert reg.status == "registered", reg.reason
    print(f"cfog: {error_px(reg, truth):.3f} px")
    # Measured 0.926 px on 2026-12-06 at commit ba1c812 (this test with -s); bound with a 0.27 px (30 %) margin.
    assert error_px(reg, truth) < 1.2


def test_optical_sar_default_matcher(shifted):
    # The network's own tie points (before the polish stage became the default): 0.94 px on this pair with step 13,500, guided, 7 x 7 fine window
    # (benchmarks/optsar_geo.py); 1.78 px with one pass at 5 x 5, 2.52 px with the whole-window expectation.
    from geomreg.matching.weights import packaged_is_validated

    ok, why = packaged_is_validated()
    if not ok:  # the target (< 2 px) applies to weights whose own validation says they register
        pytest.skip(why)
    ref, mov, truth = shifted
    reg = geomreg.register(ref, mov, tile_size=320, overlap=32, progress=False, transform="affine", device="cpu")
    assert reg.status == "registered", reg.reason
    print(f"default: {error_px(reg, truth):.3f} px")
    # The bound is the network's own 0.94 px with a 0.26 px margin: the default (auto: the network with its tie
    # points polished) must do at least about as well. Not yet re-measured with the polish (this test with -s).
    assert error_px(reg, truth) < 1.2


def test_optical_sar_network_polished_by_cfog(shifted):
    # The network's homography as the start for CFOG's finest pass, which places the tie points around it
    # (0.89 px against the network's own 0.94 px; benchmarks/optsar_geo.py).
    ref, mov, truth = shifted
    reg = geomreg.register(ref, mov, matcher="regnetmamba2+cfog", tile_size=320, overlap=32, progress=False, transform="affine", device="cpu")
    assert reg.status == "registered", reg.reason
    print(f"regnetmamba2+cfog: {error_px(reg, truth):.3f} px")
    # 0.89 px measured (benchmarks/optsar_geo.py); bound with a 0.31 px margin.
    assert error_px(reg, truth) < 1.2
