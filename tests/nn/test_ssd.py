"""Tests for geomreg.nn.ssd: the chunked SSD scan against the step-by-step recurrence."""

from __future__ import annotations

import functools
import importlib.util

import pytest
import torch
import torch.nn.functional as F

from geomreg.nn import ssd
from einops import rearrange

from geomreg.nn.ssd import ssd_reference, ssd_scan, ssd_scan_grouped

LENGTHS = (1, 7, 63, 65, 130, 1000)
CHUNK_SIZES = (1, 8, 64, 256)


@functools.lru_cache(maxsize=None)
def _inputs(b: int, L: int, H: int, P: int, G: int, N: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Float64 inputs with Mamba-like magnitudes: dt = softplus(randn - 1), A in [-4, -0.5]."""
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64
    x = torch.randn(b, L, H, P, generator=g, dtype=f64)
    dt = F.softplus(torch.randn(b, L, H, generator=g, dtype=f64) - 1.0)
    A = -(0.5 + 3.5 * torch.rand(H, generator=g, dtype=f64))
    B = torch.randn(b, L, G, N, generator=g, dtype=f64)
    C = torch.randn(b, L, G, N, generator=g, dtype=f64)
    D = torch.randn(H, generator=g, dtype=f64)
    S0 = torch.randn(b, H, P, N, generator=g, dtype=f64)
    return x, dt, A, B, C, D, S0


@functools.lru_cache(maxsize=None)
def _reference(b: int, L: int, H: int, P: int, G: int, N: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    x, dt, A, B, C, D, S0 = _inputs(b, L, H, P, G, N, seed)
    return ssd_reference(x, dt, A, B, C, D=D, initial_state=S0, return_final_state=True)


def _assert_close_scaled(actual: torch.Tensor, expected: torch.Tensor, tol: float) -> None:
    """Relative to the tensor's own magnitude: outputs here reach |y| ~ 50."""
    scale = max(1.0, expected.abs().max().item())
    torch.testing.assert_close(actual.to(expected.dtype), expected, rtol=tol, atol=tol * scale)


# ---------------------------------------------------------------- values


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
@pytest.mark.parametrize("L", LENGTHS)
def test_float64_matches_reference(L: int, chunk_size: int) -> None:
    dims = (2, L, 4, 8, 2, 16)
    x, dt, A, B, C, D, S0 = _inputs(*dims)
    y_ref, s_ref = _reference(*dims)
    y, s = ssd_scan(x, dt, A, B, C, chunk_size=chunk_size, D=D, initial_state=S0, return_final_state=True)
    assert y.shape == x.shape and y.dtype == torch.float64
    assert s.shape == S0.shape
    _assert_close_scaled(y, y_ref, 1e-10)
    _assert_close_scaled(s, s_ref, 1e-10)


@pytest.mark.parametrize("chunk_size", CHUNK_SIZES)
@pytest.mark.parametrize("L", (7, 130, 1000))
def test_float32_matches_reference(L: int, chunk_size: int) -> None:
    dims = (2, L, 4, 8, 2, 16)
    f32 = [t.float() for t in _inputs(*dims)]
    y_ref, s_ref = _reference(*dims)  # float64 ground truth from the same values
    y, s = ssd_scan(*f32[:5], chunk_size=chunk_size, D=f32[5], initial_state=f32[6], return_final_state=True)
    assert y.dtype == torch.float32 and s.dtype == torch.float32
    _assert_close_scaled(y, y_ref, 1e-5)
    _assert_close_scaled(s, s_ref, 1e-5)


@pytest.mark.parametrize("chunk_size", (8, 64))
def test_bfloat16_matches_reference_loosely(chunk_size: int) -> None:
    dims = (2, 300, 4, 8, 2, 16)
    bf = [t.bfloat16() for t in _inputs(*dims)]
    # Reference in float64 on the bf16-rounded inputs: only the scan's own rounding is measured.
    x, dt, A, B, C, D, S0 = (t.double() for t in bf)
    y_ref, s_ref = ssd_reference(x, dt, A, B, C, D=D, initial_state=S0, return_final_state=True)
    y, s = ssd_scan(*bf[:5], chunk_size=chunk_size, D=bf[5], initial_state=bf[6], return_final_state=True)
    assert y.dtype == torch.bfloat16 and s.dtype == torch.bfloat16
    for got, want in ((y, y_ref), (s, s_ref)):
        rel = (got.double() - want).norm() / want.norm()
        assert rel < 1e-2, f"bf16 relative error {rel:.2e}"


@pytest.mark.parametrize("G", (1, 2, 4))
def test_groups(G: int) -> None:
    dims = (1, 70, 4, 8, G, 16)
    x, dt, A, B, C, D, S0 = _inputs(*dims)
    y_ref, s_ref = _reference(*dims)
    y, s = ssd_scan(x, dt, A, B, C, chunk_size=16, D=D, initial_state=S0, return_final_state=True)
    _assert_close_scaled(y, y_ref, 1e-10)
    _assert_close_scaled(s, s_ref, 1e-10)


def test_group_mapping_is_head_div_heads_per_group() -> None:
    # Head h must read group h // (H // G): perturbing group 1 must change heads 2, 3 only (H=4, G=2).
    x, dt, A, B, C, _, _ = _inputs(1, 20, 4, 3, 2, 5)
    y0 = ssd_scan(x, dt, A, B, C, chunk_size=8)
    B2 = B.clone()
    B2[:, :, 1] += 1.0
    y1 = ssd_scan(x, dt, A, B2, C, chunk_size=8)
    changed = (y1 - y0).abs().amax(dim=(0, 1, 3))
    assert torch.all(changed[:2] == 0) and torch.all(changed[2:] > 0)


@pytest.mark.parametrize("with_D", (True, False))
@pytest.mark.parametrize("L", (7, 130))
def test_grouped_layout_matches_reference(L: int, with_D: bool) -> None:
    """ssd_scan_grouped is the same recurrence on group-major tensors (what the 2-D scan passes)."""
    dims = (2, L, 4, 8, 2, 16)
    x, dt, A, B, C, D, _ = _inputs(*dims)
    y_ref = ssd_reference(x, dt, A, B, C, D=D if with_D else None)
    y = ssd_scan_grouped(
        rearrange(x, "b l (g r) p -> b g r l p", g=2),
        rearrange(dt, "b l (g r) -> b g r l", g=2),
        A,
        rearrange(B, "b l g n -> b g l n"),
        rearrange(C, "b l g n -> b g l n"),
        chunk_size=16,
        D=D if with_D else None,
    )
    _assert_close_scaled(rearrange(y, "b g r l p -> b l (g r) p"), y_ref, 1e-10)


def test_no_D_no_initial_state() -> None:
    dims = (2, 65, 4, 8, 1, 16)
    x, dt, A, B, C, _, _ = _inputs(*dims)
    y_ref, s_ref = ssd_reference(x, dt, A, B, C, return_final_state=True)
    y = ssd_scan(x, dt, A, B, C, chunk_size=8)
    assert isinstance(y, torch.Tensor)
    _assert_close_scaled(y, y_ref, 1e-10)
    _, s = ssd_scan(x, dt, A, B, C, chunk_size=8, return_final_state=True)
    _assert_close_scaled(s, s_ref, 1e-10)


@pytest.mark.parametrize("chunk_size", (8, 64))
def test_split_sequence_resumes_from_final_state(chunk_size: int) -> None:
    # Scanning [0, k) then [k, L) from the carried state equals one scan over [0, L).
    x, dt, A, B, C, D, S0 = _inputs(1, 150, 4, 8, 2, 16)
    y_full, s_full = ssd_scan(x, dt, A, B, C, chunk_size=chunk_size, D=D, initial_state=S0, return_final_state=True)
    k = 77
    y1, s1 = ssd_scan(*(t[:, :k] for t in (x, dt)), A, *(t[:, :k] for t in (B, C)),
                      chunk_size=chunk_size, D=D, initial_state=S0, return_final_state=True)
    y2, s2 = ssd_scan(*(t[:, k:] for t in (x, dt)), A, *(t[:, k:] for t in (B, C)),
                      chunk_size=chunk_size, D=D, initial_state=s1, return_final_state=True)
    _assert_close_scaled(torch.cat([y1, y2], dim=1), y_full, 1e-10)
    _assert_close_scaled(s2, s_full, 1e-10)


def _uses_long_path(b: int, n_chunks: int, H: int, P: int, N: int) -> bool:
    """Mirror of ssd._chunk_recurrence's switch: one [chunks+1]^2 matrix only while it is small enough."""
    return n_chunks > ssd._RECURRENCE_BLOCK and (n_chunks + 1) ** 2 * b * H * P * N > ssd._MATRIX_FORM_BUDGET


def _force_long_path(monkeypatch: pytest.MonkeyPatch, block: int, kind: str = "scan") -> None:
    """No matrix form over the whole chunk sequence: the in-place scan over chunks ("scan"), or blocks of
    `block` chunks in matrix form with the recurrence over blocks, recursively ("blocked")."""
    monkeypatch.setattr(ssd, "_MATRIX_FORM_BUDGET", 0)
    monkeypatch.setattr(ssd, "_RECURRENCE_BLOCK", block)
    monkeypatch.setattr(ssd, "_SMALL_STATE", 2**62 if kind == "blocked" else 0)


def test_long_sequence_uses_long_path() -> None:
    # Enough chunks that the matrix form is over its budget: the long chunk recurrence runs, unpatched.
    b, H, P, G, N, chunk_size = 1, 2, 16, 1, 16, 8
    n_chunks = 1
    while not _uses_long_path(b, n_chunks, H, P, N):
        n_chunks *= 2
    L = n_chunks * chunk_size - 5  # also padded
    assert L <= 20_000, "matrix-form limits grew: shrink this test's L another way"
    assert _uses_long_path(b, -(-L // chunk_size), H, P, N)
    dims = (b, L, H, P, G, N)
    x, dt, A, B, C, D, S0 = _inputs(*dims)
    y_ref, s_ref = _reference(*dims)
    y, s = ssd_scan(x, dt, A, B, C, chunk_size=chunk_size, D=D, initial_state=S0, return_final_state=True)
    _assert_close_scaled(y, y_ref, 1e-10)
    _assert_close_scaled(s, s_ref, 1e-10)


@pytest.mark.parametrize("kind", ("scan", "blocked"))
@pytest.mark.parametrize("block", (2, 4, 8))
def test_long_path_equals_matrix_form(block: int, kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # 25 chunks in blocks of 2/4/8: padded blocks and (for 2 and 4) more than one level of blocks.
    dims = (2, 200, 4, 8, 2, 16)
    x, dt, A, B, C, D, S0 = _inputs(*dims)
    kw = dict(chunk_size=8, D=D, initial_state=S0, return_final_state=True)
    monkeypatch.setattr(ssd, "_MATRIX_FORM_BUDGET", 2**62)
    y_mat, s_mat = ssd_scan(x, dt, A, B, C, **kw)
    _force_long_path(monkeypatch, block, kind)
    assert _uses_long_path(2, 25, 4, 8, 16)
    y_long, s_long = ssd_scan(x, dt, A, B, C, **kw)
    _assert_close_scaled(y_long, y_mat, 1e-12)
    _assert_close_scaled(s_long, s_mat, 1e-12)
    y_ref, s_ref = _reference(*dims)
    _assert_close_scaled(y_long, y_ref, 1e-10)
    _assert_close_scaled(s_long, s_ref, 1e-10)


def _one_segment(monkeypatch: pytest.MonkeyPatch) -> None:
    """The formulation before segments: the whole sequence in one pass."""
    monkeypatch.setattr(ssd, "_SEGMENT_ELEMENTS", 2**62)


@pytest.mark.parametrize("dtype", (torch.float64, torch.float32))
@pytest.mark.parametrize(("L", "chunk_size", "elements"), [(1000, 8, 1), (1000, 8, 2 * 4 * 8 * 8 * 5), (130, 64, 1), (63, 8, 2 * 4 * 64)])
def test_segments_equal_one_pass(L: int, chunk_size: int, elements: int, dtype: torch.dtype,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    # Segments of one chunk, five chunks (1000 = 25 segments of 40 tokens), and a padded last segment; with
    # an initial state, D, groups; y and the final state equal the one-pass formulation and the recurrence.
    dims = (2, L, 4, 8, 2, 16)
    x, dt, A, B, C, D, S0 = (t.to(dtype) for t in _inputs(*dims))
    kw = dict(chunk_size=chunk_size, D=D, initial_state=S0, return_final_state=True)
    _one_segment(monkeypatch)
    y_one, s_one = ssd_scan(x, dt, A, B, C, **kw)
    monkeypatch.setattr(ssd, "_SEGMENT_ELEMENTS", elements)
    seg = ssd._segment_length(rearrange(x, "b l (g r) p -> b g r l p", g=2), min(chunk_size, L))
    assert seg < L and seg % min(chunk_size, L) == 0
    y_seg, s_seg = ssd_scan(x, dt, A, B, C, **kw)
    tol = 1e-12 if dtype == torch.float64 else 1e-5
    _assert_close_scaled(y_seg, y_one, tol)
    _assert_close_scaled(s_seg, s_one, tol)
    y_ref, s_ref = _reference(*dims)
    _assert_close_scaled(y_seg, y_ref, 1e-10 if dtype == torch.float64 else 1e-5)
    _assert_close_scaled(s_seg, s_ref, 1e-10 if dtype == torch.float64 else 1e-5)


def test_segments_without_initial_state_grouped(monkeypatch: pytest.MonkeyPatch) -> None:
    x, dt, A, B, C, D, _ = _inputs(2, 500, 4, 8, 2, 16, seed=3)
    args = (rearrange(x, "b l (g r) p -> b g r l p", g=2), rearrange(dt, "b l (g r) -> b g r l", g=2), A,
            rearrange(B, "b l g n -> b g l n"), rearrange(C, "b l g n -> b g l n"))
    _one_segment(monkeypatch)
    y_one = ssd_scan_grouped(*args, chunk_size=16, D=D)
    monkeypatch.setattr(ssd, "_SEGMENT_ELEMENTS", 2 * 4 * 16 * 16 * 3)  # 3 chunks per segment
    _assert_close_scaled(ssd_scan_grouped(*args, chunk_size=16, D=D), y_one, 1e-12)


def test_segments_without_D_write_the_output(monkeypatch: pytest.MonkeyPatch) -> None:
    # No D and no autograd: each segment's result is copied into the preallocated output.
    x, dt, A, B, C, _, _ = _inputs(1, 300, 4, 8, 1, 16, seed=4)
    _one_segment(monkeypatch)
    y_one = ssd_scan(x, dt, A, B, C, chunk_size=16)
    monkeypatch.setattr(ssd, "_SEGMENT_ELEMENTS", 4 * 16 * 16 * 2)  # 2 chunks per segment, a padded last one
    _assert_close_scaled(ssd_scan(x, dt, A, B, C, chunk_size=16), y_one, 1e-12)


def test_negligible_decays_are_exact_zeros_not_subnormals() -> None:
    # Subnormal floats cost tens of times more on x86; decays below 1e-26 cannot change a float32 sum.
    log_decay = torch.tensor([0.0, -50.0, -61.0, -95.0, -200.0, float("-inf")])
    got = ssd._decay(log_decay)
    assert got[0] == 1.0 and got[1] == pytest.approx(float(torch.exp(torch.tensor(-50.0))))
    assert torch.all(got[2:] == 0)
    tiny = torch.finfo(torch.float32).tiny
    assert not torch.any((got != 0) & (got.abs() < tiny))


@pytest.mark.parametrize("dtype", (torch.float64, torch.float32))
def test_fast_decays_match_reference(dtype: torch.dtype) -> None:
    # A of -40: a chunk of 64 steps decays by e^-800 and more, far past float32's subnormal range.
    x, dt, _, B, C, D, S0 = (t.to(dtype) for t in _inputs(1, 200, 4, 8, 1, 16, seed=5))
    A = torch.full((4,), -40.0, dtype=dtype)
    y, s = ssd_scan(x, dt, A, B, C, chunk_size=64, D=D, initial_state=S0, return_final_state=True)
    y_ref, s_ref = ssd_reference(x, dt, A, B, C, D=D, initial_state=S0, return_final_state=True)
    tol = 1e-10 if dtype == torch.float64 else 1e-5
    _assert_close_scaled(y, y_ref, tol)
    _assert_close_scaled(s, s_ref, tol)


def test_encoder_shapes_are_segmented_at_long_lengths() -> None:
    # H=8, P=32, N=64, chunk 64: 64k tokens run as several cache-sized segments of whole chunks, 1k in one.
    x = torch.zeros(1, 1, 8, 65536, 32)
    seg = ssd._segment_length(x, 64)
    assert seg % 64 == 0 and 64 <= seg < 65536
    assert ssd._segment_length(x[..., :1024, :], 64) >= 1024
    assert ssd._segment_length(x.to("meta"), 64) == 65536  # segments are a CPU cache measure only


def test_segmented_gradients_match_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    inputs = _inputs(2, 40, 4, 8, 2, 16, seed=2)
    grads = []
    for elements in (2**62, 2 * 4 * 4 * 4 * 3):  # one pass, then segments of 3 chunks of 4
        monkeypatch.setattr(ssd, "_SEGMENT_ELEMENTS", elements)
        leaves = [t.clone().requires_grad_(True) for t in inputs]
        y, s = ssd_scan(*leaves[:5], chunk_size=4, D=leaves[5], initial_state=leaves[6], return_final_state=True)
        (y.square().sum() + s.sin().sum()).backward()
        grads.append([t.grad for t in leaves])
    for got, want in zip(*grads):
        _assert_close_scaled(got, want, 1e-10)


def test_auto_backend_on_cpu_is_torch() -> None:
    x, dt, A, B, C, D, _ = _inputs(1, 33, 4, 8, 2, 16)
    torch.testing.assert_close(
        ssd_scan(x, dt, A, B, C, D=D, chunk_size=8, backend="auto"),
        ssd_scan(x, dt, A, B, C, D=D, chunk_size=8, backend="torch"),
        rtol=0,
        atol=0,
    )


# ---------------------------------------------------------------- gradients


@pytest.mark.parametrize(
    ("chunk_size", "long_path"),
    [(2, None), (3, None), (1, "scan"), (2, "scan"), (1, "blocked"), (2, "blocked"), (2, "segments")],
    ids=("matrix-form-2", "matrix-form-3", "scan-1", "scan-2", "blocked-1", "blocked-2", "segments-2"),
)
def test_gradcheck(chunk_size: int, long_path: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    # L=5 (padded for chunk sizes 2 and 3); H=2 heads share G=1 group, so the group broadcast is differentiated.
    b, L, H, P, G, N = 1, 5, 2, 2, 1, 2
    if long_path == "segments":
        monkeypatch.setattr(ssd, "_SEGMENT_ELEMENTS", b * H * chunk_size**2)  # one chunk per segment, padded last
    elif long_path:
        _force_long_path(monkeypatch, block=2, kind=long_path)  # 5 chunks at chunk_size 1: two levels of blocks
        assert _uses_long_path(b, -(-L // chunk_size), H, P, N)
    else:
        monkeypatch.setattr(ssd, "_MATRIX_FORM_BUDGET", 2**62)
    inputs = tuple(t.clone().requires_grad_(True) for t in _inputs(b, L, H, P, G, N, seed=1))

    def f(x, dt, A, B, C, D, S0):
        return ssd_scan(x, dt, A, B, C, chunk_size=chunk_size, D=D, initial_state=S0, return_final_state=True)

    assert torch.autograd.gradcheck(f, inputs, eps=1e-6, atol=1e-7, rtol=1e-6)


def test_gradients_match_reference() -> None:
    inputs = _inputs(2, 40, 4, 8, 2, 16, seed=2)
    grads = []
    for fn in (lambda *t: ssd_scan(*t[:5], chunk_size=16, D=t[5], initial_state=t[6], return_final_state=True),
               lambda *t: ssd_reference(*t[:5], D=t[5], initial_state=t[6], return_final_state=True)):
        leaves = [t.clone().requires_grad_(True) for t in inputs]
        y, s = fn(*leaves)
        (y.square().sum() + s.sin().sum()).backward()
        grads.append([t.grad for t in leaves])
    for got, want in zip(*grads):
        _assert_close_scaled(got, want, 1e-10)


# ---------------------------------------------------------------- input validation


def _bad_cases():
    x, dt, A, B, C, D, S0 = (t.float() for t in _inputs(1, 10, 4, 8, 2, 16))
    ok = dict(x=x, dt=dt, A=A, B=B, C=C, D=D, initial_state=S0)
    return [
        ("x-3d", {**ok, "x": x[0]}, r"x must be \[batch, length, heads, headdim\]"),
        ("dt-shape", {**ok, "dt": dt[:, :5]}, r"dt must be \(1, 10, 4\)"),
        ("A-shape", {**ok, "A": A[:3]}, r"A must be \[4\]"),
        ("B-C-mismatch", {**ok, "C": C[..., :8]}, r"B and C must both be"),
        ("B-length", {**ok, "B": B[:, :9], "C": C[:, :9]}, r"B and C must both be"),
        ("groups", {**ok, "B": B[:, :, :1].repeat(1, 1, 3, 1), "C": C[:, :, :1].repeat(1, 1, 3, 1)},
         r"heads \(4\) must be divisible by groups \(3\)"),
        ("D-shape", {**ok, "D": D[:2]}, r"D must be \[4\]"),
        ("state-shape", {**ok, "initial_state": S0[..., :5]}, r"initial_state must be \(1, 4, 8, 16\)"),
        ("empty", {**ok, **{k: ok[k][:, :0] for k in ("x", "dt", "B", "C")}}, r"empty sequence"),
    ]


@pytest.mark.parametrize("case", _bad_cases(), ids=lambda c: c[0])
def test_bad_shapes_raise_value_error(case) -> None:
    _, kwargs, msg = case
    args = [kwargs.pop(k) for k in ("x", "dt", "A", "B", "C")]
    with pytest.raises(ValueError, match=msg):
        ssd_scan(*args, **kwargs)


def test_bad_chunk_size_and_backend() -> None:
    x, dt, A, B, C, _, _ = _inputs(1, 10, 4, 8, 2, 16)
    with pytest.raises(ValueError, match="chunk_size must be positive"):
        ssd_scan(x, dt, A, B, C, chunk_size=0)
    with pytest.raises(ValueError, match="unknown backend 'jax'"):
        ssd_scan(x, dt, A, B, C, backend="jax")


def test_cuda_backend_on_cpu_tensors_is_a_clear_error() -> None:
    x, dt, A, B, C, _, _ = _inputs(1, 10, 4, 8, 2, 16)
    with pytest.raises(RuntimeError, match="backend='cuda' needs CUDA tensors"):
        ssd_scan(x, dt, A, B, C, backend="cuda")


# ---------------------------------------------------------------- CUDA kernel


def _mamba_ssm_importable() -> bool:
    if importlib.util.find_spec("mamba_ssm") is None:
        return False
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined  # noqa: F401
    except Exception:
        return False
    return True


@pytest.mark.cuda
@pytest.mark.skipif(
    not (torch.cuda.is_available() and _mamba_ssm_importable()), reason="needs CUDA and an importable mamba-ssm"
)
@pytest.mark.parametrize("L", (63, 1000))
def test_cuda_backend_matches_torch(L: int) -> None:
    dev = torch.device("cuda")
    x, dt, A, B, C, D, S0 = (t.float().to(dev) for t in _inputs(2, L, 8, 64, 2, 64, seed=3))
    kw = dict(chunk_size=64, D=D, initial_state=S0, return_final_state=True)
    y_k, s_k = ssd_scan(x, dt, A, B, C, backend="cuda", **kw)
    y_t, s_t = ssd_scan(x, dt, A, B, C, backend="torch", **kw)
    assert y_k.shape == y_t.shape and s_k.shape == s_t.shape
    # The Triton kernel may use TF32 matmuls; compare relative to the output scale.
    for got, want in ((y_k, y_t), (s_k, s_t)):
        rel = (got.float() - want).norm() / want.norm()
        assert rel < 5e-3, f"cuda vs torch relative error {rel:.2e}"
    # "auto" on CUDA tensors is the kernel: the same call (initial state included) gives the same numbers.
    y_auto, _ = ssd_scan(x, dt, A, B, C, backend="auto", **kw)
    torch.testing.assert_close(y_auto.float(), y_k.float(), rtol=1e-5, atol=1e-5)


@pytest.mark.cuda
@pytest.mark.skipif(
    not (torch.cuda.is_available() and _mamba_ssm_importable()), reason="needs CUDA and an importable mamba-ssm"
)
def test_grouped_cuda_backend_matches_torch() -> None:
    dev = torch.device("cuda")
    x, dt, A, B, C, D, _ = (t.float().to(dev) for t in _inputs(2, 1000, 8, 64, 4, 64, seed=4))
    grouped = (
        rearrange(x, "b l (g r) p -> b g r l p", g=4),
        rearrange(dt, "b l (g r) -> b g r l", g=4),
        A,
        rearrange(B, "b l g n -> b g l n"),
        rearrange(C, "b l g n -> b g l n"),
    )
    y_k = ssd_scan_grouped(*grouped, chunk_size=64, D=D, backend="cuda")
    y_t = ssd_scan_grouped(*grouped, chunk_size=64, D=D, backend="torch")
    rel = (y_k.float() - y_t).norm() / y_t.norm()
    assert rel < 5e-3, f"cuda vs torch relative error {rel:.2e}"
