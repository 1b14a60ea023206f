"""STAMP — Liu et al., "STAMP: Short-Term Attention/Memory Priority Model for Session-based
Recommendation", KDD 2018.

The memory is the history's embeddings, ``m_s`` their mean and ``m_t`` the last click (the
short-term interest). Attention ``alpha_i = w0^T sigmoid(W1 x_i + W2 m_t + W3 m_s + b)`` pools
the memory into ``m_a``; the user vector is ``tanh(MLP_A(m_a)) * tanh(MLP_B(m_t))``, so the
score with an item embedding is the paper's trilinear composition.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from rechub_core.features import Feature
from rechub_core.history import renamed_keywords
from rechub_core.layers import PackedPositions, gather_last, masked_mean
from rechub_plugins_seq.base import SequentialModel, StepEncoder


class STAMPEncoder(StepEncoder):
    """Attention over the history memory with the last click as query -> ``(B, D)``.

    Args:
        features: user features holding the history.
        embed_dim: D (default: the history's embed_dim).
        hidden_size: attention width.
        dropout: on the item embeddings.
        max_len: longest history read.
        normalize: L2-normalise the output.
    """

    model_name = "STAMP"

    @renamed_keywords(embedding_dim="embed_dim")
    def __init__(
        self,
        features: Sequence[Feature],
        embed_dim: int | None = None,
        hidden_size: int = 128,
        dropout: float = 0.2,
        max_len: int = 50,
        normalize: bool = False,
    ) -> None:
        super().__init__(features, embed_dim, max_len, normalize)
        d = self.output_dim
        self.dropout = nn.Dropout(dropout)
        self.w1 = nn.Linear(d, hidden_size, bias=False)
        self.w2 = nn.Linear(d, hidden_size, bias=False)
        self.w3 = nn.Linear(d, hidden_size, bias=True)
        self.w0 = nn.Linear(hidden_size, 1, bias=False)
        self.mlp_a = nn.Linear(d, d)
        self.mlp_b = nn.Linear(d, d)

    def _combine(
        self, x: Tensor, keys: Tensor, m_t: Tensor, m_s: Tensor, allowed: Tensor
    ) -> Tensor:
        """Per query: the memory it reads ``x (Q, L, D)`` and its keys ``w1(x) (Q, L, H)``,
        its last click ``m_t (Q, D)``, its memory mean ``m_s (Q, D)`` and ``allowed (Q, L)``
        -> ``(Q, D)``."""
        query = (self.w2(m_t) + self.w3(m_s)).unsqueeze(1)  # (Q, 1, H)
        alpha = self.w0(torch.sigmoid(keys + query)).squeeze(-1)  # (Q, L)
        alpha = alpha * allowed.to(alpha.dtype)  # (Q, L)
        m_a = (alpha.unsqueeze(1) @ x).squeeze(1)  # (Q, D)
        h_s = torch.tanh(self.mlp_a(m_a))  # (Q, D)
        h_t = torch.tanh(self.mlp_b(m_t))  # (Q, D)
        return h_s * h_t  # (Q, D)

    def encode(self, emb: Tensor, mask: Tensor) -> Tensor:
        x = self.dropout(emb)  # (B, L, D)
        m_t = gather_last(x, mask)  # (B, D): the last click
        m_s = masked_mean(x, mask)  # (B, D): the memory's mean
        return self._combine(x, self.w1(x), m_t, m_s, mask)  # (B, D)

    def states(self, emb: Tensor, mask: Tensor) -> Tensor:
        x = self.dropout(emb)  # (B, L, D)
        count = mask.to(x.dtype).cumsum(dim=1).clamp(min=1.0).unsqueeze(-1)  # (B, L, 1)
        m_s = x.cumsum(dim=1) / count  # (B, L, D): mean of each prefix (real items come first)
        # one query per real position (not B x L: most of a batch is padding), each reading
        # its own row's memory up to itself
        packed = PackedPositions.from_mask(mask)
        rows = packed.rows
        memory, keys = x.index_select(0, rows), self.w1(x).index_select(0, rows)  # (n, L, .)
        m_t, m_s = packed.pack(x), packed.pack(m_s)  # (n, D): each query's last click, mean
        out = self._combine(memory, keys, m_t, m_s, packed.causal_keys(mask))  # (n, D)
        return packed.unpack(out)  # (B, L, D), zeros at padding


class STAMP(SequentialModel):
    """STAMP (Liu et al., KDD 2018) as a two-tower retrieval model.

    ``STAMP(user_features, item_features, temperature=1.0, normalize=False,
    **encoder_params)``: the arguments of :class:`~rechub_plugins_seq.base.SequentialModel`;
    ``encoder_params`` are :class:`STAMPEncoder`'s
    (``embed_dim``, ``hidden_size``, ``dropout``, ``max_len``).
    """

    encoder_class = STAMPEncoder
    trains_on_sequences = True
