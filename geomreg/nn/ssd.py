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

Cost is O(L T) instead of O(L^2), and there is no Python loop over time steps. ``ssd_reference``
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

# Above this many chunks the chunk-to-chunk recurrence is run as a scan instead of as one
# [chunks x chunks] matrix product, so the cost stays linear in L for very long sequences.
_MATRIX_FORM_MAX_CHUNKS = 128


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
    """Carry chunk states across chunks.

    states: [b, c+1, h, p, n] (entry 0 is the initial state), chunk_decay: [b, h, c] (log decay of each chunk)
    returns [b, c+1, h, p, n]: the state entering chunk k at index k, the final state at index c.
    """
    n_chunks = chunk_decay.shape[-1]
    if n_chunks <= _MATRIX_FORM_MAX_CHUNKS:
        decay = torch.exp(segsum(F.pad(chunk_decay, (1, 0))))  # [b, h, c+1, c+1]
        return torch.einsum("bhzc,bchpn->bzhpn", decay, states)
    # Linear-time scan over chunks (a loop over chunks, never over time steps).
    factors = torch.exp(chunk_decay)  # [b, h, c]
    out = [states[:, 0]]
    for k in range(n_chunks):
        out.append(factors[:, :, k, None, None] * out[-1] + states[:, k + 1])
    return torch.stack(out, dim=1)


def _ssd_torch(x, dt, A, B, C, chunk_size, D, initial_state, return_final_state):
    b, L, H, P = x.shape
    G, N = B.shape[2], B.shape[3]
    in_dtype = x.dtype
    # Low-precision inputs are computed in float32: the decays are exponentials of cumulative sums.
    work = torch.float32 if in_dtype in (torch.float16, torch.bfloat16) else in_dtype
    x, dt, A, B, C = (t.to(work) for t in (x, dt, A, B, C))

    # Heads share B/C within a group: head h reads group h // (H // G).
    B = repeat(B, "b l g n -> b l (g r) n", r=H // G)
    C = repeat(C, "b l g n -> b l (g r) n", r=H // G)

    T = chunk_size
    pad = (-L) % T
    if pad:
        # dt = 0 on padded steps: no decay and no input, so the state (and the final state) is unchanged.
        x, B, C = (F.pad(t, (0, 0, 0, 0, 0, pad)) for t in (x, B, C))
        dt = F.pad(dt, (0, 0, 0, pad))

    xdt = x * dt[..., None]  # [b, L, h, p]
    x_c, B_c, C_c = (rearrange(t, "b (c t) h d -> b c t h d", t=T) for t in (xdt, B, C))
    a = rearrange(dt * A, "b (c t) h -> b h c t", t=T)  # log decay per step
    a_cum = torch.cumsum(a, dim=-1)  # [b, h, c, t]

    # 1. intra-chunk (diagonal blocks): y_l = sum_{s<=l} C_l.B_s exp(a_{s+1..l}) dt_s x_s
    decay_in = torch.exp(segsum(a))  # [b, h, c, t, t]
    y_diag = torch.einsum("bclhn,bcshn,bhcls,bcshp->bclhp", C_c, B_c, decay_in, x_c)

    # 2. state of every chunk from its own inputs, decayed to the chunk end
    decay_to_end = torch.exp(a_cum[..., -1:] - a_cum)  # [b, h, c, t]
    chunk_states = torch.einsum("bclhn,bhcl,bclhp->bchpn", B_c, decay_to_end, x_c)

    # 3. chunk-to-chunk recurrence
    if initial_state is None:
        init = torch.zeros_like(chunk_states[:, :1])
    else:
        init = initial_state.to(work)[:, None]
    states = _chunk_recurrence(torch.cat([init, chunk_states], dim=1), a_cum[..., -1])
    entering, final_state = states[:, :-1], states[:, -1]

    # 4. read the entering state through C, decayed from the chunk start
    decay_from_start = torch.exp(a_cum)  # [b, h, c, t]
    y_off = torch.einsum("bclhn,bchpn,bhcl->bclhp", C_c, entering, decay_from_start)

    y = rearrange(y_diag + y_off, "b c t h p -> b (c t) h p")[:, :L]
    if D is not None:
        y = y + x[:, :L] * D.to(work)[:, None]
    y = y.to(in_dtype)
    if return_final_state:
        return y, final_state.to(in_dtype)
    return y


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
    if backend not in ("torch", "cuda", "auto"):
        raise ValueError(f"ssd_scan: unknown backend {backend!r} (torch, cuda or auto)")
    use_kernel = backend == "cuda" or (backend == "auto" and x.is_cuda and _mamba_kernel() is not None)
    if use_kernel:
        kernel = _mamba_kernel()
        if kernel is None or not x.is_cuda:
            raise RuntimeError("ssd_scan: backend='cuda' needs CUDA tensors and the mamba-ssm package (pip install geomreg[gpu])")
        out = kernel(
            x, dt, A, B, C, chunk_size, D=D, initial_states=initial_state, return_final_states=return_final_state
        )
        return out
    return _ssd_torch(x, dt, A, B, C, chunk_size, D, initial_state, return_final_state)


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
