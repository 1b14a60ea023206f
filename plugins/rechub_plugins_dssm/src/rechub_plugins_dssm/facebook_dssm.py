"""FaceBookDSSM — Huang et al., "Embedding-based Retrieval in Facebook Search", KDD 2020.

Two deeper MLP towers scored by cosine similarity, trained pair-wise (triplet hinge loss with a
margin, or BPR) with a mix of easy (uniform) and hard negatives mined from the current item
vectors (the ``hard`` sampler). Training mode: 1 (pair-wise) only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rechub_core.features import Feature
from rechub_core.schema import DataSchema
from rechub_core.towers import TwoTowerModel, mlp_tower_from_params

DEFAULT_TOWER = {"dims": [512, 256, 128, 64], "dropout": 0.0, "activation": "prelu"}


class FaceBookDSSM(TwoTowerModel):
    """Facebook's embedding-based retrieval two-tower model (KDD 2020); pair-wise only.

    Args:
        user_features: user-side inputs.
        item_features: item-side inputs; the first sparse feature is the item id.
        user_params: ``{"dims", "dropout", "activation"}`` of the user MLP (default 4 layers).
        item_params: the same for the item MLP.
        temperature: cosine is divided by it before the pair-wise loss (beyond the seed's
            arguments; 1.0 gives the paper's raw cosine, where a hinge margin of ~0.1–0.5 fits).
    """

    supported_modes = (1,)

    def __init__(
        self,
        user_features: Sequence[Feature],
        item_features: Sequence[Feature],
        user_params: Mapping[str, Any] | None = None,
        item_params: Mapping[str, Any] | None = None,
        temperature: float = 0.05,
    ) -> None:
        user = mlp_tower_from_params(
            user_features, user_params, DEFAULT_TOWER, True, "FaceBookDSSM user_params"
        )
        item = mlp_tower_from_params(
            item_features, item_params, DEFAULT_TOWER, True, "FaceBookDSSM item_params"
        )
        super().__init__(user, item, temperature)

    @classmethod
    def from_schema(
        cls, schema: DataSchema, embed_dim: int = 32, user_id: bool | None = None, **params: Any
    ) -> FaceBookDSSM:
        """Towers over user id, profile and pooled history vs. item id and side features.
        ``user_id``: embed the user id (None: when users have enough training rows,
        :meth:`DataSchema.uses_user_id`)."""
        return cls(
            schema.pooled_user(embed_dim, user_id), schema.item_with_side(embed_dim), **params
        )
