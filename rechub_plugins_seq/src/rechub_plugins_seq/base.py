"""The sequential family's shared parts: the history encoder base class and the model base class.

Every encoder in this family reads one ordered history, a ``SequenceFeature`` with
``pooling=None`` (usually ``shared_with`` the item id, so history and candidates share one
table). Before encoding, the history is *compacted*: real ids move to the front in their
original order and padding to the back, and only the ``max_len`` most recent real ids are kept.
Because every encoder only ever sees compacted histories, where the zeros were in the input
(left, right, or scattered) cannot change the user vector, and positions counted on the
compacted sequence are counted from the first kept item whatever the padding layout.

Compaction is a scatter of each real id to its rank among the real ids (no data-dependent
shapes, no sort), so the encoders stay exportable to ONNX with a dynamic sequence axis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from rechub_core.errors import InputError
from rechub_core.features import Feature, SequenceFeature, SparseFeature, item_id_feature
from rechub_core.layers import EmbeddingLayer, gather_last, input_checks_enabled, l2_normalize
from rechub_core.schema import DataSchema
from rechub_core.towers import ItemEmbeddingTower, Tower, TwoTowerModel


def find_history(features: Sequence[Feature], where: str) -> SequenceFeature:
    """The ordered history among ``features``: the one ``SequenceFeature`` with ``pooling=None``."""
    found = [f for f in features if isinstance(f, SequenceFeature) and f.pooling is None]
    if len(found) != 1:
        names = ", ".join(f.name for f in found) or "none"
        raise InputError(
            f"{where} needs exactly one SequenceFeature with pooling=None (the ordered "
            f"history, e.g. SequenceFeature('hist_item_id', n_items, dim, pooling=None, "
            f"shared_with='item_id')); found {names}"
        )
    return found[0]


def compact(seq: Tensor, max_len: int) -> tuple[Tensor, Tensor]:
    """Move the real ids of each row to the front, keeping their order and only the
    ``max_len`` most recent ones.

    Args:
        seq: ``(B, L)`` ids, 0 = padding anywhere.
        max_len: how many of the most recent real ids to keep.
    Returns:
        ``compacted (B, min(L, max_len))`` ids, real first, then 0; and ``dest (B, L)``, the
        column each input position went to (dropped and padding positions point past the
        kept ones, clamped to the last column).
    """
    real = seq != 0  # (B, L)
    count = real.long().cumsum(dim=1)  # (B, L): real ids at or before each position
    total = count[:, -1:]  # (B, 1)
    keep = real & (total - count < max_len)  # (B, L): the max_len most recent
    n_dropped = (total - max_len).clamp(min=0)  # (B, 1)
    rank = count - 1 - n_dropped  # (B, L): column of a kept id
    n_kept = total - n_dropped  # (B, 1)
    pad_rank = n_kept + (~keep).long().cumsum(dim=1) - 1  # (B, L): columns after the kept ids
    dest = torch.where(keep, rank, pad_rank)  # (B, L): a permutation of 0..L-1 per row
    out = torch.zeros_like(seq).scatter(1, dest, seq * keep.long())  # (B, L)
    width = min(seq.shape[1], max_len) if not torch.jit.is_tracing() else max_len
    return out[:, :width], dest.clamp(max=width - 1)


class SequenceEncoder(Tower):
    """Base class of the family's user encoders: ``forward(x, embedding) -> (B, D)``.

    Subclasses implement :meth:`encode` over the compacted, embedded history; the base class
    finds the history feature, checks and compacts it, embeds it (projecting to
    ``embedding_dim`` when the table is narrower or wider), and L2-normalises the output when
    asked.

    Args:
        features: user features; the one ``SequenceFeature`` with ``pooling=None`` is read,
            others are ignored (these models encode the history only).
        embedding_dim: D, the width of the user vectors.
        max_len: longest history read; longer ones keep their ``max_len`` most recent items.
        normalize: L2-normalise the output (cosine scoring with the model's temperature).
    """

    #: name used in error messages
    model_name: ClassVar[str] = "sequence encoder"

    def __init__(
        self,
        features: Sequence[Feature],
        embedding_dim: int = 32,
        max_len: int = 50,
        normalize: bool = False,
    ) -> None:
        super().__init__()
        if embedding_dim < 1 or max_len < 1:
            raise InputError(
                f"{self.model_name}: embedding_dim and max_len must be >= 1, got "
                f"{embedding_dim} and {max_len}"
            )
        self.history = find_history(features, self.model_name)
        self.features = [self.history]
        self.output_dim = embedding_dim
        self.max_len = max_len
        self.normalize = normalize
        width = self.history.embed_dim
        # a history table of another width is projected to D, so the encoders work in D
        self.input_proj: nn.Module = (
            nn.Identity() if width == embedding_dim else nn.Linear(width, embedding_dim, bias=False)
        )

    @property
    def history_name(self) -> str:
        """Name of the history input."""
        return self.history.name

    def embed_history(
        self, x: Mapping[str, Tensor], embedding: EmbeddingLayer
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Compacted, embedded history.

        Returns:
            ``emb (B, L', D)`` with zeros at padding, ``mask (B, L')`` True at real items
            (a prefix of each row), ``dest (B, L)`` where each input position went.
        """
        seq = embedding.ids(x, self.history_name)  # (B, L), range-checked eagerly
        if seq.dim() != 2:
            raise InputError(
                f"history {self.history_name!r} must be (B, L) item ids, got {tuple(seq.shape)}"
            )
        ids, dest = compact(seq, self.max_len)  # (B, L'), (B, L)
        mask = ids != 0  # (B, L')
        if input_checks_enabled() and seq.numel() > 0 and not bool(mask[:, 0].all()):
            row = int((~mask[:, 0]).nonzero()[0, 0])
            raise InputError(
                f"{self.model_name}: row {row} of {self.history_name!r} has no real item (an "
                "empty history); sequential encoders need at least one past item — serve such "
                "users from a popularity or profile model"
            )
        emb = embedding.table(self.history_name)(ids)  # (B, L', E)
        emb = self.input_proj(emb) * mask.unsqueeze(-1).to(emb.dtype)  # (B, L', D)
        return emb, mask, dest

    def encode(self, emb: Tensor, mask: Tensor) -> Tensor:
        """``emb (B, L, D)``, ``mask (B, L)`` (real items first) -> user vectors ``(B, D)``."""
        raise NotImplementedError

    def _finish(self, vec: Tensor) -> Tensor:
        return l2_normalize(vec) if self.normalize else vec

    def forward(self, x: Mapping[str, Tensor], embedding: EmbeddingLayer) -> Tensor:
        """User vectors ``(B, D)`` from the history."""
        emb, mask, _ = self.embed_history(x, embedding)
        return self._finish(self.encode(emb, mask))


class StepEncoder(SequenceEncoder):
    """An encoder whose state after every position is a user vector (causal models: RNNs,
    causal self-attention). Subclasses implement :meth:`states`; the user vector is the state
    at the last real position, and :meth:`steps` gives all of them for sequence training."""

    def states(self, emb: Tensor, mask: Tensor) -> Tensor:
        """``(B, L, D)``, ``(B, L)`` -> causal states ``(B, L, D)`` (row t sees positions <= t)."""
        raise NotImplementedError

    def encode(self, emb: Tensor, mask: Tensor) -> Tensor:
        return gather_last(self.states(emb, mask), mask)  # (B, D)

    def steps(self, x: Mapping[str, Tensor], embedding: EmbeddingLayer) -> Tensor:
        """User vectors after each input position ``(B, L, D)``, in the input's layout."""
        emb, mask, dest = self.embed_history(x, embedding)
        out = self._finish(self.states(emb, mask))  # (B, L', D)
        index = dest.unsqueeze(-1).expand(-1, -1, out.shape[-1])  # (B, L, D)
        return out.gather(1, index)


class ProjectedItemTower(Tower):
    """The item id's embedding projected to D (used when the table width is not D)."""

    def __init__(self, item_feature: SparseFeature, output_dim: int, normalize: bool) -> None:
        super().__init__()
        self.inner = ItemEmbeddingTower(item_feature)
        self.features = self.inner.features
        self.output_dim = output_dim
        self.proj = nn.Linear(item_feature.embed_dim, output_dim, bias=False)
        self.normalize = normalize

    def forward(self, x: Mapping[str, Tensor], embedding: EmbeddingLayer) -> Tensor:
        vec = self.proj(self.inner(x, embedding))  # (B, D)
        return l2_normalize(vec) if self.normalize else vec


class SequentialModel(TwoTowerModel):
    """Base class of the family's models: one of the family's encoders as the user tower and
    the item id embedding (the table the history reads, projected when its width is not D) as
    the item tower, scored by cosine / temperature. A model is exactly
    ``TwoTowerModel(encoder, item tower)``: the encoder registered under the model's lowercase
    name is the same module class."""

    supported_modes = (0, 1, 2)
    #: the encoder class this model wraps
    encoder_class: ClassVar[type[SequenceEncoder]]

    def __init__(
        self,
        user_features: Sequence[Feature],
        item_features: Sequence[Feature],
        temperature: float = 0.02,
        normalize: bool = True,
        **encoder_params: Any,
    ) -> None:
        name = type(self).__name__
        encoder = self.encoder_class(user_features, normalize=normalize, **encoder_params)
        item_id = item_id_feature(item_features, name)
        item: Tower
        if item_id.embed_dim == encoder.output_dim:
            item = ItemEmbeddingTower(item_id, normalize=normalize)
        else:
            item = ProjectedItemTower(item_id, encoder.output_dim, normalize)
        super().__init__(encoder, item, temperature)
        self.history_feature = encoder.history_name

    def encode_user_steps(self, x: Mapping[str, Tensor]) -> Tensor:
        """User vectors after every history position ``(B, L, D)``, for encoders whose states
        are causal (GRU4Rec, SASRec); used when ``trains_on_sequences`` is set."""
        if not isinstance(self.user_tower, StepEncoder):
            raise InputError(f"{type(self).__name__} has no per-position user vectors")
        return self.user_tower.steps(x, self.embedding)

    @classmethod
    def from_schema(cls, schema: DataSchema, embedding_dim: int = 32, **params: Any) -> Any:
        """The model over the data set's ordered history (sharing the item id table)."""
        params.setdefault("max_len", schema.max_len)
        user = [schema.history(embedding_dim, pooling=None)]
        return cls(user, [schema.item_id(embedding_dim)], embedding_dim=embedding_dim, **params)
