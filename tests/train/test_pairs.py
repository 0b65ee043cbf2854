import numpy as np

from geomreg.data.manifest import read_manifest
from geomreg.train.pairs import WarpRange, cache_pair, make_instance, nodata_mask


def test_instances_have_exact_correspondence(tiny_dataset):
    rec = read_manifest(tiny_dataset)[0]
    pair = cache_pair(rec)
    rng = np.random.default_rng(3)
    inst = make_instance(pair, 64, rng, WarpRange(rotation_deg=8, scale=0.1, translation=0.05))
    assert inst.img_a.shape == (64, 64) and inst.img_b.shape == (64, 64)
    # mov is the inverted ref: compare 1 - B at H_ab(p) with A at p over valid interior points
    ys, xs = np.mgrid[8:56:4, 8:56:4]
    pa = np.c_[xs.ravel(), ys.ravel(), np.ones(xs.size)]
    pb = pa @ inst.H_ab.T
    pb = pb[:, :2] / pb[:, 2:]
    ok = (pb >= 2).all(1) & (pb < 62).all(1)
    xb, yb = np.round(pb[ok]).astype(int).T
    a_vals = inst.img_a[pa[ok, 1].astype(int), pa[ok, 0].astype(int)]
    b_vals = inst.img_b[yb, xb]
    assert np.corrcoef(a_vals, b_vals)[0, 1] < -0.7  # inverted contrast, same structure


def test_swap_and_simulation_keep_shapes(tiny_dataset):
    pair = cache_pair(read_manifest(tiny_dataset)[1])
    rng = np.random.default_rng(0)
    for _ in range(5):
        inst = make_instance(pair, 64, rng, WarpRange(), simulate_prob=1.0, swap=True)
        assert inst.img_a.dtype == np.float32 and 0 <= inst.img_b.min() and inst.img_b.max() <= 1
        assert inst.valid_a.any() and inst.valid_b.any()


def test_nodata_mask_marks_black_wedges_only():
    img = np.full((40, 40), 0.5, np.float32)
    img[:, :15] = 0.0  # a black wedge
    img[20, 30] = 0.0  # a single dark pixel is not nodata
    m = nodata_mask(img)
    assert not m[:, :10].any() and m[:, 20:].all()


def test_multi_size_batches_keep_the_pixel_budget(tiny_dataset):
    from geomreg.train.config import TrainConfig
    from geomreg.train.trainer import sample_batch

    cfg = TrainConfig.from_dict({"crop_size": 32, "batch_size": 4, "crop_sizes": [32, 64], "scale_span": 4.0})
    assert cfg.crop_sizes == (32, 64) and cfg.batch_for(32) == 4 and cfg.batch_for(64) == 1
    pairs = [cache_pair(r) for r in read_manifest(tiny_dataset)]
    w = np.full(len(pairs), 1.0 / len(pairs))
    rng = np.random.default_rng(0)
    seen = set()
    for step in range(12):
        batch = sample_batch(pairs, w, cfg, step, rng)
        size = batch[0].img_a.shape[0]
        assert all(i.img_a.shape == (size, size) for i in batch) and len(batch) == cfg.batch_for(size)
        seen.add(size)
    assert seen == {32, 64}


def test_default_scale_span_keeps_validation_instances_unchanged(tiny_dataset):
    pair = cache_pair(read_manifest(tiny_dataset)[0])
    a = make_instance(pair, 32, np.random.default_rng(7), WarpRange())
    b = make_instance(pair, 32, np.random.default_rng(7), WarpRange(), scale_span=2.0)
    assert np.array_equal(a.img_a, b.img_a) and np.array_equal(a.H_ab, b.H_ab)


def test_self_instances_are_exact_copies_under_the_homography(tiny_dataset, monkeypatch):
    import geomreg.train.pairs as pairs_mod
    from geomreg.train.pairs import make_self_instance

    monkeypatch.setattr(pairs_mod, "simulate", lambda img, rgb, rng: img)  # keep the intensities comparable
    pair = cache_pair(read_manifest(tiny_dataset)[0])
    rng = np.random.default_rng(5)
    for _ in range(4):
        inst = make_self_instance(pair, 64, rng, WarpRange(rotation_deg=8, scale=0.1, translation=0.05))
        assert inst.exact
        ys, xs = np.mgrid[8:56:2, 8:56:2]
        pa = np.c_[xs.ravel(), ys.ravel(), np.ones(xs.size)]
        pb = pa @ inst.H_ab.T
        pb = pb[:, :2] / pb[:, 2:]
        ok = (pb >= 2).all(1) & (pb < 61).all(1)
        # bilinear B at H_ab(p) against A at p: the same image, so the same values up to resampling
        import cv2

        b_vals = cv2.remap(inst.img_b, pb[ok, 0].astype(np.float32)[:, None], pb[ok, 1].astype(np.float32)[:, None], cv2.INTER_LINEAR)[:, 0]
        a_vals = inst.img_a[pa[ok, 1].astype(int), pa[ok, 0].astype(int)]
        assert np.corrcoef(a_vals, b_vals)[0, 1] > 0.9


def test_real_instances_are_not_marked_exact(tiny_dataset):
    pair = cache_pair(read_manifest(tiny_dataset)[0])
    assert not make_instance(pair, 64, np.random.default_rng(0), WarpRange()).exact
