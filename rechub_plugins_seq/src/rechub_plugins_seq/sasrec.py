"""SASRec — Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018.

Causal self-attention blocks over the history's item embeddings plus learned positions; the
user vector is the output at the last real item. Trained on every position of each user's
sequence (each next item is a target, padded positions masked out of the loss), with the item
embeddings shared between the input and the candidates.

Positions are counted on the compacted history (see :mod:`rechub_plugins_seq.base`): the
oldest kept item is position 0 whatever the padding layout, so a training prefix and the same
history at serving time are encoded identically.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rechub_core.errors import InputError
from rechub_core.features import Feature
from rechub_plugins_seq.base import SequentialModel, StepEncoder

NEG_INF = -1e9  # finite: a fully masked row (padding query) must not produce NaN


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t attends to real positions <= t."""

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        if dim % num_heads:
            raise InputError(
                f"SASRec embedding_dim={dim} must be divisible by num_heads={num_heads}"
            )
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.attn_dropout = nn.Dropout(dropout)
        self.out_dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        """``x (B, L, D)``, ``allowed (B, 1, L, L)`` bool -> ``(B, L, D)``."""
        b, length, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=-1)  # 3 x (B, L, D)
        shape = (b, length, self.num_heads, d // self.num_heads)
        q, k, v = (t.reshape(shape).transpose(1, 2) for t in (q, k, v))  # (B, h, L, d_h)
        scores = q @ k.transpose(-2, -1) / (d // self.num_heads) ** 0.5  # (B, h, L, L)
        attn = F.softmax(scores.masked_fill(~allowed, NEG_INF), dim=-1)  # (B, h, L, L)
        y = self.attn_dropout(attn) @ v  # (B, h, L, d_h)
        y = y.transpose(1, 2).reshape(b, length, d)  # (B, L, D)
        return self.out_dropout(self.proj(y))


class Block(nn.Module):
    """Pre-norm transformer block: attention and a point-wise feed-forward, both residual."""

    def __init__(self, dim: int, num_heads: int, hidden_size: int, dropout: float) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = CausalSelfAttention(dim, num_heads, dropout)
        self.ln2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, hidden_size),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_size, dim),
            nn.Dropout(dropout),
        )

    def forward(self, x: Tensor, allowed: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x), allowed)  # (B, L, D)
        return x + self.ffn(self.ln2(x))  # (B, L, D)


class SASRecEncoder(StepEncoder):
    """Causal self-attention over the history -> output at the last real item -> ``(B, D)``.

    Args:
        features: user features holding the history.
        embedding_dim: D (the transformer width).
        num_heads: attention heads (must divide D).
        num_layers: transformer blocks.
        hidden_size: feed-forward width.
        dropout: on embeddings, attention weights and residual branches.
        max_len: longest history read, and the size of the position table.
        normalize: L2-normalise the output.
    """

    model_name = "SASRec"

    def __init__(
        self,
        features: Sequence[Feature],
        embedding_dim: int = 32,
        num_heads: int = 4,
        num_layers: int = 2,
        hidden_size: int = 128,
        dropout: float = 0.2,
        max_len: int = 50,
        normalize: bool = False,
    ) -> None:
        super().__init__(features, embedding_dim, max_len, normalize)
        self.position = nn.Embedding(max_len, embedding_dim)
        nn.init.normal_(self.position.weight, std=0.02)
        self.emb_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            Block(embedding_dim, num_heads, hidden_size, dropout) for _ in range(num_layers)
        )
        self.ln_f = nn.LayerNorm(embedding_dim)

    def states(self, emb: Tensor, mask: Tensor) -> Tensor:
        length = emb.shape[1]
        pos = torch.arange(length, device=emb.device)  # (L,): compacted, so from the oldest kept
        x = emb * emb.shape[-1] ** 0.5 + self.position(pos).unsqueeze(0)  # (B, L, D)
        x = self.emb_dropout(x) * mask.unsqueeze(-1).to(x.dtype)  # (B, L, D)
        causal = torch.ones(length, length, dtype=torch.bool, device=emb.device).tril()  # (L, L)
        allowed = (causal.unsqueeze(0) & mask.unsqueeze(1)).unsqueeze(1)  # (B, 1, L, L)
        for block in self.blocks:
            x = block(x, allowed)
        return self.ln_f(x)  # (B, L, D)


class SASRec(SequentialModel):
    """SASRec (Kang & McAuley, ICDM 2018) as a two-tower retrieval model, trained on every
    position of each user's sequence.

    Args:
        user_features: must hold the ordered history (``SequenceFeature``, ``pooling=None``,
            ``shared_with`` the item id: the input and candidate embeddings are one table).
        item_features: the item id ``SparseFeature``.
        embedding_dim: D.
        num_heads: attention heads.
        num_layers: transformer blocks.
        hidden_size: feed-forward width.
        dropout: dropout probability.
        temperature: cosine similarity is divided by it.
        max_len: longest history read (position table size).
        normalize: cosine scoring.
    """

    encoder_class = SASRecEncoder
    trains_on_sequences = True

    def __init__(
        self,
        user_features: Sequence[Feature],
        item_features: Sequence[Feature],
        embedding_dim: int = 32,
        num_heads: int = 4,
        num_layers: int = 2,
        hidden_size: int = 128,
        dropout: float = 0.2,
        temperature: float = 0.02,
        max_len: int = 50,
        normalize: bool = True,
    ) -> None:
        super().__init__(
            user_features,
            item_features,
            temperature,
            normalize,
            embedding_dim=embedding_dim,
            num_heads=num_heads,
            num_layers=num_layers,
            hidden_size=hidden_size,
            dropout=dropout,
            max_len=max_len,
        )
