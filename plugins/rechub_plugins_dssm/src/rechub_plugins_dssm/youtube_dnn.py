"""YoutubeDNN — Covington et al., "Deep Neural Networks for YouTube Recommendations",
RecSys 2016 (the candidate-generation network).

The user tower is an MLP over the mean-pooled watch history and profile features; the item side
is the item id embedding, the same table the history reads. Trained as extreme multi-class
classification with a (sampled) softmax. Training mode: 2 (list-wise) only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor

from rechub_core.errors import InputError
from rechub_core.features import Feature, item_id_feature
from rechub_core.layers import l2_normalize
from rechub_core.schema import DataSchema
from rechub_core.towers import ItemEmbeddingTower, TwoTowerModel, mlp_tower_from_params


class YoutubeDNN(TwoTowerModel):
    """YouTube candidate generation (RecSys 2016): history/profile MLP vs. item embedding.

    Args:
        user_features: user-side inputs; include a ``SequenceFeature`` of the history with
            ``shared_with`` the item id so that history and items share one table.
        item_features: the item id feature (only the first sparse feature is used).
        user_params: ``{"dims", "dropout", "activation"}`` of the user MLP; the last width
            must equal the item id's ``embed_dim`` (default: ``[128, embed_dim]``).
        temperature: cosine similarity is divided by it (default 0.05, as DSSM's).
    """

    supported_modes = (2,)

    def __init__(
        self,
        user_features: Sequence[Feature],
        item_features: Sequence[Feature],
        user_params: Mapping[str, Any] | None = None,
        temperature: float = 0.05,
    ) -> None:
        item_id = item_id_feature(item_features, "YoutubeDNN")
        dim = item_id.embed_dim
        defaults = {"dims": [128, dim], "dropout": 0.0, "activation": "relu"}
        user = mlp_tower_from_params(
            user_features, user_params, defaults, False, "YoutubeDNN user_params"
        )
        if user.output_dim != dim:
            raise InputError(
                f"YoutubeDNN user_params dims end in {user.output_dim} but the item embedding "
                f"has embed_dim {dim}; make the last width {dim}"
            )
        super().__init__(user, ItemEmbeddingTower(item_id), temperature)

    def encode_user(self, x: Mapping[str, Tensor]) -> Tensor:
        """``(B, D)`` unit vectors."""
        return l2_normalize(super().encode_user(x))

    def encode_item(self, x: Mapping[str, Tensor]) -> Tensor:
        """``(B, D)`` unit vectors."""
        return l2_normalize(super().encode_item(x))

    @classmethod
    def from_schema(
        cls, schema: DataSchema, embed_dim: int = 64, user_id: bool | None = None, **params: Any
    ) -> YoutubeDNN:
        """User tower over user id, profile and the mean-pooled history. ``user_id``: embed
        the user id (None: when users have enough training rows,
        :meth:`DataSchema.uses_user_id`)."""
        return cls(schema.pooled_user(embed_dim, user_id), [schema.item_id(embed_dim)], **params)
