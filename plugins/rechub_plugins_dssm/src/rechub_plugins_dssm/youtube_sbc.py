"""YoutubeSBC — Yi et al., "Sampling-Bias-Corrected Neural Modeling for Large Corpus Item
Recommendations", RecSys 2019.

Two L2-normalised towers trained with an in-batch softmax: the other rows' positives are the
negatives, each logit is corrected by ``-log q`` with ``q`` the item's in-batch frequency
estimated from the stream of batches (the paper's hash-based estimator, the ``in_batch`` sampler
with ``frequency="streaming"``), and a row's own positive appearing elsewhere in the batch is
masked. The correction lives in the ``sampled_softmax`` loss and the ``in_batch`` sampler, so
any model can use it. Training mode: 2 (list-wise) only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rechub_core.features import Feature, item_id_feature
from rechub_core.schema import DataSchema
from rechub_core.towers import ItemEmbeddingTower, Tower, TwoTowerModel, mlp_tower_from_params

DEFAULT_TOWER = {"dims": [256, 128, 64], "dropout": 0.0, "activation": "relu"}


class YoutubeSBC(TwoTowerModel):
    """Sampling-bias-corrected two-tower model (RecSys 2019).

    Args:
        user_features: user-side inputs.
        item_features: item-side inputs; the first sparse feature is the item id.
        user_params: ``{"dims", "dropout", "activation"}`` of the user MLP.
        temperature: cosine similarity is divided by it (the paper's τ).
        item_params: the item MLP; None uses the item id embedding itself (then the user
            tower's last width must equal its ``embed_dim``).
    """

    supported_modes = (2,)

    def __init__(
        self,
        user_features: Sequence[Feature],
        item_features: Sequence[Feature],
        user_params: Mapping[str, Any] | None = None,
        temperature: float = 0.02,
        item_params: Mapping[str, Any] | None = None,
    ) -> None:
        item_tower: Tower
        if item_params is None:
            item_id = item_id_feature(item_features, "YoutubeSBC")
            item_tower = ItemEmbeddingTower(item_id, normalize=True)
            defaults = {**DEFAULT_TOWER, "dims": [256, item_id.embed_dim]}
        else:
            item_tower = mlp_tower_from_params(
                item_features, item_params, DEFAULT_TOWER, True, "YoutubeSBC item_params"
            )
            defaults = DEFAULT_TOWER
        user = mlp_tower_from_params(
            user_features, user_params, defaults, True, "YoutubeSBC user_params"
        )
        super().__init__(user, item_tower, temperature)

    @classmethod
    def from_schema(
        cls, schema: DataSchema, embed_dim: int = 32, user_id: bool | None = None, **params: Any
    ) -> YoutubeSBC:
        """Towers over user id, profile and pooled history vs. item id and side features.
        ``user_id``: embed the user id (None: when users have enough training rows,
        :meth:`DataSchema.uses_user_id`)."""
        params.setdefault("item_params", {"dims": [128, 64]})
        return cls(
            schema.pooled_user(embed_dim, user_id), schema.item_with_side(embed_dim), **params
        )
