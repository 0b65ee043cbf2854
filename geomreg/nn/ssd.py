"""Structured State Space Duality (Mamba-2 SSD) in pure PyTorch.

The recurrence, for every batch element and head (S is a [P, N] state):

    S_t = exp(dt_t * A) * S_{t-1} + dt_t * outer(x_t, B_t)
    y_t = S_t @ C_t + D * x_t

is evaluated with the chunked SSD algorithm of the Mamba-2 paper (Dao & Gu, 2024):

1. inside a chunk of T steps the output is a masked, decay-weighted "attention" product
   ``(C B^T ∘ L) X`` (quadratic in T only);
2. every chunk summarises its contribution as a state [P, N];
3. a linear recurrence carries the states from chunk to chunk;
4. each step reads the state that entered its chunk through its own C.

Cost is O(L T) instead of O(L^2), and there is no Python loop over time steps. On CPU a long sequence is
processed in segments of whole chunks with the state carried between them, so that each step's tensors stay
cache-sized and the time per token does not grow with L (benchmarks/ssd_bench.py reports the growth). ``ssd_reference``
is the step-by-step recurrence kept as the readable definition that tests compare against.
When CUDA and ``mamba-ssm`` are present, ``backend="cuda"`` (or ``"auto"``) routes through its fused
chunked-scan Triton kernel, which computes the same quantity.
"""

from __future__ import annotations

import functools
import logging

import torch
import torch.nn.functional as F
from einops import rearrange, repeat

log = logging.getLogger(__name__)

# The chunk-to-chunk recurrence is one [chunks x chunks] matrix product while that product stays cheap
# (element count below this budget); beyond it, a scan over chunks keeps the cost linear in L.
_MATRIX_FORM_BUDGET = 2**26
_RECURRENCE_BLOCK = 64
# Below this many state elements per chunk (batch x heads x headdim x state), blocks of chunks in matrix form
# beat a step per chunk.
_SMALL_STATE = 4096
# On CPU a long sequence is scanned in segments of whole chunks, the state carried from one to the next, so
# that each segment's [batch, heads, tokens, chunk] tensors (elements) stay cache-sized: linear time in L.
# 2^20 (4 MiB in float32, an L2 cache) keeps the encoder's segments at <= 64 chunks, in matrix form.
_SEGMENT_ELEMENTS = 2**20
# Decay factors below this (e^-60) are far below float32's resolution beside the terms they are summed with,
# but their products turn subnormal, which x86 CPUs compute tens of times slower: they are set to exact zeros.
_NEGLIGIBLE_DECAY = 1e-26


def _decay(log_decay: torch.Tensor, scratch: bool = False) -> torch.Tensor:
    """exp(log_decay), with negligible factors flushed to zero (see ``_NEGLIGIBLE_DECAY``). With ``scratch``
    the caller gives ``log_decay`` up, and it is overwritten when autograd does not need it."""
    if torch.is_grad_enabled() and log_decay.requires_grad:
        return F.threshold(torch.exp(log_decay), _NEGLIGIBLE_DECAY, 0.0)
    out = log_decay.exp_() if scratch else torch.exp(log_decay)
    return F.threshold_(out, _NEGLIGIBLE_DECAY, 0.0)


def segsum(a: torch.Tensor) -> torch.Tensor:
    """Stable segment sums: out[..., i, j] = sum(a[..., j+1 : i+1]) for i >= j, -inf above the diagonal.

    a: [..., T] -> [..., T, T]. Summing masked copies (rather than differencing one cumsum)
    keeps float32 precise when the cumulative decay is large.
    """
    T = a.shape[-1]
    a = repeat(a, "... t -> ... t s", s=T)
    below = torch.tril(torch.ones(T, T, dtype=torch.bool, device=a.device), diagonal=-1)
    a = a.masked_fill(~below, 0.0)
    out = torch.cumsum(a, dim=-2)
    keep = torch.tril(torch.ones(T, T, dtype=torch.bool, device=a.device), diagonal=0)
    return out.masked_fill(~keep, float("-inf"))


def _check_inputs(x, dt, A, B, C, D, initial_state) -> None:
    if x.ndim != 4:
        raise ValueError(f"ssd_scan: x must be [batch, length, heads, headdim], got shape {tuple(x.shape)}")
    b, L, H, P = x.shape
    if dt.shape != (b, L, H):
        raise ValueError(f"ssd_scan: dt must be {(b, L, H)}, got {tuple(dt.shape)}")
    if A.shape != (H,):
        raise ValueError(f"ssd_scan: A must be [{H}], got {tuple(A.shape)}")
    if B.ndim != 4 or B.shape[:2] != (b, L) or B.shape != C.shape:
        raise ValueError(
            f"ssd_scan: B and C must both be [batch={b}, length={L}, groups, state], got {tuple(B.shape)} and {tuple(C.shape)}"
        )
    if H % B.shape[2] != 0:
        raise ValueError(f"ssd_scan: heads ({H}) must be divisible by groups ({B.shape[2]})")
    if D is not None and D.shape != (H,):
        raise ValueError(f"ssd_scan: D must be [{H}], got {tuple(D.shape)}")
    if initial_state is not None and initial_state.shape != (b, H, P, B.shape[3]):
        raise ValueError(f"ssd_scan: initial_state must be {(b, H, P, B.shape[3])}, got {tuple(initial_state.shape)}")
    if L == 0:
        raise ValueError("ssd_scan: empty sequence (length 0)")


def _chunk_recurrence(states: torch.Tensor, chunk_decay: torch.Tensor) -> torch.Tensor:
    """Carry chunk states across chunks: s_k = exp(chunk_decay_k) * s_{k-1} + u_k.

    states: [b, c+1, h, p, n] (entry 0 is the initial state s_0, then the inputs u_1..u_c),
    chunk_decay: [b, h, c] (log decay of each chunk).
    returns [b, c+1, h, p, n]: s_0 .. s_c (the state entering chunk k at index k, the final state at c).
    """
    b, c1, h, p, n = states.shape
    c = c1 - 1
    if c <= _RECURRENCE_BLOCK or c1 * c1 * h * p * n * b <= _MATRIX_FORM_BUDGET:
        decay = _decay(segsum(F.pad(chunk_decay, (1, 0))), scratch=True)  # [b, h, c+1, c+1]
        return torch.einsum("bhzc,bchpn->bzhpn", decay, states)
    if b * h * p * n <= _SMALL_STATE:
        # Tiny states (the 1/2-scale maps: thousands of chunks of a 4x4 state): blocks of chunks in matrix
        # form, then the same recurrence over the blocks. A Python step per chunk would cost more than the
        # arithmetic here.
        return _blocked_recurrence(states, chunk_decay)
    # Too many chunks for one [chunks x chunks] matrix: a sequential scan over chunks (never over time
    # steps), in place in one time-major buffer, with its own backward (the reverse scan).
    return _ChunkScan.apply(states, chunk_decay)


def _blocked_recurrence(states: torch.Tensor, chunk_decay: torch.Tensor) -> torch.Tensor:
    """Same contract as ``_chunk_recurrence``; O(chunks x block) work, recursion depth log_block(chunks)."""
    b, c1, h, p, n = states.shape
    c, K = c1 - 1, _RECURRENCE_BLOCK
    nb = -(-c // K)
    pad = nb * K - c
    # Padded chunks have no input and no decay (log decay 0): they carry the state unchanged.
    u = rearrange(F.pad(states[:, 1:], (0, 0, 0, 0, 0, 0, 0, pad)), "b (k t) h p n -> b k t h p n", t=K)
    log_f = rearrange(F.pad(chunk_decay, (0, pad)), "b h (k t) -> b h k t", t=K)
    # 1. inside each block, from a zero entering state: local_t = sum_{j<=t} exp(log_f[j+1..t]) u_j
    local = torch.einsum("bhktj,bkjhpn->bkthpn", _decay(segsum(log_f), scratch=True), u)
    # 2. the states entering each block: the same recurrence over blocks (block inputs = local block ends)
    block_in = torch.cat([states[:, :1], local[:, :, -1]], dim=1)  # [b, nb+1, h, p, n]
    entering = _chunk_recurrence(block_in, log_f.sum(-1))[:, :-1]  # [b, nb, h, p, n]
    # 3. every chunk's state = its local part + the entering state decayed through the block so far
    carried = _decay(torch.cumsum(log_f, dim=-1), scratch=True)  # [b, h, nb, K]
    out = local + rearrange(carried, "b h k t -> b k t h 1 1") * entering[:, :, None]
    out = rearrange(out, "b k t h p n -> b (k t) h p n")[:, :c]
    return torch.cat([states[:, :1], out], dim=1)


class _ChunkScan(torch.autograd.Function):
    """s_0 = u_0, s_k = f_k * s_{k-1} + u_k with f_k = exp(log_f[k-1]). u [b, c+1, h, p, n], log_f [b, h, c]."""

    @staticmethod
    def forward(ctx, u: torch.Tensor, log_f: torch.Tensor) -> torch.Tensor:
        f = _decay(log_f).permute(2, 0, 1)[..., None, None].contiguous()  # [c, b, h, 1, 1]
        s = u.movedim(1, 0).clone(memory_format=torch.contiguous_format)  # [c+1, b, h, p, n], never a view of u
        for k in range(f.shape[0]):
            s[k + 1].addcmul_(f[k], s[k])
        ctx.save_for_backward(s, f)
        return s.movedim(0, 1).clone()  # a fresh tensor: callers may slice and modify it

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        s, f = ctx.saved_tensors
        g = grad.movedim(1, 0).clone(memory_format=torch.contiguous_format)  # dL/du_k = g_k + f_{k+1} dL/du_{k+1}
        for k in range(f.shape[0] - 1, -1, -1):
            g[k].addcmul_(f[k], g[k + 1])
        # dL/dlog_f[k] = f_k * <dL/ds_{k+1} (accumulated), s_k>
        grad_log_f = (g[1:] * s[:-1]).sum(dim=(-1, -2), keepdim=True) * f  # [c, b, h, 1, 1]
        return g.movedim(0, 1), grad_log_f[..., 0, 0].permute(1, 2, 0)


def _ssd_torch(x, dt, A, B, C, chunk_size, D, initial_state, return_final_state):
    G = B.shape[2]
    y, final_state = ssd_chunked(
        rearrange(x, "b l (g r) p -> b g r l p", g=G),
        rearrange(dt, "b l (g r) -> b g r l", g=G),
        A,
        rearrange(B, "b l g n -> b g l n"),
        rearrange(C, "b l g n -> b g l n"),
        chunk_size,
        D=D,
        initial_state=initial_state,
    )
    y = rearrange(y, "b g r l p -> b l (g r) p")
    if return_final_state:
        return y, final_state
    return y


def ssd_chunked(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    chunk_size: int,
    D: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The chunked SSD on group-major tensors: the layout the algorithm works in.

    x [b, G, R, L, P], dt [b, G, R, L], A [G*R], B, C [b, G, L, N], D [G*R] or None,
    initial_state [b, G*R, P, N] or None -> y [b, G, R, L, P], final state [b, G*R, P, N].
    Head h = (g, r) reads group g, as in ``ssd_scan``. Callers that already hold their tokens group-major (the 2-D scan: one group per direction) call this
    directly and skip two full-size copies per tensor.
    """
    b, G, R, L, P = x.shape
    in_dtype = x.dtype
    # Low-precision inputs are computed in float32: the decays are exponentials of cumulative sums.
    work = torch.float32 if in_dtype in (torch.float16, torch.bfloat16) else in_dtype
    x, dt, A, B, C = (t.to(work) for t in (x, dt, A, B, C))
    D = None if D is None else D.to(work)
    state = None if initial_state is None else initial_state.to(work)

    T = min(chunk_size, L)
    seg = _segment_length(x, T)
    # Without autograd every segment writes its last op straight into the output (no list, no final copy).
    tracked = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, dt, A, B, C, D, state))
    y = None if tracked or seg >= L else x.new_empty(x.shape)
    ys = []
    for s in range(0, L, seg):
        e = min(L, s + seg)
        out = None if y is None else y[..., s:e, :]
        y_seg, state = _ssd_segment(x[..., s:e, :], dt[..., s:e], A, B[..., s:e, :], C[..., s:e, :], T, D, state, out)
        ys.append(y_seg)
    if y is None:
        y = ys[0] if len(ys) == 1 else torch.cat(ys, dim=-2)
    return y.to(in_dtype), state.to(in_dtype)


def _segment_length(x: torch.Tensor, T: int) -> int:
    """Tokens per segment: whole chunks, so that the segment's [b, heads, tokens, T] working tensors stay
    within ``_SEGMENT_ELEMENTS`` (CPU only). Each op then works in cache, and every length runs the same
    segments: in one pass over a 64k-token sequence the same arithmetic streams 100+ MB tensors through
    memory and per-token time grew ~2x."""
    b, G, R, L, _ = x.shape
    if x.device.type != "cpu":
        return L
    per_chunk = b * G * R * T * T
    return max(1, _SEGMENT_ELEMENTS // per_chunk) * T


def _ssd_segment(x, dt, A, B, C, T, D, initial_state, out=None):
    """The chunked SSD over one segment (inputs already in the working dtype): same layout as
    ``ssd_chunked``; returns y [b, G, R, L, P] (written into ``out`` when given) and the state after the
    segment [b, G*R, P, N]."""
    b, G, R, L, P = x.shape
    pad = (-L) % T
    if pad:
        # dt = 0 on padded steps: no decay and no input, so the state (and the final state) is unchanged.
        x, B, C = F.pad(x, (0, 0, 0, pad)), F.pad(B, (0, 0, 0, pad)), F.pad(C, (0, 0, 0, pad))
        dt = F.pad(dt, (0, pad))

    # Layout [b, g, r, c, t, d]: every chunk of every head is a small matrix problem for batched matmul.
    # B and C stay per group, so C.B^T is computed once per group, not per head.
    x_c = rearrange(x * dt[..., None], "b g r (c t) p -> b g r c t p", t=T)
    B_c = rearrange(B, "b g (c t) n -> b g c t n", t=T)[:, :, None]  # [b, g, 1, c, t, n]
    C_c = rearrange(C, "b g (c t) n -> b g c t n", t=T)[:, :, None]
    a_cum = torch.cumsum(rearrange(dt * rearrange(A, "(g r) -> g r 1", g=G), "b g r (c t) -> b g r c t", t=T), dim=-1)  # log decay

    # 1. intra-chunk (diagonal blocks): y_l = sum_{s<=l} C_l.B_s exp(a_{s+1..l}) dt_s x_s
    #    (the difference of cumulative sums, as in mamba-ssm's kernel, masked above the diagonal)
    causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
    decay_in = _decay((a_cum[..., :, None] - a_cum[..., None, :]).masked_fill(~causal, float("-inf")), scratch=True)
    scores = torch.matmul(C_c, B_c.transpose(-1, -2)) * decay_in  # [b, g, r, c, t, t]
    y = torch.matmul(scores, x_c)  # [b, g, r, c, t, p]

    # 2. state of every chunk from its own inputs, decayed to the chunk end
    decay_to_end = _decay(a_cum[..., -1:] - a_cum, scratch=True)  # [b, g, r, c, t]
    chunk_states = torch.matmul((x_c * decay_to_end[..., None]).transpose(-1, -2), B_c)  # [b, g, r, c, p, n]

    # 3. chunk-to-chunk recurrence
    chunk_states = rearrange(chunk_states, "b g r c p n -> b c (g r) p n")
    init = torch.zeros_like(chunk_states[:, :1]) if initial_state is None else initial_state[:, None]
    states = _chunk_recurrence(torch.cat([init, chunk_states], dim=1), rearrange(a_cum[..., -1], "b g r c -> b (g r) c"))
    entering, final_state = states[:, :-1], states[:, -1]

    # 4. read the entering state through C, decayed from the chunk start
    entering = rearrange(entering, "b c (g r) p n -> b g r c n p", g=G)
    y = y + torch.matmul(C_c, entering) * _decay(a_cum)[..., None]

    y = rearrange(y, "b g r c t p -> b g r (c t) p")[..., :L, :]
    if D is not None:
        skip = rearrange(D, "(g r) -> g r 1 1", g=G)
        y = torch.addcmul(y, x[..., :L, :], skip) if out is None else torch.addcmul(y, x[..., :L, :], skip, out=out)
    elif out is not None:
        y = out.copy_(y)
    return y, final_state


@functools.cache
def _mamba_kernel():
    try:
        from mamba_ssm.ops.triton.ssd_combined import mamba_chunk_scan_combined
    except Exception as exc:  # ImportError, or a broken CUDA build
        log.debug("mamba-ssm fast path unavailable: %s", exc)
        return None
    return mamba_chunk_scan_combined


def cuda_kernel_available() -> bool:
    """True when the fused mamba-ssm kernel can run (CUDA present and mamba-ssm importable)."""
    return torch.cuda.is_available() and _mamba_kernel() is not None


def _use_kernel(backend: str, x: torch.Tensor, caller: str) -> bool:
    """Validate ``backend`` and say whether it routes to mamba-ssm's kernel (shared by both entry points)."""
    if backend not in ("torch", "cuda", "auto"):
        raise ValueError(f"{caller}: unknown backend {backend!r} (torch, cuda or auto)")
    return backend == "cuda" or (backend == "auto" and x.is_cuda and _mamba_kernel() is not None)


def ssd_scan(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    *,
    chunk_size: int = 64,
    D: torch.Tensor | None = None,
    initial_state: torch.Tensor | None = None,
    return_final_state: bool = False,
    backend: str = "torch",
):
    """Mamba-2 selective scan (see module docstring for the recurrence).

    x [Bt, L, H, P], dt [Bt, L, H] (positive), A [H] (negative), B, C [Bt, L, G, N], D [H] or None,
    initial_state [Bt, H, P, N] or None. Returns y [Bt, L, H, P] (and the final state [Bt, H, P, N]).

    backend: "torch" (pure, runs anywhere), "cuda" (mamba-ssm fused kernel, CUDA tensors only) or
    "auto" (the kernel when the tensors are on CUDA and mamba-ssm is installed, else pure PyTorch).
    """
    _check_inputs(x, dt, A, B, C, D, initial_state)
    if chunk_size < 1:
        raise ValueError(f"ssd_scan: chunk_size must be positive, got {chunk_size}")
    if _use_kernel(backend, x, "ssd_scan"):
        kernel = _mamba_kernel()
        if kernel is None or not x.is_cuda:
            raise RuntimeError("ssd_scan: backend='cuda' needs CUDA tensors and the mamba-ssm package (pip install geomreg[gpu])")
        out = kernel(
            x, dt, A, B, C, chunk_size, D=D, initial_states=initial_state, return_final_states=return_final_state
        )
        return out
    return _ssd_torch(x, dt, A, B, C, chunk_size, D, initial_state, return_final_state)


def ssd_scan_grouped(
    x: torch.Tensor,
    dt: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    *,
    chunk_size: int = 64,
    D: torch.Tensor | None = None,
    backend: str = "torch",
) -> torch.Tensor:
    """``ssd_scan`` for callers whose tokens are group-major: x [b, G, R, L, P], dt [b, G, R, L],
    B, C [b, G, L, N] -> y [b, G, R, L, P]. Same recurrence and backends; the pure path skips the
    layout copies ``ssd_scan`` makes (the 2-D scan keeps each direction's tokens apart anyway)."""
    if _use_kernel(backend, x, "ssd_scan_grouped"):
        G = x.shape[1]
        y = ssd_scan(
            rearrange(x, "b g r l p -> b l (g r) p"),
            rearrange(dt, "b g r l -> b l (g r)"),
            A,
            rearrange(B, "b g l n -> b l g n"),
            rearrange(C, "b g l n -> b l g n"),
            chunk_size=chunk_size,
            D=D,
            backend=backend,
        )
        return rearrange(y, "b l (g r) p -> b g r l p", g=G)
    if chunk_size < 1:
        raise ValueError(f"ssd_scan_grouped: chunk_size must be positive, got {chunk_size}")
    return ssd_chunked(x, dt, A, B, C, chunk_size, D=D)[0]


def ssd_reference(x, dt, A, B, C, *, D=None, initial_state=None, return_final_state=False):
    """The recurrence, one time step at a time. Slow; the definition the chunked form must match."""
    b, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    B = repeat(B, "b l g n -> b l (g r) n", r=H // G)
    C = repeat(C, "b l g n -> b l (g r) n", r=H // G)
    S = x.new_zeros(b, H, P, N) if initial_state is None else initial_state.clone()
    ys = []
    for t in range(L):
        decay = torch.exp(dt[:, t] * A)  # [b, h]
        S = decay[..., None, None] * S + dt[:, t, :, None, None] * x[:, t, :, :, None] * B[:, t, :, None, :]
        ys.append(torch.einsum("bhpn,bhn->bhp", S, C[:, t]))
    y = torch.stack(ys, dim=1)
    if D is not None:
        y = y + x * D[:, None]
    return (y, S) if return_final_state else y
