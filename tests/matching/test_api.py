import numpy as np
import pytest
import torch

import geomreg
from geomreg.matching import weights as W
from geomreg.matching.api import Matcher, get_matcher
from geomreg.matching.model import RegNetMamba2


@pytest.fixture(scope="module")
def random_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    model = RegNetMamba2()
    path = tmp_path_factory.mktemp("ck") / "model.pt"
    W.atomic_torch_save({"model": model.state_dict(), "config": model.cfg.to_dict()}, path)
    return path


def test_from_pretrained_never_uses_random_weights(monkeypatch, tmp_path):
    monkeypatch.setattr(W, "PACKAGED_WEIGHTS", tmp_path / "missing.pt")
    monkeypatch.setattr(W, "PACKAGED_CARD", tmp_path / "missing.json")
    with pytest.raises(W.CheckpointError, match="no trained RegNetMamba-2 weights"):
        geomreg.Matcher.from_pretrained()


def test_packaged_checksum_is_verified(monkeypatch, tmp_path):
    model = RegNetMamba2()
    W.export_packaged(model, {"note": "test"}, tmp_path)
    monkeypatch.setattr(W, "PACKAGED_WEIGHTS", tmp_path / "regnetmamba2.pt")
    monkeypatch.setattr(W, "PACKAGED_CARD", tmp_path / "regnetmamba2.json")
    assert isinstance(W.load_packaged(), RegNetMamba2)
    with open(tmp_path / "regnetmamba2.pt", "ab") as fh:
        fh.write(b"tampered")
    with pytest.raises(W.CheckpointError, match="checksum mismatch"):
        W.load_packaged()


def test_corrupt_and_mismatched_checkpoints_are_refused(tmp_path, random_ckpt):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(W.CheckpointError, match="bad.pt"):
        Matcher.from_checkpoint(bad)
    sd = torch.load(random_ckpt, weights_only=True)
    sd["model"].pop(next(iter(sd["model"])))
    partial = tmp_path / "partial.pt"
    torch.save(sd, partial)
    with pytest.raises(W.CheckpointError, match="do not fit"):
        Matcher.from_checkpoint(partial)


@pytest.fixture(scope="module")
def awkward_pair() -> tuple[np.ndarray, np.ndarray]:
    """A real RGB uint8 crop of the bundled Landsat-8 scene, 101 x 133 (not multiples of 8), and a speckled float32
    SAR-like crop of its green band, 120 x 97, whose first 10 rows are NaN: mov(x, y) = ref(x + 11, y + 7)."""
    import rasterio

    from geomreg.geo.sample import sample_pair

    with rasterio.open(sample_pair().reference) as ds:
        rgb = np.moveaxis(ds.read(window=((200, 360), (200, 360))), 0, -1).astype(np.float64)  # [160, 160, 3]
    lo, hi = np.percentile(rgb, [1, 99])
    rgb8 = (np.clip((rgb - lo) / (hi - lo), 0, 1) * 255).astype(np.uint8)
    speckle = np.random.default_rng(0).gamma(4.0, 0.25, (120, 97)).astype(np.float32)
    mov = (rgb8[7:127, 11:108, 1].astype(np.float32) / 255 + 0.05) * speckle
    mov[:10] = np.nan
    return rgb8[:101, :133], mov


def test_match_contract_on_awkward_inputs(awkward_pair):
    ref, mov = awkward_pair
    r = Matcher.from_pretrained(device="cpu").match(ref, mov)
    assert r.ref_xy.shape[1] == 2 and r.mov_xy.shape == r.ref_xy.shape and r.confidence.shape == (len(r),)
    assert r.ref_xy.dtype == np.float64
    # The packaged weights find 79 matches here (2026-12-06, commit 3053c82): enough for the bounds below to bite.
    assert len(r) >= 20
    for xy, (h, w) in ((r.ref_xy, ref.shape[:2]), (r.mov_xy, mov.shape)):  # each inside its own image, not the padded one
        assert (xy >= -0.5).all() and (xy[:, 0] <= w - 0.5).all() and (xy[:, 1] <= h - 0.5).all()
    assert (r.mov_xy[:, 1] >= 9.5).all()  # nothing on the NaN rows
    assert ((r.confidence >= 0) & (r.confidence <= 1)).all()


class _FixedMatches(torch.nn.Module):
    """A stand-in network that returns the given matches (working pixels) for batch item 0, whatever the images."""

    def __init__(self, xy_a: list, xy_b: list) -> None:
        super().__init__()
        self.xy_a, self.xy_b = torch.tensor(xy_a, dtype=torch.float32), torch.tensor(xy_b, dtype=torch.float32)

    def forward(self, img_a, img_b, valid_a, valid_b):
        from types import SimpleNamespace

        n = len(self.xy_a)
        matches = SimpleNamespace(batch=torch.zeros(n, dtype=torch.long), xy_a=self.xy_a, xy_b=self.xy_b, confidence=torch.full((n,), 0.9))
        return SimpleNamespace(matches=matches)


def test_points_off_the_moving_image_are_dropped():
    """The fine stage can move a point past the moving image's edge (into the padding of a batch): such matches go."""
    from geomreg.matching.api import MatcherConfig

    # mov is 40 x 30 (w x h); a 48 x 48 ref makes the batch pad it to 48 x 48. Matches 2-5 lie off mov.
    xy_b = [[10.0, 10.0], [39.4, 29.4], [39.6, 10.0], [10.0, 29.6], [-0.6, 5.0], [5.0, -0.6]]
    m = Matcher(_FixedMatches([[1.0, 1.0]] * len(xy_b), xy_b), "cpu", MatcherConfig(guide=None))
    rng = np.random.default_rng(0)
    r = m.match(rng.random((48, 48)).astype(np.float32), rng.random((30, 40)).astype(np.float32))
    np.testing.assert_allclose(r.mov_xy, [[10.0, 10.0], [39.4, 29.4]], atol=1e-5)


def test_large_input_is_downscaled_with_a_note(random_ckpt):
    from geomreg.matching.api import MatcherConfig

    m = Matcher.from_checkpoint(random_ckpt, config=MatcherConfig(max_side=128))
    img = np.random.default_rng(1).random((300, 260)).astype(np.float32)
    r = m.match(img, img)
    assert any("downscaled" in n for n in r.notes)


def test_default_working_size_keeps_1024_px_images_at_their_own_size():
    # The VIS-NIR pairs are 1024 px wide: at 768 px they lost a pair and precision (MatcherConfig.max_side).
    from geomreg.matching.api import MatcherConfig, _prepare

    side = MatcherConfig().max_side
    native = _prepare(np.random.default_rng(2).random((680, 1024)).astype(np.float32), "ref", side)
    assert native.scale == 1.0 and native.note is None and native.image.shape == (680, 1024)
    larger = _prepare(np.random.default_rng(3).random((600, 1200)).astype(np.float32), "mov", side)
    assert larger.image.shape[1] == side and "mov: 1200x600 downscaled" in larger.note


@pytest.mark.parametrize(
    "bad, message",
    [
        (np.zeros((0, 5)), "empty"),
        (np.zeros((4, 4, 4, 4)), "HxW"),
        (np.array([["a"]]), "dtype"),
        (np.full((16, 16), np.nan), "no valid pixel"),
    ],
)
def test_bad_input_raises_clear_value_error(random_ckpt, bad, message):
    m = Matcher.from_checkpoint(random_ckpt)
    with pytest.raises(ValueError, match=message):
        m.match(bad, np.zeros((16, 16), np.float32))


def test_get_matcher_names():
    assert get_matcher("cfog").name == "cfog"
    with pytest.raises(ValueError, match="unknown matcher"):
        get_matcher("nope")


@pytest.mark.parametrize(
    "validation, expected",
    [
        ({}, "cfog"),
        ({"all/success@5": 0.2}, "cfog"),
        ({"all/success@5": 0.8}, "regnetmamba2+polish"),
        ({"all/success@5": 0.8, "opt-sar/success@5": 0.6, "vis-ir/success@5": 0.9}, "regnetmamba2+polish"),
        ({"all/success@5": 0.8, "opt-sar/success@5": 0.0, "vis-ir/success@5": 0.9}, "cfog"),  # fails one modality
    ],
)
def test_auto_uses_packaged_weights_only_when_validated(monkeypatch, tmp_path, validation, expected):
    model = RegNetMamba2()
    W.export_packaged(model, {"validation": validation}, tmp_path)
    monkeypatch.setattr(W, "PACKAGED_WEIGHTS", tmp_path / "regnetmamba2.pt")
    monkeypatch.setattr(W, "PACKAGED_CARD", tmp_path / "regnetmamba2.json")
    assert get_matcher("auto", device="cpu").name == expected


def test_shipped_weights_load_strictly():
    # The real packaged file, as users get it: checksum, config from its card, strict state_dict.
    model = W.load_packaged()
    assert isinstance(model, RegNetMamba2)
    card = W.packaged_card()
    assert sum(p.numel() for p in model.parameters()) == card["parameters"]


def test_configs_saved_before_coarse_dim_existed_keep_their_width():
    from geomreg.matching.config import RegNetMamba2Config

    d = RegNetMamba2Config().to_dict()
    del d["coarse"]["dim"]
    assert RegNetMamba2Config.from_dict(d).coarse.dim == d["encoder"]["dims"][2]


def _textured(rng: np.random.Generator, size: int, contrast: float) -> np.ndarray:
    import cv2

    img = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), 2.0)
    return (0.5 + contrast * (img - img.mean()) / img.std()).astype(np.float32)


def test_a_pair_matches_alike_alone_or_in_a_batch():
    """The match cap and the guided pass are per pair: batching must not take one pair's tie points away
    for another's (it once did: a 400 px map pair kept 519 of its 1,024 matches beside three others)."""
    rng = np.random.default_rng(0)
    pairs = []
    for contrast in (0.3, 0.1):  # a strong pair and a weak one, each with more matches than the cap shares out
        ref = _textured(rng, 256, contrast)
        mov = np.roll(ref, (3, -2), axis=(0, 1)) + rng.normal(0, 0.02, ref.shape).astype(np.float32)
        pairs.append((ref, mov))
    m = Matcher.from_pretrained(device="cpu")
    batched = m.match_batch(pairs)
    for (ref, mov), b in zip(pairs, batched):
        alone = m.match(ref, mov)
        assert len(alone.ref_xy) > 300
        assert abs(len(b.ref_xy) - len(alone.ref_xy)) <= 0.02 * len(alone.ref_xy)
        shared = {tuple(p) for p in np.round(alone.ref_xy, 1)} & {tuple(p) for p in np.round(b.ref_xy, 1)}
        assert len(shared) >= 0.95 * len(alone.ref_xy)
