"""Mixed precision (geomreg/matching/precision.py): bf16 autocast runs on CPU and keeps the tie points."""

import cv2
import numpy as np
import pytest
import torch

from geomreg.matching.api import Matcher, MatcherConfig
from geomreg.matching.guided import GuideConfig
from geomreg.matching.precision import mixed_precision

from tests.matching.test_guided import _texture


def test_bad_precision_is_refused():
    with pytest.raises(ValueError, match="precision"):
        MatcherConfig(precision="int8")
    with pytest.raises(ValueError, match="precision"):
        mixed_precision(torch.device("cpu"), "half")


def test_autocast_context_on_cpu():
    a = torch.randn(8, 8)
    with mixed_precision(torch.device("cpu"), "bf16"):
        assert (a @ a).dtype == torch.bfloat16
    with mixed_precision(torch.device("cpu"), "fp32"):
        assert (a @ a).dtype == torch.float32


@pytest.mark.parametrize("backend", ("cv2", "torch"))
def test_bf16_matcher_runs_on_cpu_and_keeps_the_tie_points(backend: str):
    img = (255 * _texture(256, 2)).astype(np.uint8)
    shift = (3.3, -2.6)
    mov = cv2.warpAffine(img, np.float32([[1, 0, shift[0]], [0, 1, shift[1]]]), (256, 256), flags=cv2.INTER_CUBIC)
    errors = {}
    for precision in ("fp32", "bf16"):
        config = MatcherConfig(precision=precision, guide=GuideConfig(backend=backend))
        r = Matcher.from_pretrained(device="cpu", config=config).match(img, mov)
        assert r.ref_xy.dtype == np.float64 and len(r) > 20
        inner = np.all((r.ref_xy > 16) & (r.ref_xy < 240), axis=1)
        errors[precision] = np.median(np.linalg.norm(r.mov_xy[inner] - r.ref_xy[inner] - shift, axis=1))
    assert errors["bf16"] < 1.0
    assert errors["bf16"] <= errors["fp32"] + 0.2
