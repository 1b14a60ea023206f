"""DSSM — Huang et al., "Learning Deep Structured Semantic Models for Web Search using
Clickthrough Data", CIKM 2013.

Two MLP towers; the score is the cosine similarity of their outputs divided by the temperature.
Training modes: 0 (point-wise), 1 (pair-wise) and 2 (list-wise).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rechub_core.features import Feature
from rechub_core.schema import DataSchema
from rechub_core.towers import TwoTowerModel, mlp_tower_from_params

DEFAULT_TOWER = {"dims": [256, 128, 64], "dropout": 0.0, "activation": "prelu"}


class DSSM(TwoTowerModel):
    """Deep Structured Semantic Model (CIKM 2013): cosine of two MLP towers / temperature.

    Args:
        user_features: user-side inputs (ids, profile, pooled history).
        item_features: item-side inputs; the first sparse feature is the item id.
        temperature: cosine similarity is divided by it (default 0.05: with sampled negatives
            it trains better than 0.02, ``benchmarks/results/defaults.md``).
        user_params: ``{"dims": [...], "dropout": p, "activation": name}`` of the user MLP.
        item_params: the same for the item MLP; both towers must end in the same width.
    """

    supported_modes = (0, 1, 2)

    def __init__(
        self,
        user_features: Sequence[Feature],
        item_features: Sequence[Feature],
        temperature: float = 0.05,
        user_params: Mapping[str, Any] | None = None,
        item_params: Mapping[str, Any] | None = None,
    ) -> None:
        user = mlp_tower_from_params(
            user_features, user_params, DEFAULT_TOWER, True, "DSSM user_params"
        )
        item = mlp_tower_from_params(
            item_features, item_params, DEFAULT_TOWER, True, "DSSM item_params"
        )
        super().__init__(user, item, temperature)

    @classmethod
    def from_schema(
        cls, schema: DataSchema, embed_dim: int = 32, user_id: bool | None = None, **params: Any
    ) -> DSSM:
        """DSSM over user id, profile and mean-pooled history vs. item id and side features.
        ``user_id``: embed the user id (None: when users have enough training rows,
        :meth:`DataSchema.uses_user_id`)."""
        return cls(
            schema.pooled_user(embed_dim, user_id), schema.item_with_side(embed_dim), **params
        )
