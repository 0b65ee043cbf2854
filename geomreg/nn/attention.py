"""Multi-head attention with an ``nn.MultiheadAttention``'s weights, through ``F.scaled_dot_product_attention``.

Why: for many short sequences (the fine stage mixes thousands of 49-token windows per pair) the module's own
forward, its fused CPU path included, took two to three times as long as the same projections around SDPA. The
module stays the owner of the weights, so checkpoints and their state-dict keys are unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


def attend(attn: nn.MultiheadAttention, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor) -> torch.Tensor:
    """``attn(query, key, value, need_weights=False)[0]`` for batch-first inputs: query [B, Lq, C], key and
    value [B, Lk, C] -> [B, Lq, C]. Modules with separate key/value sizes, key biases or zero attention are
    refused (this model has none)."""
    if not attn.batch_first or not attn._qkv_same_embed_dim or attn.bias_k is not None or attn.add_zero_attn or attn.in_proj_bias is None:
        raise ValueError("attend: needs a batch-first nn.MultiheadAttention with one in-projection and its bias")
    c, h = attn.embed_dim, attn.num_heads
    w, b = attn.in_proj_weight, attn.in_proj_bias
    # Three projections rather than one fused and chunked: SDPA is faster on the contiguous results.
    q, k, v = (
        rearrange(F.linear(t, w[i * c : (i + 1) * c], b[i * c : (i + 1) * c]), "b l (h d) -> b h l d", h=h)
        for i, t in enumerate((query, key, value))
    )
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=attn.dropout if attn.training else 0.0)  # [B, h, Lq, d]
    return attn.out_proj(rearrange(out, "b h l d -> b l (h d)"))
