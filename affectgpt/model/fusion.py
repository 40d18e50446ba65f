"""From encoder tokens to a few LLM tokens: pooling (Q-Former, attention, mean), projector, pre-fusion.

Every pool maps ``x [B, T, P, D]`` (T time steps of P tokens) with an optional validity mask ``[B, T, P]`` to
``[B, num_queries, D]``; the projector then maps D to the LLM's hidden size.

Attention is written with plain ``nn.Linear`` + ``scaled_dot_product_attention`` rather than
``nn.MultiheadAttention``: the latter reads ``out_proj.weight`` without calling ``out_proj``, which DeepSpeed
ZeRO-3 (it gathers a module's parameters when the module is called) would see as an empty tensor.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head attention of ``x`` over ``context`` (self-attention when they are the same tensor)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"fusion_heads={heads} does not divide the feature width {dim}")
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        b, n, d = x.shape
        q = self.q(x).view(b, n, self.heads, -1).transpose(1, 2)
        k, v = self.kv(context).view(b, context.shape[1], 2, self.heads, -1).permute(2, 0, 3, 1, 4)
        attn_mask = None if mask is None else mask[:, None, None, :]  # True = attend
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)
        return self.out(y.transpose(1, 2).reshape(b, n, d))


class TemporalEmbedding(nn.Module):
    """Adds a learned vector per time step (frame) so pooling over all tokens still knows their order."""

    def __init__(self, num_times: int, dim: int):
        super().__init__()
        self.table = nn.Parameter(torch.randn(num_times, dim) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > self.table.shape[0]:
            raise ValueError(f"got {x.shape[1]} time steps, the model was built for at most {self.table.shape[0]}")
        return x + self.table[: x.shape[1], None, :]


class MeanPool(nn.Module):
    """Averages valid tokens over ``num_queries`` contiguous spans of the time-ordered token sequence."""

    def __init__(self, num_queries: int):
        super().__init__()
        self.num_queries = num_queries

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x.flatten(1, 2)
        n = x.shape[1]
        weight = x.new_ones(x.shape[:2]) if mask is None else mask.flatten(1).to(x.dtype)
        span = torch.arange(n, device=x.device) * self.num_queries // n
        groups = (span[None, :] == torch.arange(self.num_queries, device=x.device)[:, None]).to(x.dtype)  # [Q, N]
        total = torch.einsum("qn,bn,bnd->bqd", groups, weight, x)
        count = torch.einsum("qn,bn->bq", groups, weight).clamp_min(1.0)
        return total / count[..., None]


class AttentionPool(nn.Module):
    """Learned queries, one softmax over all tokens each: ``num_queries`` weighted averages."""

    def __init__(self, dim: int, num_queries: int, num_times: int):
        super().__init__()
        self.time = TemporalEmbedding(num_times, dim)
        self.queries = nn.Parameter(torch.randn(num_queries, dim) * 0.02)
        self.key = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        x = self.time(x).flatten(1, 2)
        scores = torch.einsum("qd,bnd->bqn", self.queries, self.key(x)) / x.shape[-1] ** 0.5
        if mask is not None:
            scores = scores.masked_fill(~mask.flatten(1)[:, None, :], torch.finfo(scores.dtype).min)
        return scores.softmax(-1) @ x


class QFormerLayer(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.norm_self = nn.LayerNorm(dim)
        self.self_attn = Attention(dim, heads)
        self.norm_cross = nn.LayerNorm(dim)
        self.cross_attn = Attention(dim, heads)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, q: torch.Tensor, context: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        h = self.norm_self(q)
        q = q + self.self_attn(h, h)
        q = q + self.cross_attn(self.norm_cross(q), context, mask)
        return q + self.mlp(self.norm_mlp(q))


class QFormer(nn.Module):
    """BLIP-2-style querying transformer: learned queries attend to each other and to the encoder tokens."""

    def __init__(self, dim: int, num_queries: int, num_times: int, layers: int, heads: int):
        super().__init__()
        self.time = TemporalEmbedding(num_times, dim)
        self.norm_context = nn.LayerNorm(dim)
        self.queries = nn.Parameter(torch.randn(num_queries, dim) * 0.02)
        self.layers = nn.ModuleList(QFormerLayer(dim, heads) for _ in range(layers))
        self.norm_out = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        context = self.norm_context(self.time(x).flatten(1, 2))
        mask = None if mask is None else mask.flatten(1)
        q = self.queries.expand(x.shape[0], -1, -1)
        for layer in self.layers:
            q = layer(q, context, mask)
        return self.norm_out(q)


def build_pool(kind: str, dim: int, num_queries: int, num_times: int, layers: int, heads: int) -> nn.Module:
    if kind == "qformer":
        return QFormer(dim, num_queries, num_times, layers, heads)
    if kind == "attention":
        return AttentionPool(dim, num_queries, num_times)
    if kind == "mean":
        return MeanPool(num_queries)
    raise ValueError(f"unknown fusion {kind!r}")


class Projector(nn.Module):
    """Two-layer MLP from the encoder width to the LLM's hidden size (as LLaVA-1.5)."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PreFusion(nn.Module):
    """A few learned tokens that attend over the video and audio tokens together, in the LLM's space."""

    def __init__(self, hidden: int, num_tokens: int, heads: int):
        super().__init__()
        self.queries = nn.Parameter(torch.randn(num_tokens, hidden) * 0.02)
        self.norm = nn.LayerNorm(hidden)
        self.attn = Attention(hidden, heads)

    def forward(self, *streams: torch.Tensor) -> torch.Tensor:
        context = self.norm(torch.cat(streams, dim=1))
        return self.attn(self.queries.expand(context.shape[0], -1, -1), context)
