"""Attention pooling over the history (in the spirit of DIN's and NARM's attentive pooling,
without a query): each history item gets a learned score, the user vector is the
softmax-weighted mean of the item embeddings through a linear map.

Shapes: B batch, L history length, D embedding width, H attention width.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor, nn

from rechub_core.errors import InputError
from rechub_core.features import Feature, SequenceFeature, item_id_feature
from rechub_core.layers import EmbeddingLayer, l2_normalize
from rechub_core.schema import DataSchema
from rechub_core.towers import ItemEmbeddingTower, Tower, TwoTowerModel

MASKED = -1e9  # finite, so a history with no real item gives zeros instead of NaN


class AttentionPoolEncoder(Tower):
    """History ``(B, L)`` item ids -> attention-pooled user vectors ``(B, D)``.

    Args:
        features: user features; the one ``SequenceFeature`` among them is the history
            (right-padded with 0, usually ``shared_with`` the item id).
        hidden_size: H, the width of the scoring layer.
        normalize: L2-normalise the output (cosine scoring with the model's temperature).
    """

    def __init__(
        self, features: Sequence[Feature], hidden_size: int = 32, normalize: bool = True
    ) -> None:
        super().__init__()
        history: list[Feature] = [f for f in features if isinstance(f, SequenceFeature)]
        if len(history) != 1:
            raise InputError(
                "AttentionPoolEncoder reads exactly one SequenceFeature (the history), "
                f"got {len(history)}; declare it as DataSchema.history(dim, pooling=None)"
            )
        self.features = history
        self.output_dim = history[0].embed_dim
        self.normalize = normalize
        dim = self.output_dim
        self.score = nn.Sequential(
            nn.Linear(dim, hidden_size), nn.Tanh(), nn.Linear(hidden_size, 1, bias=False)
        )
        self.out = nn.Linear(dim, dim)

    def forward(self, x: Mapping[str, Tensor], embedding: EmbeddingLayer) -> Tensor:
        """User vectors ``(B, D)``; padding positions get no weight."""
        emb, mask = embedding.sequence(x, self.features[0].name)  # (B, L, D), (B, L)
        scores = self.score(emb).squeeze(-1).masked_fill(~mask, MASKED)  # (B, L)
        weights = torch.softmax(scores, dim=1)  # (B, L)
        pooled = torch.einsum("bl,bld->bd", weights, emb)  # (B, D)
        user = self.out(pooled)  # (B, D)
        return l2_normalize(user) if self.normalize else user


class AttentionPool(TwoTowerModel):
    """The attention-pooled history against the item id embedding, cosine / temperature.

    Args:
        user_features: must hold the history ``SequenceFeature``.
        item_features: the item id ``SparseFeature`` (the first sparse feature).
        hidden_size: width of the attention scoring layer.
        temperature: cosine similarity is divided by it.
    """

    def __init__(
        self,
        user_features: Sequence[Feature],
        item_features: Sequence[Feature],
        hidden_size: int = 32,
        temperature: float = 0.05,
    ) -> None:
        user = AttentionPoolEncoder(user_features, hidden_size)
        item_id = item_id_feature(item_features, "AttentionPool")
        super().__init__(user, ItemEmbeddingTower(item_id, normalize=True), temperature)

    @classmethod
    def from_schema(cls, schema: DataSchema, embed_dim: int = 32, **params: Any) -> AttentionPool:
        """The history (sharing the item id's table) against the item id; used by
        ``rechub train --model AttentionPool``."""
        user = [schema.history(embed_dim, pooling=None)]
        return cls(user, [schema.item_id(embed_dim)], **params)
