"""What a prepared data set offers to models: column names and vocabulary sizes.

``rechub train --model NAME`` builds any registered model from a :class:`DataSchema` through
its ``ModelSpec.from_schema``; these helpers produce the usual feature declarations.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from rechub_core.features import SequenceFeature, SparseFeature

if TYPE_CHECKING:
    from rechub_core.preprocess import PreparedData

USER_ID = "user_id"
ITEM_ID = "item_id"
HISTORY = "hist_item_id"


@attrs.frozen
class DataSchema:
    """Columns and vocabulary sizes of a prepared data set.

    Attributes:
        vocab: vocabulary size (incl. padding 0) of every categorical column.
        user_columns: user profile columns (without ``user_id``).
        item_columns: item side columns (without ``item_id``).
        max_len: history length L.
    """

    vocab: dict[str, int]
    user_columns: tuple[str, ...] = ()
    item_columns: tuple[str, ...] = ()
    max_len: int = 50

    @classmethod
    def from_prepared(cls, data: PreparedData) -> DataSchema:
        """The schema of a :class:`~rechub_core.preprocess.PreparedData`."""
        return cls(
            vocab=dict(data.vocab),
            user_columns=tuple(data.user_columns),
            item_columns=tuple(data.item_columns),
            max_len=int(data.max_len),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form, saved in run folders."""
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DataSchema:
        """Inverse of :meth:`to_dict`."""
        return cls(
            vocab=dict(d["vocab"]),
            user_columns=tuple(d.get("user_columns", ())),
            item_columns=tuple(d.get("item_columns", ())),
            max_len=int(d.get("max_len", 50)),
        )

    @property
    def n_items(self) -> int:
        """Number of real items."""
        return self.vocab[ITEM_ID] - 1

    def item_id(self, embed_dim: int) -> SparseFeature:
        """The item id feature."""
        return SparseFeature(ITEM_ID, self.vocab[ITEM_ID], embed_dim)

    def user_id(self, embed_dim: int) -> SparseFeature:
        """The user id feature."""
        return SparseFeature(USER_ID, self.vocab[USER_ID], embed_dim)

    def history(
        self, embed_dim: int, pooling: str | None = "mean", shared: bool = True
    ) -> SequenceFeature:
        """The ordered history ``(B, L)``, sharing the item id table when ``shared``."""
        return SequenceFeature(
            HISTORY,
            self.vocab[ITEM_ID],
            embed_dim,
            pooling=pooling,
            shared_with=ITEM_ID if shared else None,
        )

    def user_profile(self, embed_dim: int) -> list[SparseFeature]:
        """One sparse feature per user profile column."""
        return [SparseFeature(c, self.vocab[c], embed_dim) for c in self.user_columns]

    def item_side(self, embed_dim: int) -> list[SparseFeature]:
        """One sparse feature per item side column."""
        return [SparseFeature(c, self.vocab[c], embed_dim) for c in self.item_columns]
