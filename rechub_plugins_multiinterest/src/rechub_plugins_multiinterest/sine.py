"""SINE — Tan et al., "Sparse-Interest Network for Sequential Recommendation", WSDM 2021.

A pool of ``n_concepts`` learned concept prototypes; per user (and per sequence position in
training):

1. concept activation: a self-attentive summary of the history scores every concept and the
   top-K become the user's intentions, gated by ``sigmoid(score)``;
2. intention assignment: each history item is softly assigned to the K intentions;
3. attention weighting: per intention, an additive attention over the history (with a learned
   bias on the distance to the most recent item, so padding never moves it);
4. interest embedding: ``phi_k = LayerNorm(sum_t P(k|t) P(t|k) x_t)``;
5. interest aggregation (training only): the interests are mixed by their agreement with a
   summary of the current intention and this single vector is trained with the softmax
   (:meth:`SINE.encode_user_train`); ``encode_user`` and retrieval use the K interests, in
   training and in evaluation alike.

The loss adds the paper's covariance regulariser on the concept pool (returned by
``regularization()``), which pushes the prototypes apart. The history is first read by a small
causal Transformer (``num_layers`` blocks, 0 for none). Training mode: 2 (list-wise) only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import Tensor, nn

from rechub_core.errors import InputError
from rechub_core.features import Feature
from rechub_core.history import renamed_keywords
from rechub_core.layers import EmbeddingLayer, l2_normalize, masked_softmax
from rechub_plugins_multiinterest.base import (
    HistoryContext,
    MultiInterestEncoder,
    MultiInterestModel,
    relative_positions,
)


def _linear(d_in: int, d_out: int, bias: bool = True) -> nn.Linear:
    lin = nn.Linear(d_in, d_out, bias=bias)
    nn.init.xavier_uniform_(lin.weight)
    if bias:
        nn.init.zeros_(lin.bias)
    return lin


class SINEEncoder(MultiInterestEncoder):
    """SINE's user encoder: history -> ``(B, K, D)``; :meth:`training_vectors` gives the
    aggregated interest ``(B, D)`` the model trains on.

    Args:
        features: the history ``SequenceFeature`` (``pooling=None``).
        embed_dim: D (default and only allowed value: the history's ``embed_dim``).
        num_heads: attention heads of the context blocks.
        num_layers: causal Transformer blocks before the SINE layer (0: none).
        hidden_size: width of the additive attentions and of the blocks' feed-forward layer.
        dropout: dropout in the context blocks.
        n_interest: K, intentions activated per user.
        n_concepts: size of the concept pool (>= K).
        covariance_weight: weight of the covariance regulariser.
        aggregation_temperature: temperature of the interest aggregation softmax.
        max_len: positional capacity (longest history accepted).
        normalize: L2-normalise the interests.
    """

    model_name = "SINE"

    @renamed_keywords(embedding_dim="embed_dim", user_features="features")
    def __init__(
        self,
        features: Sequence[Feature],
        embed_dim: int | None = None,
        num_heads: int = 4,
        num_layers: int = 2,
        hidden_size: int = 128,
        dropout: float = 0.2,
        n_interest: int = 4,
        n_concepts: int = 64,
        covariance_weight: float = 0.1,
        aggregation_temperature: float = 0.1,
        max_len: int = 50,
        normalize: bool = True,
    ) -> None:
        super().__init__(features, n_interest, embed_dim, max_len, normalize)
        if n_concepts < n_interest:
            raise InputError(f"SINE n_concepts={n_concepts} must be >= n_interest={n_interest}")
        if aggregation_temperature <= 0:
            raise InputError(
                f"SINE aggregation_temperature must be > 0, got {aggregation_temperature}"
            )
        d = self.output_dim
        self.covariance_weight = float(covariance_weight)
        self.aggregation_temperature = float(aggregation_temperature)
        self.context = HistoryContext(d, num_layers, num_heads, hidden_size, dropout, max_len)
        self.concepts = nn.Parameter(torch.empty(n_concepts, d))
        nn.init.xavier_uniform_(self.concepts)
        self.activation_att = nn.Sequential(
            _linear(d, hidden_size), nn.Tanh(), _linear(hidden_size, 1, bias=False)
        )
        self.assign_proj = _linear(d, d)
        self.norm_item = nn.LayerNorm(d)
        self.norm_concept = nn.LayerNorm(d)
        self.intention_att = nn.Sequential(
            _linear(d, hidden_size), nn.Tanh(), _linear(hidden_size, n_interest, bias=False)
        )
        self.position_bias = nn.Parameter(torch.zeros(max_len, n_interest))
        self.norm_interest = nn.LayerNorm(d)
        self.aggregate_att = nn.Sequential(
            _linear(d, hidden_size), nn.Tanh(), _linear(hidden_size, 1, bias=False)
        )
        self.norm_aggregate = nn.LayerNorm(d)

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
        return self._interests(emb, mask, vis, last)[0]

    def training_vectors(self, x: Mapping[str, Tensor], embedding: EmbeddingLayer) -> Tensor:
        """The aggregated interest of the whole history (step 5), the vector a training row
        is scored with: ``(B, D)``, L2-normalised when ``normalize``."""
        emb, mask, vis, last = self.whole_history(x, embedding)
        phi, h = self._interests(emb, mask, vis, last)  # (B, 1, K, D), (B, L, D)
        return self.finish(self._aggregate(phi, h, vis))[:, 0]  # (B, D)

    def _interests(
        self, emb: Tensor, mask: Tensor, vis: Tensor, last: Tensor
    ) -> tuple[Tensor, Tensor]:
        """Steps 1-4: interests ``(B, T, K, D)`` and the context states ``h (B, L, D)``."""
        d = emb.shape[-1]
        h = self.context(emb, mask)  # (B, L, D)
        # 1. concept activation: top-K prototypes for a self-attentive summary of the history
        act = self.activation_att(h).squeeze(-1)  # (B, L)
        act_w = masked_softmax(act.unsqueeze(1), vis, dim=-1)  # (B, T, L)
        summary = torch.einsum("btl,bld->btd", act_w, h)  # (B, T, D)
        concept_scores = summary @ self.concepts.T  # (B, T, C)
        top_scores, top_idx = concept_scores.topk(self.n_interest, dim=-1)  # (B, T, K)
        intentions = self.concepts[top_idx] * torch.sigmoid(top_scores).unsqueeze(
            -1
        )  # (B, T, K, D)
        # 2. intention assignment P(k | t); scaled by sqrt(D) because both sides are layer-normed
        items = self.norm_item(self.assign_proj(h))  # (B, L, D)
        assign = (
            torch.einsum("bld,btkd->btlk", items, self.norm_concept(intentions)) / d**0.5
        )  # (B, T, L, K)
        p_k_given_t = torch.softmax(assign, dim=-1)  # (B, T, L, K)
        # 3. attention weighting P(t | k)
        rel = relative_positions(last, h.shape[1], self.max_len or h.shape[1])  # (B, T, L)
        att = self.intention_att(h).unsqueeze(1) + self.position_bias[rel]  # (B, T, L, K)
        p_t_given_k = masked_softmax(att, vis.unsqueeze(-1), dim=2)  # (B, T, L, K)
        # 4. interest embeddings
        phi = self.norm_interest(
            torch.einsum("btlk,bld->btkd", p_k_given_t * p_t_given_k, h)
        )  # (B, T, K, D)
        return phi, h

    def _aggregate(self, phi: Tensor, h: Tensor, vis: Tensor) -> Tensor:
        """Step 5: interests ``phi (B, T, K, D)`` mixed by their agreement with the current
        intention (from ``h (B, L, D)`` over ``vis (B, T, L)``) -> ``(B, T, D)``."""
        # 5. aggregation: mix the interests by agreement with the current intention
        agg_w = masked_softmax(
            self.aggregate_att(h).squeeze(-1).unsqueeze(1), vis, dim=-1
        )  # (B, T, L)
        current = self.norm_aggregate(torch.einsum("btl,bld->btd", agg_w, h))  # (B, T, D)
        agree = torch.einsum("btkd,btd->btk", l2_normalize(phi), l2_normalize(current))  # (B, T, K)
        mix = torch.softmax(agree / self.aggregation_temperature, dim=-1)  # (B, T, K)
        return torch.einsum("btk,btkd->btd", mix, phi)  # (B, T, D)

    def regularization(self) -> Tensor | None:
        """``w * 1/2 (|M|_F^2 - |diag M|^2)`` with ``M`` the covariance of the concept pool."""
        if self.covariance_weight == 0:
            return None
        centred = self.concepts - self.concepts.mean(dim=0, keepdim=True)  # (C, D)
        cov = centred.T @ centred / self.concepts.shape[0]  # (D, D)
        off = (cov * cov).sum() - (torch.diagonal(cov) ** 2).sum()
        return self.covariance_weight * 0.5 * off


class SINE(MultiInterestModel):
    """SINE (WSDM 2021): sparse interests from a concept pool.

    ``SINE(user_features, item_features, temperature=0.05, **encoder_params)``: the history
    ``SequenceFeature`` (``pooling=None``, ``shared_with`` the item id), the item id feature,
    cosine / temperature; ``encoder_params`` are :class:`SINEEncoder`'s (``embed_dim``,
    ``num_heads``, ``num_layers``, ``hidden_size``, ``dropout``, ``n_interest``,
    ``n_concepts``, ``covariance_weight``, ``aggregation_temperature``, ``max_len``).
    """

    encoder_class = SINEEncoder

    def encode_user_train(self, x: Mapping[str, Tensor]) -> Tensor:
        """The aggregated interest ``(B, D)`` (SINE's training vector; serving uses the K
        interests of :meth:`encode_user`)."""
        encoder = self.user_tower
        assert isinstance(encoder, SINEEncoder)
        return encoder.training_vectors(x, self.embedding)


__all__ = ["SINE", "SINEEncoder"]
