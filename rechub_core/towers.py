"""Towers: modules that map a feature batch to vectors, and a model composed of two of them.

A tower declares the ``features`` it reads and is called as ``tower(x, embedding)``, where
``embedding`` is the model's :class:`~rechub_core.layers.EmbeddingLayer` (tables are owned by
the model so that towers can share them, e.g. the item id table read by a history encoder).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from torch import Tensor, nn

from rechub_core.architecture import RecordsInitArgs
from rechub_core.errors import InputError
from rechub_core.features import Feature, SparseFeature
from rechub_core.layers import MLP, EmbeddingLayer, l2_normalize, mlp_params, pooled_width
from rechub_core.model import MatchModel


class Tower(RecordsInitArgs, nn.Module):
    """Base class: ``forward(x, embedding) -> (B, D)`` (user encoders may return ``(B, K, D)``).

    Attributes:
        features: the inputs it reads.
        output_dim: D.
        multi_interest: True when it returns ``(B, K, D)``.
    """

    features: list[Feature]
    output_dim: int
    multi_interest: bool = False

    def forward(self, x: Mapping[str, Tensor], embedding: EmbeddingLayer) -> Tensor:
        raise NotImplementedError


class ItemEmbeddingTower(Tower):
    """The item id's embedding as the item vector: ``(B,) -> (B, D)``.

    Args:
        item_feature: the item id feature.
        normalize: L2-normalise the output (cosine scoring).
    """

    def __init__(self, item_feature: SparseFeature, normalize: bool = False) -> None:
        super().__init__()
        if not isinstance(item_feature, SparseFeature):
            raise InputError("item_embedding tower needs a SparseFeature for the item id")
        self.features = [item_feature]
        self.output_dim = item_feature.embed_dim
        self.normalize = normalize

    def forward(self, x: Mapping[str, Tensor], embedding: EmbeddingLayer) -> Tensor:
        """``(B,)`` item ids -> ``(B, D)``."""
        vec = embedding.embed(x, self.features[0].name)  # (B, D)
        return l2_normalize(vec) if self.normalize else vec


class MLPTower(Tower):
    """Concatenated feature representations through an MLP: ``-> (B, dims[-1])``.

    Args:
        features: inputs (sparse, dense, pooled sequences).
        dims: MLP layer widths; the last is D.
        dropout: dropout after hidden layers.
        activation: activation name.
        normalize: L2-normalise the output (cosine scoring).
    """

    def __init__(
        self,
        features: Sequence[Feature],
        dims: Sequence[int] = (256, 128, 64),
        dropout: float = 0.0,
        activation: str = "relu",
        normalize: bool = False,
    ) -> None:
        super().__init__()
        self.features = list(features)
        self.normalize = normalize
        self._names = [f.name for f in self.features]
        self.mlp = MLP(pooled_width(self.features), dims, dropout, activation)
        self.output_dim = self.mlp.output_dim

    def forward(self, x: Mapping[str, Tensor], embedding: EmbeddingLayer) -> Tensor:
        """Feature batch -> ``(B, D)``."""
        h = embedding(x, self._names)  # (B, input_dim)
        out = self.mlp(h)  # (B, D)
        return l2_normalize(out) if self.normalize else out


def _features_of(tower: Any, side: str) -> list[Feature]:
    feats = getattr(tower, "features", None)
    if not isinstance(tower, nn.Module) or not feats:
        raise InputError(
            f"{side}_tower must be a tower module with a non-empty `features` list "
            f"(create('tower', ...) or create('encoder', ...)), got {type(tower).__name__}"
        )
    return list(feats)


class TwoTowerModel(MatchModel):
    """A model composed from parts: any user tower or encoder with any item tower.

    Args:
        user_tower: a tower or encoder (``(B, D)`` or ``(B, K, D)``).
        item_tower: a tower (``(B, D)``).
        temperature: scores are ``dot / temperature``.
    """

    def __init__(self, user_tower: Tower, item_tower: Tower, temperature: float = 1.0) -> None:
        super().__init__(
            _features_of(user_tower, "user"), _features_of(item_tower, "item"), temperature
        )
        u_dim, i_dim = (
            getattr(user_tower, "output_dim", None),
            getattr(item_tower, "output_dim", None),
        )
        if u_dim is not None and i_dim is not None and u_dim != i_dim:
            raise InputError(
                f"mismatched towers: the user tower outputs D={u_dim}, the item tower D={i_dim}; "
                "give both the same output width (a history encoder's is its embed_dim, by "
                "default its history feature's embed_dim; an MLP tower's is dims[-1])"
            )
        self.user_tower = user_tower
        self.item_tower = item_tower
        self.multi_interest = bool(getattr(user_tower, "multi_interest", False))  # type: ignore[misc]

    def encode_user(self, x: Mapping[str, Tensor]) -> Tensor:
        """``(B, D)`` or ``(B, K, D)``."""
        return self.user_tower(x, self.embedding)

    def encode_item(self, x: Mapping[str, Tensor]) -> Tensor:
        """``(B, D)``."""
        return self.item_tower(x, self.embedding)

    def regularization(self) -> Tensor | None:
        """The user tower's extra loss term, when it has one."""
        reg = getattr(self.user_tower, "regularization", None)
        return reg() if callable(reg) else None


def mlp_tower_from_params(
    features: Sequence[Feature],
    params: Mapping[str, Any] | None,
    defaults: Mapping[str, Any],
    normalize: bool,
    where: str,
) -> MLPTower:
    """An :class:`MLPTower` from a seed-style params dict (``dims``, ``dropout``,
    ``activation``; :func:`~rechub_core.layers.mlp_params` rejects unknown keys naming
    ``where``, e.g. "DSSM user_params")."""
    merged = mlp_params(params, defaults, where)
    return MLPTower(
        features,
        dims=list(merged["dims"]),
        dropout=float(merged.get("dropout", 0.0)),
        activation=str(merged.get("activation", "relu")),
        normalize=normalize,
    )
