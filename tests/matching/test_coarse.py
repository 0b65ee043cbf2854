import torch

from geomreg.matching.coarse import CoarseMatching, dual_softmax, dual_softmax_maxima, erode_cells, select_matches
from geomreg.matching.config import CoarseConfig


def test_select_matches_on_hand_made_probabilities():
    hw = (4, 4)
    prob = torch.zeros(1, 16, 16)
    # known matches between interior cells (5, 6, 9, 10 are the interior of a 4x4 grid)
    truth = {5: 10, 6: 9, 9: 6, 10: 5}
    for a, b in truth.items():
        prob[0, a, b] = 0.9
    prob[0, 5, 9] = 0.5  # not the row maximum: rejected by mutual NN
    prob[0, 0, 0] = 0.95  # border cell: removed
    prob[0, 6, 6] = 0.1  # below threshold (and not maximal)
    mask = torch.ones(1, 16, dtype=torch.bool)
    m = select_matches(prob, mask, mask, hw, hw, CoarseConfig(threshold=0.2, border_cells=1))
    got = {int(a): int(b) for a, b in zip(m.idx_a, m.idx_b)}
    assert got == truth
    assert torch.allclose(m.confidence, torch.full((4,), 0.9))


def test_select_matches_respects_masks_and_limit():
    hw = (4, 4)
    prob = torch.zeros(2, 16, 16)
    prob[:, 5, 5] = 0.8
    prob[:, 10, 10] = 0.7
    mask_a = torch.ones(2, 16, dtype=torch.bool)
    mask_a[1, 5] = False
    m = select_matches(prob, mask_a, torch.ones(2, 16, dtype=torch.bool), hw, hw, CoarseConfig(border_cells=0, max_matches=3))
    assert len(m) == 3  # pair 0: cells 5 and 10; pair 1: cell 10 (5 is masked out)
    assert not ((m.batch == 1) & (m.idx_a == 5)).any()
    capped = select_matches(prob, mask_a, torch.ones(2, 16, dtype=torch.bool), hw, hw, CoarseConfig(border_cells=0, max_matches=1))
    assert capped.batch.tolist() == [0, 1]  # the cap is per pair: each keeps its best
    assert capped.idx_a.tolist() == [5, 10]


def test_match_cap_is_per_pair_so_a_pair_matches_alike_alone_or_batched():
    # Pair 0 has many confident matches, pair 1 a few weak ones: a cap shared by the batch would keep only pair 0's.
    hw, L = (6, 6), 36
    prob = torch.zeros(2, L, L)
    for i in range(L):
        prob[0, i, i] = 0.9 - 0.001 * i
    for i in (7, 14, 21):
        prob[1, i, (i + 1) % L] = 0.3
    mask = torch.ones(2, L, dtype=torch.bool)
    cfg = CoarseConfig(threshold=0.2, border_cells=0, max_matches=10)
    both = select_matches(prob, mask, mask, hw, hw, cfg)
    for b in range(2):
        alone = select_matches(prob[b : b + 1], mask[:1], mask[:1], hw, hw, cfg)
        sel = both.batch == b
        assert both.idx_a[sel].tolist() == alone.idx_a.tolist()
        assert both.idx_b[sel].tolist() == alone.idx_b.tolist()
        assert torch.equal(both.confidence[sel], alone.confidence)
    assert int((both.batch == 0).sum()) == 10 and int((both.batch == 1).sum()) == 3


def test_dual_softmax_is_zero_on_masked_cells_and_bounded():
    sim = torch.randn(1, 6, 5) * 5
    ma = torch.tensor([[True, True, False, True, True, True]])
    mb = torch.tensor([[True, False, True, True, True]])
    p = dual_softmax(sim, ma, mb)
    assert torch.all(p[0, 2] == 0) and torch.all(p[0, :, 1] == 0)
    assert torch.all(p <= 1) and torch.all(p >= 0)
    assert torch.all(p.sum(2) <= 1 + 1e-6)


def test_erode_cells_removes_border_and_neighbours_of_invalid():
    mask = torch.ones(1, 25, dtype=torch.bool)
    mask[0, 12] = False  # centre of 5x5
    e = erode_cells(mask, (5, 5), 1).view(5, 5)
    assert not e.any()  # every interior cell touches the invalid centre
    e0 = erode_cells(torch.ones(1, 25, dtype=torch.bool), (5, 5), 1).view(5, 5)
    assert e0[1:4, 1:4].all() and not e0[0].any() and not e0[:, 0].any()


def test_maxima_without_the_matrix_equal_the_full_dual_softmax():
    torch.manual_seed(0)
    fa = torch.randn(2, 64, 16)
    fb = fa + 0.7 * torch.randn(2, 64, 16)
    mask_a = torch.ones(2, 64, dtype=torch.bool)
    mask_b = mask_a.clone()
    mask_b[1, :10] = False
    cm = CoarseMatching(CoarseConfig(threshold=0.05, border_cells=0), 16).eval()
    with torch.no_grad():
        sim, scale = cm.similarity(fa, fb)
        prob = dual_softmax(sim, mask_a, mask_b)
        E, shift = cm.shifted_exp_similarity(fa, fb)
        assert shift == float(scale) and torch.allclose(E, torch.exp(sim - scale), atol=1e-6)
        row_max, row_arg, col_arg = dual_softmax_maxima(E, mask_a, mask_b)
        assert torch.allclose(row_max, prob.max(dim=2).values, atol=1e-6)
        assert torch.equal(row_arg, prob.argmax(dim=2))
        # col_arg is defined where the mutual test reads it: at each row's best column
        assert torch.equal(col_arg.gather(1, row_arg), prob.argmax(dim=1).gather(1, row_arg))
        assert ((col_arg == -1) | (col_arg == prob.argmax(dim=1))).all()
        fast = cm(fa, fb, mask_a, mask_b, (8, 8), (8, 8))  # inference path: no matrix
        full = select_matches(prob, mask_a, mask_b, (8, 8), (8, 8), cm.cfg)
    assert fast.prob is None and len(full) > 0
    assert torch.equal(fast.matches.idx_a, full.idx_a) and torch.equal(fast.matches.idx_b, full.idx_b)


def test_maxima_on_exact_ties_keep_one_match_per_cell():
    # rows 1 and 2 are identical (e.g. blank, identical descriptors): both pick column 1, only row 1 is mutual
    E = torch.tensor([[[0.9, 0.1, 0.2], [0.1, 0.8, 0.1], [0.1, 0.8, 0.1]]])
    ones = torch.ones(1, 3, dtype=torch.bool)
    prob = E**2 / (E.sum(2, keepdim=True) * E.sum(1, keepdim=True))
    row_max, row_arg, col_arg = dual_softmax_maxima(E.clone(), ones, ones)
    assert row_arg.tolist() == [[0, 1, 1]] and col_arg.tolist() == [[0, 1, -1]]
    assert torch.equal(col_arg.gather(1, row_arg), prob.argmax(dim=1).gather(1, row_arg))
    torch.testing.assert_close(row_max, prob.amax(dim=2))


def test_maxima_by_blocks_of_rows_equal_one_block(monkeypatch):
    # _row_maxima scales E a block of rows at a time (memory); blocks that do not divide La must not change a thing
    import geomreg.matching.coarse as coarse

    torch.manual_seed(1)
    E = torch.rand(2, 50, 40)
    ones_a, ones_b = torch.ones(2, 50, dtype=torch.bool), torch.ones(2, 40, dtype=torch.bool)
    whole = dual_softmax_maxima(E.clone(), ones_a, ones_b)
    monkeypatch.setattr(coarse, "_ROW_CHUNK", 7)
    blocks = dual_softmax_maxima(E.clone(), ones_a, ones_b)
    for w, b in zip(whole, blocks):
        assert torch.equal(w, b)
