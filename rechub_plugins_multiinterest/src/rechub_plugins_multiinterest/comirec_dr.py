"""ComiRec-DR — Cen et al., "Controllable Multi-Interest Framework for Recommendation",
KDD 2020 (the dynamic-routing interest extractor).

Each history item votes for each of K interests through that interest's own bilinear map
``W_k`` (unlike MIND's one shared map), and dynamic routing with zero-initialised logits forms
the K interest capsules. Here the votes are cast from a small causal Transformer's states
(``num_layers`` blocks; 0 gives the paper's plain item embeddings). Training scores with the
interest closest to the target; retrieval merges the interests by best score, or diversifies
with :func:`~rechub_plugins_multiinterest.base.controllable_aggregation`. Every weight is
initialised explicitly (Torch-RecHub's version starts from uninitialised memory).
Training mode: 2 (list-wise) only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from rechub_core.errors import InputError
from rechub_core.features import Feature
from rechub_core.history import renamed_keywords
from rechub_core.layers import EmbeddingLayer
from rechub_plugins_multiinterest.base import (
    HistoryContext,
    MultiInterestEncoder,
    MultiInterestModel,
    dynamic_routing,
)


class ComirecDREncoder(MultiInterestEncoder):
    """ComiRec-DR's user encoder: history -> ``(B, K, D)``.

    Args:
        features: the history ``SequenceFeature`` (``pooling=None``).
        embed_dim: D (default and only allowed value: the history's ``embed_dim``).
        hidden_size: feed-forward width of the context blocks.
        num_layers: causal Transformer blocks before routing (0: none).
        n_interest: K.
        dropout: dropout in the context blocks.
        routing_iterations: routing iterations (>= 1).
        num_heads: attention heads of the context blocks.
        max_len: positional capacity (longest history accepted).
        normalize: L2-normalise the interests.
    """

    model_name = "ComirecDR"

    @renamed_keywords(embedding_dim="embed_dim", user_features="features")
    def __init__(
        self,
        features: Sequence[Feature],
        embed_dim: int | None = None,
        hidden_size: int = 128,
        num_layers: int = 2,
        n_interest: int = 4,
        dropout: float = 0.2,
        routing_iterations: int = 3,
        num_heads: int = 4,
        max_len: int = 50,
        normalize: bool = True,
    ) -> None:
        super().__init__(features, n_interest, embed_dim, max_len, normalize)
        d = self.output_dim
        if not isinstance(routing_iterations, int) or routing_iterations < 1:
            raise InputError(
                f"ComirecDR routing_iterations must be an int >= 1, got {routing_iterations!r}"
            )
        self.routing_iterations = routing_iterations
        self.context = HistoryContext(d, num_layers, num_heads, hidden_size, dropout, max_len)
        self.maps = nn.Parameter(torch.empty(n_interest, d, d))
        for k in range(n_interest):
            nn.init.xavier_uniform_(self.maps.data[k])

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
        votes = torch.einsum("bld,kde->blke", h, self.maps)  # (B, L, K, D)
        return dynamic_routing(votes, vis, self.routing_iterations)  # (B, T, K, D)


class ComirecDR(MultiInterestModel):
    """ComiRec-DR (KDD 2020): dynamic-routing multi-interest extraction.

    ``ComirecDR(user_features, item_features, temperature=0.05, **encoder_params)``: the
    history ``SequenceFeature`` (``pooling=None``, ``shared_with`` the item id), the item id
    feature, cosine / temperature; ``encoder_params`` are :class:`ComirecDREncoder`'s
    (``embed_dim``, ``hidden_size``, ``num_layers``, ``n_interest``, ``dropout``,
    ``routing_iterations``, ``num_heads``, ``max_len``).
    """

    encoder_class = ComirecDREncoder


__all__ = ["ComirecDR", "ComirecDREncoder"]
