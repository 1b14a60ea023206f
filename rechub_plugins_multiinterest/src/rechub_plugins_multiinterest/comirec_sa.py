"""ComiRec-SA — Cen et al., "Controllable Multi-Interest Framework for Recommendation",
KDD 2020 (the self-attentive interest extractor).

K attention heads ``A = softmax(W2 tanh(W1 H))`` over the history each pool one interest. Here
``H`` comes from a small causal Transformer over the history (``num_layers`` blocks; 0 gives
the paper's plain item embeddings) and the paper's trainable positional embeddings enter as a
learned per-interest bias on the distance to the most recent item, so that padding never moves
them. Training scores with the interest closest to the target; retrieval merges the interests
by best score, or diversifies with
:func:`~rechub_plugins_multiinterest.base.controllable_aggregation`.
Training mode: 2 (list-wise) only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from rechub_core.features import Feature
from rechub_core.history import renamed_keywords
from rechub_core.layers import EmbeddingLayer, masked_softmax
from rechub_plugins_multiinterest.base import (
    HistoryContext,
    MultiInterestEncoder,
    MultiInterestModel,
    relative_positions,
)


class ComirecSAEncoder(MultiInterestEncoder):
    """ComiRec-SA's user encoder: history -> ``(B, K, D)``.

    Args:
        features: the history ``SequenceFeature`` (``pooling=None``).
        embed_dim: D (default and only allowed value: the history's ``embed_dim``).
        num_heads: attention heads of the context blocks.
        hidden_size: width of the interest attention (the paper's ``d_a``) and of the
            context blocks' feed-forward layer.
        num_layers: causal Transformer blocks before extraction (0: none).
        n_interest: K.
        dropout: dropout in the context blocks.
        max_len: positional capacity (longest history accepted).
        normalize: L2-normalise the interests.
    """

    model_name = "ComirecSA"

    @renamed_keywords(embedding_dim="embed_dim", user_features="features")
    def __init__(
        self,
        features: Sequence[Feature],
        embed_dim: int | None = None,
        num_heads: int = 4,
        hidden_size: int = 128,
        num_layers: int = 2,
        n_interest: int = 4,
        dropout: float = 0.2,
        max_len: int = 50,
        normalize: bool = True,
    ) -> None:
        super().__init__(features, n_interest, embed_dim, max_len, normalize)
        d = self.output_dim
        self.context = HistoryContext(d, num_layers, num_heads, hidden_size, dropout, max_len)
        self.w1 = nn.Linear(d, hidden_size, bias=False)
        self.w2 = nn.Linear(hidden_size, n_interest, bias=False)
        nn.init.xavier_uniform_(self.w1.weight)
        nn.init.xavier_uniform_(self.w2.weight)
        self.position_bias = nn.Parameter(torch.zeros(max_len, n_interest))

    def interests(
        self,
        x: Mapping[str, Tensor],
        embedding: EmbeddingLayer,
        emb: Tensor,
        mask: Tensor,
        vis: Tensor,
        last: Tensor,
    ) -> Tensor:
        """``(B, T, K, D)``."""
        h = self.context(emb, mask)  # (B, L, D)
        content = self.w2(torch.tanh(self.w1(h)))  # (B, L, K)
        rel = relative_positions(last, h.shape[1], self.max_len or h.shape[1])  # (B, T, L)
        logits = content.unsqueeze(1) + self.position_bias[rel]  # (B, T, L, K)
        weights = masked_softmax(logits, vis.unsqueeze(-1), dim=2)  # (B, T, L, K)
        return torch.einsum("btlk,bld->btkd", weights, h)  # (B, T, K, D)


class ComirecSA(MultiInterestModel):
    """ComiRec-SA (KDD 2020): self-attentive multi-interest extraction.

    ``ComirecSA(user_features, item_features, temperature=0.05, **encoder_params)``: the
    history ``SequenceFeature`` (``pooling=None``, ``shared_with`` the item id), the item id
    feature, cosine / temperature; ``encoder_params`` are :class:`ComirecSAEncoder`'s
    (``embed_dim``, ``num_heads``, ``hidden_size``, ``num_layers``, ``n_interest``,
    ``dropout``, ``max_len``).
    """

    encoder_class = ComirecSAEncoder


__all__ = ["ComirecSA", "ComirecSAEncoder"]
